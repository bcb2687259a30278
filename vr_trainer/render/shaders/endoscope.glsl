#version 330 core
#if defined(VERTEX_SHADER)
#include "mesh_vertex.glsl"
#elif defined(FRAGMENT_SHADER)
// The endoscope's own light: a fibre-optic spotlight at the lens looking along the view
// direction, falling off with distance and with the angle off the axis; no room light.
in vec3 v_world;
in vec3 v_normal;
uniform vec3 u_eye_mm;       // the lens (and the light) in the world
uniform vec3 u_view_dir;     // unit, world
uniform vec4 u_color;        // linear rgb, alpha
uniform vec4 u_material;     // specular, shininess, rim, wrap
uniform vec4 u_light;        // reach_mm (half intensity), cos(inner), cos(outer), gain
uniform vec4 u_viewport;     // x, y, w, h in pixels (for the round vignette)
out vec4 f_color;
void main() {
    vec2 c = u_viewport.xy + 0.5 * u_viewport.zw;
    float r = length(gl_FragCoord.xy - c) / (0.5 * min(u_viewport.z, u_viewport.w));
    if (r > 1.0) discard;  // the round image of a rod-lens endoscope: black outside
    vec3 to_eye = u_eye_mm - v_world;
    float d = length(to_eye);
    vec3 l = to_eye / max(d, 1e-4);
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;
    float wrap = u_material.w;
    float diff = max((dot(n, l) + wrap) / (1.0 + wrap), 0.0);
    float cone = smoothstep(u_light.z, u_light.y, dot(-l, u_view_dir));
    float fall = 1.0 / (1.0 + (d * d) / (u_light.x * u_light.x));
    float spec = (0.25 + 1.5 * u_material.x) * pow(max(dot(n, l), 0.0), max(u_material.y, 8.0) * 2.0);  // wet tissue
    vec3 lit = u_light.w * cone * fall * (u_color.rgb * (0.08 + 0.92 * diff) + vec3(spec));
    lit *= 1.0 - 0.35 * smoothstep(0.75, 1.0, r);  // lens vignette towards the rim
    f_color = vec4(pow(clamp(lit, 0.0, 1.0), vec3(1.0 / 2.2)), u_color.a);
}
#endif
