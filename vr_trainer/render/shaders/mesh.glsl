#version 330 core
#if defined(VERTEX_SHADER)
#include "mesh_vertex.glsl"
#elif defined(FRAGMENT_SHADER)
in vec3 v_world;
in vec3 v_normal;
uniform vec3 u_eye_mm;
uniform vec4 u_color;        // linear rgb, alpha
uniform vec4 u_material;     // specular, shininess, rim, wrap
uniform vec3 u_key_dir;      // direction towards the key light (world)
out vec4 f_color;
void main() {
    vec3 n = normalize(v_normal);
    vec3 v = normalize(u_eye_mm - v_world);
    if (!gl_FrontFacing) n = -n;
#if defined(MATTE)
    // the room's props (table, C-arm, floor): key and head light only, about half the work
    float mk = max(dot(n, u_key_dir), 0.0);
    float mh = max(dot(n, v), 0.0);
    float m2 = mh * mh, m4 = m2 * m2, m8 = m4 * m4;
    vec3 ml = u_color.rgb * (0.22 + 0.55 * mk + 0.35 * mh) + vec3(0.12 * u_material.x * m8 * m8);
    f_color = vec4(sqrt(clamp(ml, 0.0, 1.0)), 1.0);  // about the 1/2.2 display encoding, cheaper
    return;
#endif
    float wrap = u_material.w;
    // key light from above plus a head light so cavities never go black
    float dk = max((dot(n, u_key_dir) + wrap) / (1.0 + wrap), 0.0);
    float dh = max((dot(n, v) + wrap) / (1.0 + wrap), 0.0);
    vec3 hk = normalize(u_key_dir + v);
    float spec = u_material.x * (pow(max(dot(n, hk), 0.0), u_material.y) + 0.5 * pow(max(dot(n, v), 0.0), u_material.y * 2.0));
    float rim = u_material.z * pow(1.0 - max(dot(n, v), 0.0), 3.0);
    vec3 base = u_color.rgb;
    vec3 lit = base * (0.18 + 0.55 * dk + 0.40 * dh) + vec3(spec) + base * rim;
    float alpha = u_color.a;
    if (alpha < 1.0) alpha = clamp(alpha + 0.5 * rim, 0.0, 1.0);  // silhouettes of translucent tissue stay readable
    f_color = vec4(pow(clamp(lit, 0.0, 1.0), vec3(1.0 / 2.2)), alpha);
}
#endif
