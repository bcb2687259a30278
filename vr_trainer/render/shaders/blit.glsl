#version 330 core
#if defined(VERTEX_SHADER)
#include "rect_vertex.glsl"
#elif defined(FRAGMENT_SHADER)
in vec2 v_uv;
uniform sampler2D u_color;
uniform sampler2D u_depth;
uniform bool u_has_depth;
out vec4 f_color;
void main() {
    f_color = vec4(texture(u_color, v_uv).rgb, 1.0);
    gl_FragDepth = u_has_depth ? texture(u_depth, v_uv).r : 0.5;
}
#endif
