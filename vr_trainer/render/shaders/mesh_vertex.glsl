// The vertex stage shared by mesh.glsl and endoscope.glsl (the include line of each).
in vec3 in_position;
in vec3 in_normal;
uniform mat4 u_view_proj;
uniform mat4 u_model;
out vec3 v_world;
out vec3 v_normal;
void main() {
    vec4 w = u_model * vec4(in_position, 1.0);
    v_world = w.xyz;
    v_normal = mat3(u_model) * in_normal;
    gl_Position = u_view_proj * w;
}
