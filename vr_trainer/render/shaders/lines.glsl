#version 330 core
#if defined(VERTEX_SHADER)
in vec3 in_position;
in vec4 in_color;
uniform mat4 u_view;
out vec4 g_color;
out vec3 g_view_pos;
void main() {
    g_view_pos = (u_view * vec4(in_position, 1.0)).xyz;
    g_color = in_color;
    gl_Position = vec4(g_view_pos, 1.0);
}
#elif defined(GEOMETRY_SHADER)
layout(lines) in;
layout(triangle_strip, max_vertices = 4) out;
in vec4 g_color[];
in vec3 g_view_pos[];
uniform mat4 u_proj;
uniform vec2 u_viewport_px;
uniform float u_width_px;
uniform float u_lift_mm;     // pulled towards the eye so marks on a surface are not hidden by it
uniform float u_alpha;
out vec4 f_in_color;
vec4 lifted(vec3 p) {
    vec3 towards_eye = -normalize(p);
    return u_proj * vec4(p + towards_eye * u_lift_mm, 1.0);
}
void main() {
    vec4 a = lifted(g_view_pos[0]);
    vec4 b = lifted(g_view_pos[1]);
    if (a.w <= 0.0 || b.w <= 0.0) return;
    vec2 sa = a.xy / a.w * u_viewport_px * 0.5;
    vec2 sb = b.xy / b.w * u_viewport_px * 0.5;
    vec2 d = sb - sa;
    if (length(d) < 1e-4) d = vec2(1.0, 0.0);
    vec2 nrm = normalize(vec2(-d.y, d.x)) * u_width_px * 0.5;
    vec2 off = nrm / (u_viewport_px * 0.5);
    f_in_color = g_color[0]; f_in_color.a *= u_alpha;
    gl_Position = vec4(a.xy + off * a.w, a.zw); EmitVertex();
    gl_Position = vec4(a.xy - off * a.w, a.zw); EmitVertex();
    f_in_color = g_color[1]; f_in_color.a *= u_alpha;
    gl_Position = vec4(b.xy + off * b.w, b.zw); EmitVertex();
    gl_Position = vec4(b.xy - off * b.w, b.zw); EmitVertex();
    EndPrimitive();
}
#elif defined(FRAGMENT_SHADER)
in vec4 f_in_color;
out vec4 f_color;
void main() { f_color = f_in_color; }
#endif
