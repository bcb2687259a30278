#version 330 core
#if defined(VERTEX_SHADER)
#include "panel_vertex.glsl"
#elif defined(FRAGMENT_SHADER)
in vec2 v_uv;
uniform sampler2D u_texture;  // sRGB-encoded rgb, row 0 at the top of the picture
uniform vec2 u_border;        // the frame's width as a fraction of the panel's width, height
uniform vec3 u_frame_rgb;     // sRGB-encoded frame (and back side) colour
uniform float u_rows_down;    // 1: row 0 is the picture's top (an uploaded image); 0: a GL render target
out vec4 f_color;
void main() {
    vec2 e = min(v_uv, 1.0 - v_uv);
    if (!gl_FrontFacing || e.x < u_border.x || e.y < u_border.y) {
        f_color = vec4(u_frame_rgb, 1.0);
    } else {
        vec2 uv = (v_uv - u_border) / (1.0 - 2.0 * u_border);
        f_color = vec4(texture(u_texture, vec2(uv.x, mix(uv.y, 1.0 - uv.y, u_rows_down))).rgb, 1.0);
    }
}
#endif
