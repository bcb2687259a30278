// The vertex stage shared by panel.glsl and image_panel.glsl (the include line of each).
in vec2 in_uv;
uniform mat4 u_view_proj;
uniform mat4 u_model;       // unit quad (-0.5..0.5) scaled to the panel size in mm
out vec2 v_uv;
void main() {
    v_uv = in_uv;
    gl_Position = u_view_proj * u_model * vec4(in_uv.x - 0.5, in_uv.y - 0.5, 0.0, 1.0);
}
