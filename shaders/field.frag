#version 330 core
// Draws the field image(s) held in float textures, row 0 = the image's TOP row (as the renderer writes it).
// Side A fills the viewport; when `divider` >= 0, side B replaces it right of x = divider (a fraction of the
// viewport width) and a 2 pixel line marks the divider.
// Modes (engine/modes.py) and colours (engine/colormap.py, the numpy twin of this file; tests/test_colormap.py
// checks the constants and tests/test_viewer_gl.py the pixels):
//   0 rgb:     texel.rgb as is (the renderer composited the background already)
//   1 depth:   texel.r in world units, turbo over range (near = red... far = blue); <= 0 (no hit) -> background
//   2 normal:  texel.rgb a weighted unit normal in [-1,1]: mix(background, n/|n| * 0.5 + 0.5, min(|n|, 1))
//   3 samples: texel.r samples per ray, turbo over range
//   4 level:   texel.r octree level reached, turbo over range; < 0 (empty) -> background

in vec2 uv;
out vec4 color;

uniform sampler2D field_a;
uniform sampler2D field_b;
uniform int mode_a;
uniform int mode_b;
uniform vec2 range_a;      // value range mapped to colormap [0,1] (depth, samples, level)
uniform vec2 range_b;
uniform vec3 background;
uniform float divider;     // < 0: no comparison
uniform vec2 viewport_size;  // pixels

const int MODE_RGB = 0;
const int MODE_DEPTH = 1;
const int MODE_NORMAL = 2;
const int MODE_SAMPLES = 3;
const int MODE_LEVEL = 4;

// Turbo colormap, polynomial approximation (Google, Apache-2.0): x in [0,1] -> rgb.
vec3 turbo(float x) {
    const vec4 kr4 = vec4(0.13572138, 4.61539260, -42.66032258, 132.13108234);
    const vec4 kg4 = vec4(0.09140261, 2.19418839, 4.84296658, -14.18503333);
    const vec4 kb4 = vec4(0.10667330, 12.64194608, -60.58204836, 110.36276771);
    const vec2 kr2 = vec2(-152.94239396, 59.28637943);
    const vec2 kg2 = vec2(4.27729857, 2.82956604);
    const vec2 kb2 = vec2(-89.90310912, 27.34824973);
    x = clamp(x, 0.0, 1.0);
    vec4 v4 = vec4(1.0, x, x * x, x * x * x);
    vec2 v2 = v4.zw * v4.z;
    return clamp(vec3(dot(v4, kr4) + dot(v2, kr2), dot(v4, kg4) + dot(v2, kg2), dot(v4, kb4) + dot(v2, kb2)),
                 0.0, 1.0);
}

vec3 shade(sampler2D tex, int mode, vec2 range, vec2 p) {
    vec4 v = texture(tex, vec2(p.x, 1.0 - p.y));
    if (mode == MODE_RGB) {
        return v.rgb;
    }
    if (mode == MODE_NORMAL) {
        float len = length(v.rgb);
        vec3 n = len > 1e-6 ? v.rgb / len : vec3(0.0);
        return mix(background, n * 0.5 + 0.5, min(len, 1.0));
    }
    float s = v.r;
    if ((mode == MODE_DEPTH && s <= 0.0) || (mode == MODE_LEVEL && s < 0.0)) {
        return background;
    }
    float x = (s - range.x) / max(range.y - range.x, 1e-6);
    if (mode == MODE_DEPTH) {
        x = 1.0 - x;  // near is warm
    }
    return turbo(x);
}

void main() {
    vec3 rgb;
    if (divider >= 0.0 && uv.x >= divider) {
        rgb = shade(field_b, mode_b, range_b, uv);
    } else {
        rgb = shade(field_a, mode_a, range_a, uv);
    }
    if (divider >= 0.0 && abs((uv.x - divider) * viewport_size.x) < 1.0) {
        rgb = vec3(1.0, 0.8, 0.1);
    }
    color = vec4(rgb, 1.0);
}
