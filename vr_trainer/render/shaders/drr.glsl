#version 330 core
// Digitally reconstructed radiograph: one fragment per detector pixel. The ray from the
// X-ray source to the pixel centre is clipped to the volume's box and sampled with
// interpolated attenuation (mu, 1/mm): the line integral sum(mu * length_mm).
//   SLICES (default, Joseph's method): one sample per slice along the volume axis closest to
//     the beam, bilinear within the slice (trilinear at the slice centres), from a 2D texture
//     array whose layers are those slices: half the texel reads of a 3D trilinear sample.
//   otherwise: a fixed-step march with trilinear samples of a 3D texture.
// Instruments are added analytically: the chord (mm) of the ray through each steel cylinder
// (hollow when it has an inner radius) times mu_steel, in a second output channel.
#if defined(VERTEX_SHADER)
in vec2 in_pos;
void main() { gl_Position = vec4(in_pos, 0.0, 1.0); }
#elif defined(FRAGMENT_SHADER)
#define MAX_SEGMENTS 16
#if defined(SLICES)
uniform sampler2DArray u_slices; // layer = index along the beam axis a; (x, y) = the other axes (b1, b2)
uniform mat4 u_idx_from_ras;     // RAS mm -> voxel index (b1, b2, a), voxel centres at integers
uniform vec3 u_dims;             // n_b1, n_b2, n_a
#else
uniform sampler3D u_mu;          // attenuation (1/mm), texel (i, j, k) at texcoord (ijk + 0.5) / shape
uniform mat4 u_tex_from_ras;     // RAS mm -> texture coordinates
uniform float u_step_mm;
#endif
uniform vec3 u_source_mm;        // patient RAS
uniform vec3 u_det_centre_mm;
uniform vec3 u_det_u;            // columns, unit
uniform vec3 u_det_v;            // rows, unit
uniform vec2 u_spacing_mm;       // pixel size along u, v
uniform vec2 u_pixels;           // width, height
uniform int u_nseg;
uniform vec3 u_seg_p0[MAX_SEGMENTS];
uniform vec3 u_seg_p1[MAX_SEGMENTS];
uniform vec3 u_seg_r[MAX_SEGMENTS];  // outer, inner radius (mm; inner 0 = solid), mu scale
uniform float u_mu_steel;
out vec2 f_integral;  // (anatomy, instruments) line integrals

// length of the part of the ray o + t d (t in [0, tmax], |d| = 1) inside the cylinder of radius r
// about the segment p0 -> p1 (flat ends)
float chord(vec3 o, vec3 d, float tmax, vec3 p0, vec3 p1, float r) {
    vec3 ax = p1 - p0;
    float h = length(ax);
    if (h < 1e-6 || r <= 0.0) return 0.0;
    ax /= h;
    vec3 w = o - p0;
    float wa = dot(w, ax), da = dot(d, ax);
    vec3 wp = w - wa * ax, dp = d - da * ax;
    float a = dot(dp, dp), b = dot(wp, dp), c = dot(wp, wp) - r * r;
    float t0 = 0.0, t1 = tmax;
    if (a < 1e-12) {
        if (c > 0.0) return 0.0;
    } else {
        float disc = b * b - a * c;
        if (disc <= 0.0) return 0.0;
        float s = sqrt(disc);
        t0 = max(t0, (-b - s) / a);
        t1 = min(t1, (-b + s) / a);
    }
    if (abs(da) < 1e-9) {
        if (wa < 0.0 || wa > h) return 0.0;
    } else {
        float ta = (0.0 - wa) / da, tb = (h - wa) / da;
        t0 = max(t0, min(ta, tb));
        t1 = min(t1, max(ta, tb));
    }
    return max(0.0, t1 - t0);
}

void main() {
    vec2 px = gl_FragCoord.xy - 0.5;  // framebuffer row 0 = image row 0 (the top)
    vec3 p = u_det_centre_mm + (px.x + 0.5 - 0.5 * u_pixels.x) * u_spacing_mm.x * u_det_u
                             + (px.y + 0.5 - 0.5 * u_pixels.y) * u_spacing_mm.y * u_det_v;
    vec3 o = u_source_mm;
    float len_mm = length(p - o);
    vec3 d = (p - o) / len_mm;
    float acc = 0.0;
#if defined(SLICES)
    vec3 qo = (u_idx_from_ras * vec4(o, 1.0)).xyz;
    vec3 qd = (u_idx_from_ras * vec4(d, 0.0)).xyz;
    vec3 inv = 1.0 / qd;
    vec3 ta = (vec3(-0.5) - qo) * inv, tb = (u_dims - 0.5 - qo) * inv;
    vec3 tlo = min(ta, tb), thi = max(ta, tb);
    float t0 = max(max(max(tlo.x, tlo.y), tlo.z), 0.0);
    float t1 = min(min(min(thi.x, thi.y), thi.z), len_mm);
    if (t1 > t0 && abs(qd.z) > 1e-9) {
        float a0 = qo.z + t0 * qd.z, a1 = qo.z + t1 * qd.z;
        float s_lo = ceil(min(a0, a1)), s_hi = floor(max(a0, a1));
        float sgn = qd.z > 0.0 ? 1.0 : -1.0;
        float layer = qd.z > 0.0 ? s_lo : s_hi;
        int n = int(s_hi - s_lo) + 1;
        vec2 scale = 1.0 / u_dims.xy;
        vec2 b = (qo.xy + (layer - qo.z) * inv.z * qd.xy + 0.5) * scale;  // texcoords in the first slice
        vec2 db = sgn * inv.z * qd.xy * scale;
        for (int k = 0; k < n; ++k) {
            acc += texture(u_slices, vec3(b, layer)).r;
            b += db;
            layer += sgn;
        }
        acc *= abs(inv.z);  // ray length (mm) per slice
    }
#else
    // the ray in texture space: q(t) = qo + t * qd, t in mm along the ray
    vec3 qo = (u_tex_from_ras * vec4(o, 1.0)).xyz;
    vec3 qd = (u_tex_from_ras * vec4(d, 0.0)).xyz;
    vec3 inv = 1.0 / qd;
    vec3 ta = (vec3(0.0) - qo) * inv, tb = (vec3(1.0) - qo) * inv;
    vec3 tlo = min(ta, tb), thi = max(ta, tb);
    float t0 = max(max(max(tlo.x, tlo.y), tlo.z), 0.0);
    float t1 = min(min(min(thi.x, thi.y), thi.z), len_mm);
    if (t1 > t0) {
        int n = int(ceil((t1 - t0) / u_step_mm));
        float step_mm = (t1 - t0) / float(n);
        vec3 q = qo + (t0 + 0.5 * step_mm) * qd;
        vec3 dq = step_mm * qd;
        for (int k = 0; k < n; ++k) {
            acc += textureLod(u_mu, q, 0.0).r;
            q += dq;
        }
        acc *= step_mm;
    }
#endif
    float metal = 0.0;
    for (int s = 0; s < u_nseg; ++s) {
        float outer = chord(o, d, len_mm, u_seg_p0[s], u_seg_p1[s], u_seg_r[s].x);
        float inner = u_seg_r[s].y > 0.0 ? chord(o, d, len_mm, u_seg_p0[s], u_seg_p1[s], u_seg_r[s].y) : 0.0;
        metal += max(0.0, outer - inner) * u_seg_r[s].z;
    }
    f_integral = vec2(acc, u_mu_steel * metal);
}
#endif
