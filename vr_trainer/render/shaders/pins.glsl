#version 330 core
#if defined(VERTEX_SHADER)
in vec3 in_position;
in vec3 in_normal;
in vec3 in_offset;
in vec4 in_color;
uniform mat4 u_view_proj;
uniform float u_scale;
out vec3 v_normal;
out vec4 v_color;
void main() {
    v_normal = in_normal;
    v_color = in_color;
    gl_Position = u_view_proj * vec4(in_offset + in_position * u_scale, 1.0);
}
#elif defined(FRAGMENT_SHADER)
in vec3 v_normal;
in vec4 v_color;
uniform vec3 u_key_dir;
out vec4 f_color;
void main() {
    float d = 0.45 + 0.55 * max(dot(normalize(v_normal), u_key_dir), 0.0);
    f_color = vec4(pow(v_color.rgb * d, vec3(1.0 / 2.2)), v_color.a);
}
#endif
