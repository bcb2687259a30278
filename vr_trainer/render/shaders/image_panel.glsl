#version 330 core
#if defined(VERTEX_SHADER)
in vec2 in_uv;
uniform mat4 u_view_proj;
uniform mat4 u_model;       // unit quad (-0.5..0.5) scaled to the panel size in mm
out vec2 v_uv;
void main() {
    v_uv = in_uv;
    gl_Position = u_view_proj * u_model * vec4(in_uv.x - 0.5, in_uv.y - 0.5, 0.0, 1.0);
}
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
