#version 330 core
#if defined(VERTEX_SHADER)
in vec2 in_uv;
uniform vec4 u_rect;   // x, y, w, h in normalized device coordinates
out vec2 v_uv;
void main() {
    v_uv = in_uv;
    gl_Position = vec4(u_rect.xy + in_uv * u_rect.zw, 0.0, 1.0);
}
#elif defined(FRAGMENT_SHADER)
in vec2 v_uv;
uniform sampler2D u_color;   // the endoscope picture (already vignetted, sRGB-encoded)
out vec4 f_color;
void main() {
    // a round picture with a thin dark ring, as an endoscope tower shows it; outside: the scene
    float r = length(v_uv - 0.5) * 2.0;
    if (r > 1.0) discard;
    vec3 c = r > 0.96 ? vec3(0.08, 0.09, 0.10) : texture(u_color, v_uv / 0.96 - (0.5 / 0.96 - 0.5)).rgb;
    f_color = vec4(c, 1.0);
}
#endif
