// The vertex stage shared by blit.glsl and inset.glsl (the include line of each).
in vec2 in_uv;
uniform vec4 u_rect;   // x, y, w, h in normalized device coordinates
out vec2 v_uv;
void main() {
    v_uv = in_uv;
    gl_Position = vec4(u_rect.xy + in_uv * u_rect.zw, 0.0, 1.0);
}
