#version 330 core
#if defined(VERTEX_SHADER)
#include "panel_vertex.glsl"
#elif defined(FRAGMENT_SHADER)
in vec2 v_uv;
uniform sampler2D u_texture;  // sRGB-encoded, premultiplied alpha
out vec4 f_color;
void main() { f_color = texture(u_texture, vec2(v_uv.x, 1.0 - v_uv.y)); }
#endif
