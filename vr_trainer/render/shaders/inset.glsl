#version 330 core
#if defined(VERTEX_SHADER)
#include "rect_vertex.glsl"
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
