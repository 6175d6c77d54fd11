// march_rays: fused inference ray marcher for an InferenceField (one thread per pixel).
//
// Twin of engine/render.py (`render_rays`): the same ray per pixel, the same sample positions
// t_k = t_near + (k + 0.5) * step, the same compositing; it only skips samples in empty octree cells
// hierarchically and stops once the transmittance falls below EARLY_STOP.
//
// Compiled at run time by NVRTC (engine/cuda/marcher.py) with these -D options:
//   FEAT        feature dimension F of the grid rows (decoder input)
//   BASE_LEVEL  octree level of LOD 0
//   N_LODS      LODs the field holds (LOD k lives at octree level BASE_LEVEL + k)
//   MODE        0 rgb, 1 depth, 2 normal, 3 samples, 4 level   (engine.render.RENDER_MODES order)
//   CODES       0: dense (rows[k] = features [n_corners,F], cell_rows[k] = int32 [n_cells,8] corner rows)
//               8 / 16: codebook (rows[k] = codebook [2^b,F], cell_rows[k] = uint8 / uint16 [n_cells,8] codebook
//               row of each corner of each cell, i.e. indices[corners] gathered once at upload)
//   CB_ROWS     codebook rows (2^b); with CB_SHARED=1 every LOD's codebook is copied to shared memory
//   W_SHARED    1: decoder weights copied to shared memory per block (the default: 3.2x faster on an H100)
//               0: decoder weights in __constant__ memory (the constant cache thrashes on 17 KB of weights)
//   PATH_CACHE  1: a sample's descent starts at the deepest level it shares with the previous sample
//   PERSISTENT  1: persistent threads taking pixels from a global counter (1-D blocks, grid sized to the GPU);
//               0: one thread per pixel of a 2-D grid of BLOCK_X x BLOCK_Y blocks
//   BLOCK_X, BLOCK_Y  threads per block (one pixel each), 16 x 8 by default
//   MLP_ROLLED  1: the MLP's loops over a layer's inputs stay rolled (inputs staged in shared memory per thread)
// The same file also compiles as plain C++ on the host (no __CUDACC__): tests/test_march_rays.py builds it with the
// system compiler and checks it against the torch reference on the CPU, so the arithmetic is tested without a GPU.

#ifndef FEAT
#define FEAT 16
#endif
#ifndef BASE_LEVEL
#define BASE_LEVEL 2
#endif
#ifndef N_LODS
#define N_LODS 6
#endif
#ifndef MODE
#define MODE 0
#endif
#ifndef CODES
#define CODES 0
#endif
#ifndef CB_ROWS
#define CB_ROWS 0
#endif
#ifndef CB_SHARED
#define CB_SHARED 0
#endif
#ifndef W_SHARED
#define W_SHARED 0
#endif
#ifndef PATH_CACHE
#define PATH_CACHE 1
#endif
#ifndef MLP_ROLLED
#define MLP_ROLLED 1
#endif
#ifndef BLOCK_X
#define BLOCK_X 16
#endif
#ifndef BLOCK_Y
#define BLOCK_Y 8
#endif

#include "common.cuh"  // HD, LDG, POPC, MAX_LEVELS, the host shim, octree descent steps, corner weights

#define MODE_RGB 0
#define MODE_DEPTH 1
#define MODE_NORMAL 2
#define MODE_SAMPLES 3
#define MODE_LEVEL 4

#define ENC_FLOAT 0   // float32, 3 channels (rgb, normal) or 1 (depth, samples, level), linear buffer only
#define ENC_RGBA8 1   // uchar4, value in [0,1] -> round(255 v); scalars as grey (v * display_scale)
#define ENC_RGBA32F 2 // float4, raw values (scalars in r, g and b), alpha 1

#define HIDDEN 64
#define GEO_DIM 15
#define DIR_DIM 15
#define OUT1 16
#define EARLY_STOP 1e-4f
#define MAX_LOG_DENSITY 15.0f
#define SKIP_MARGIN 1e-3f  // in steps: a sample this close past an empty cell's exit is descended, not skipped

// Decoder weights, packed in this order (marcher.pack_decoder): w0 [F,64], b0 [64], w1 [64,16], b1 [16],
// w2 [30,64], b2 [64], w3 [64,3], b3 [3]; all row-major (input index major), float32.
#define OFF_W0 0
#define OFF_B0 (OFF_W0 + FEAT * HIDDEN)
#define OFF_W1 (OFF_B0 + HIDDEN)
#define OFF_B1 (OFF_W1 + HIDDEN * OUT1)
#define OFF_W2 (OFF_B1 + OUT1)
#define OFF_B2 (OFF_W2 + (GEO_DIM + DIR_DIM) * HIDDEN)
#define OFF_W3 (OFF_B2 + HIDDEN)
#define OFF_B3 (OFF_W3 + HIDDEN * 3)
#define DEC_SIZE (OFF_B3 + 3)

#define MAX_LEVEL (BASE_LEVEL + N_LODS - 1)
// Shared memory layout (floats): [decoder if W_SHARED][codebooks if CB_SHARED][MLP scratch if MLP_ROLLED]
#define SMEM_DEC (W_SHARED ? ((DEC_SIZE + 3) & ~3) : 0)
#define SMEM_CB ((CB_SHARED && CODES != 0) ? N_LODS * CB_ROWS * FEAT : 0)
#define SCR_BASE (SMEM_DEC + SMEM_CB)
#ifdef __CUDACC__
#define SCR_NT (BLOCK_X * BLOCK_Y)
#else
#define SCR_NT 1
#endif
// The 16-byte weight loads (DEC4) need every matrix and bias offset used with them to be a multiple of 4 floats.
static_assert(OFF_B0 % 4 == 0 && OFF_W1 % 4 == 0 && OFF_W2 % 4 == 0 && OFF_B2 % 4 == 0, "decoder offsets");

#ifdef __CUDACC__
#define FMUL(a, b) __fmul_rn(a, b)
#define FADD(a, b) __fadd_rn(a, b)
#define FSUB(a, b) __fsub_rn(a, b)
#define SINCOSPI(x, s, c) sincospif(x, s, c)
#if W_SHARED
#define DEC(i) s_mem[(i)]
#define DEC4(i) lds4(&s_mem[(i)])  // i % 4 == 0: one LDS.128 (NVVM splits a plain float4 read of s_mem)
#else
__constant__ float c_dec[DEC_SIZE];
#define DEC(i) c_dec[(i)]
#define DEC4(i) make_float4(c_dec[(i)], c_dec[(i) + 1], c_dec[(i) + 2], c_dec[(i) + 3])
#endif
extern __shared__ __align__(16) float s_mem[];
__device__ __forceinline__ float4 lds4(const float* ptr) {
    float4 v;
    const unsigned int addr = (unsigned int)__cvta_generic_to_shared(ptr);
    asm("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(addr));
    return v;
}
#else  // host build (tests only; the rest of the host shim is in common.cuh)
#define FMUL(a, b) ((float)((a) * (b)))
#define FADD(a, b) ((float)((a) + (b)))
#define FSUB(a, b) ((float)((a) - (b)))
#define SINCOSPI(x, s, c) (*(s) = (float)std::sin(3.14159265358979323846 * (x)), \
                           *(c) = (float)std::cos(3.14159265358979323846 * (x)))
static const float* g_host_dec;
#define DEC(i) g_host_dec[(i)]
#define DEC4(i) (*(const float4*)&g_host_dec[(i)])
#endif

// Kernel parameters, passed by value. Mirrored field by field by marcher.MarchParams (ctypes); the host build
// exports the offsets so the test can check the two layouts agree.
struct Params {
    const int2* nodes[MAX_LEVELS];     // per octree level l < level: {child_mask, child_start} of each occupied cell
    const void* cell_rows[MAX_LEVELS]; // per LOD: see CODES
    const float* rows[MAX_LEVELS];     // per LOD: dense features or codebook, [*, FEAT]
    const float* decoder;              // DEC_SIZE floats (source of the shared / constant copy)
    void* out;                         // linear output (ENC_*), row y at out + y * pitch; unused with a surface
    int* counter;                      // persistent kernel: next job (pixel) index, zeroed before each launch
    const float* pixel_xy;             // lens distortion: per pixel (row-major) the undistorted normalised x, y of
                                       // its centre (engine/cameras.undistort_normalized); null for a pinhole
    unsigned long long surface;        // CUsurfObject of the GL texture's array, 0 for a linear buffer
    long long pitch;                   // bytes per output row
    float c2w[12];                     // camera to world, row-major 3x4 (OpenGL camera: x right, y up, looks down -z)
    float fx, fy, cx, cy;              // pinhole intrinsics, pixels (pixel centres at i + 0.5)
    float center[3];                   // scene centre, world
    float half_size;                   // scene cube half edge, world
    float inv_size;                    // float32(1) / float32(2 * half_size) (torch's scalar division on CUDA)
    float step;                        // world units between samples (engine.render.field_step)
    float background[3];               // rgb
    float display_scale;               // RGBA8 scalars: grey = value * display_scale
    float rgb_min_weight;              // samples of weight below this skip the colour MLP (error <= their weight)
    int width, height;                 // pixels
    int level;                         // octree level of the LOD (BASE_LEVEL + lod)
    int lod;                           // LOD rendered (0 .. N_LODS-1)
    int root_present;                  // octree level 0 has its cell
    int encoding;                      // ENC_*
    int flip_y;                        // 1: image row j goes to output row height-1-j
    int pad_;
};

#ifndef __CUDACC__
extern "C" int march_params_layout(long long* offsets) {
    int i = 0;
    offsets[i++] = offsetof(Params, nodes);
    offsets[i++] = offsetof(Params, cell_rows);
    offsets[i++] = offsetof(Params, rows);
    offsets[i++] = offsetof(Params, decoder);
    offsets[i++] = offsetof(Params, out);
    offsets[i++] = offsetof(Params, counter);
    offsets[i++] = offsetof(Params, pixel_xy);
    offsets[i++] = offsetof(Params, surface);
    offsets[i++] = offsetof(Params, pitch);
    offsets[i++] = offsetof(Params, c2w);
    offsets[i++] = offsetof(Params, fx);
    offsets[i++] = offsetof(Params, center);
    offsets[i++] = offsetof(Params, half_size);
    offsets[i++] = offsetof(Params, inv_size);
    offsets[i++] = offsetof(Params, step);
    offsets[i++] = offsetof(Params, background);
    offsets[i++] = offsetof(Params, display_scale);
    offsets[i++] = offsetof(Params, rgb_min_weight);
    offsets[i++] = offsetof(Params, width);
    offsets[i++] = offsetof(Params, level);
    offsets[i++] = offsetof(Params, lod);
    offsets[i++] = offsetof(Params, root_present);
    offsets[i++] = offsetof(Params, encoding);
    offsets[i++] = offsetof(Params, flip_y);
    offsets[i++] = sizeof(Params);
    return i;
}
#endif

// ---------------------------------------------------------------------------------------------------------------
// Feature gather: sum over LOD 0..lod of the trilinear interpolation of the 8 corner rows of the sample's cell
// (engine.field.feature_from_cells). With GRAD, also d feature / d unit point, [3][FEAT].

// Corner rows of one cell at LOD k: row[q] indexes rows_k[k] for corner q = dx*4 + dy*2 + dz.
HD void cell_corner_rows(const Params& p, int k, int c, int* row) {
#if CODES == 0
    const int4* cr = (const int4*)p.cell_rows[k] + 2 * (long long)c;
    const int4 a = LDG(cr), b = LDG(cr + 1);
    row[0] = a.x; row[1] = a.y; row[2] = a.z; row[3] = a.w;
    row[4] = b.x; row[5] = b.y; row[6] = b.z; row[7] = b.w;
#elif CODES == 8
    const uint2 a = LDG((const uint2*)p.cell_rows[k] + c);
#pragma unroll
    for (int q = 0; q < 4; ++q) { row[q] = (a.x >> (8 * q)) & 0xFF; row[q + 4] = (a.y >> (8 * q)) & 0xFF; }
#else
    const uint4 a = LDG((const uint4*)p.cell_rows[k] + c);
    row[0] = a.x & 0xFFFF; row[1] = a.x >> 16; row[2] = a.y & 0xFFFF; row[3] = a.y >> 16;
    row[4] = a.z & 0xFFFF; row[5] = a.z >> 16; row[6] = a.w & 0xFFFF; row[7] = a.w >> 16;
#endif
}

// One feature row (global memory, or shared memory for codebooks copied there).
HD void load_row(const float* src, float* v) {
#if (FEAT % 4 == 0) && !(CB_SHARED && CODES != 0 && defined(__CUDACC__))
#pragma unroll
    for (int f = 0; f < FEAT; f += 4) {
        const float4 x = LDG((const float4*)(src + f));
        v[f] = x.x; v[f + 1] = x.y; v[f + 2] = x.z; v[f + 3] = x.w;
    }
#elif (FEAT % 4 == 0)
#pragma unroll
    for (int f = 0; f < FEAT; f += 4) {
        const float4 x = *(const float4*)(src + f);
        v[f] = x.x; v[f + 1] = x.y; v[f + 2] = x.z; v[f + 3] = x.w;
    }
#else
#pragma unroll
    for (int f = 0; f < FEAT; ++f) v[f] = src[f];
#endif
}

// engine.octree.trilinear_weights at LOD k: per axis the weights (1 - f, f) of the two corner planes
// (common.cuh corner_fractions); r = 2^level.
HD void lod_fractions(int k, float u0, float u1, float u2, float* wx, float* wy, float* wz, float* r_out) {
    corner_fractions(u0, u1, u2, BASE_LEVEL + k, wx, wy, wz);
    *r_out = (float)(1 << (BASE_LEVEL + k));
}

// Sum over LOD 0..lod of the trilinear interpolation of the 8 corner rows of the sample's cell
// (engine.field.feature_from_cells). cell[k]: the sample's cell index at LOD k's octree level.
HD void gather_features(const Params& p, const float* const* rows_k, const int* cell, float u0, float u1, float u2,
                        float* feat) {
#pragma unroll
    for (int f = 0; f < FEAT; ++f) feat[f] = 0.f;
#pragma unroll
    for (int k = 0; k < N_LODS; ++k) {
        if (k > p.lod) break;
        float wx[2], wy[2], wz[2], r;
        lod_fractions(k, u0, u1, u2, wx, wy, wz, &r);
        int row[8];
        cell_corner_rows(p, k, cell[k], row);
        float lv[FEAT];
#pragma unroll
        for (int f = 0; f < FEAT; ++f) lv[f] = 0.f;
#pragma unroll
        for (int q = 0; q < 8; ++q) {
            const float w = corner_weight(wx, wy, wz, q);
            float v[FEAT];
            load_row(rows_k[k] + (long long)row[q] * FEAT, v);
#pragma unroll
            for (int f = 0; f < FEAT; ++f) lv[f] = fmaf(w, v[f], lv[f]);
        }
#pragma unroll
        for (int f = 0; f < FEAT; ++f) feat[f] += lv[f];
    }
}

// d(gvec . feature) / d unit point: the same corners again, each row reduced to gvec . row first, times the
// derivative of its trilinear weight (d f / d u = r per axis; the floor has no gradient).
HD void gather_gradient(const Params& p, const float* const* rows_k, const int* cell, float u0, float u1, float u2,
                        const float* gvec, float* grad) {
    // Loops kept rolled: unrolled, this pass made ptxas spill everything (normal mode only, not the hot path).
    grad[0] = 0.f; grad[1] = 0.f; grad[2] = 0.f;
#pragma unroll
    for (int k = 0; k < N_LODS; ++k) {
        if (k > p.lod) break;
        float wx[2], wy[2], wz[2], r;
        lod_fractions(k, u0, u1, u2, wx, wy, wz, &r);
        int row[8];
        cell_corner_rows(p, k, cell[k], row);
        const float* base = rows_k[k];
#pragma unroll 1
        for (int q = 0; q < 8; ++q) {
            const bool dx = q & 4, dy = q & 2, dz = q & 1;
            const float ax = dx ? wx[1] : wx[0], ay = dy ? wy[1] : wy[0], az = dz ? wz[1] : wz[0];
            const int rq = q < 4 ? (q < 2 ? (q == 0 ? row[0] : row[1]) : (q == 2 ? row[2] : row[3]))
                                 : (q < 6 ? (q == 4 ? row[4] : row[5]) : (q == 6 ? row[6] : row[7]));
            float v[FEAT];
            load_row(base + (long long)rq * FEAT, v);
            float s = 0.f;
#pragma unroll
            for (int f = 0; f < FEAT; ++f) s = fmaf(gvec[f], v[f], s);
            grad[0] = fmaf((dx ? r : -r) * (ay * az), s, grad[0]);
            grad[1] = fmaf((dy ? r : -r) * (ax * az), s, grad[1]);
            grad[2] = fmaf((dz ? r : -r) * (ax * ay), s, grad[2]);
        }
    }
}

// The MLP's outer loops (over a layer's inputs) are rolled when MLP_ROLLED: each thread stages a layer's inputs in
// its own column of a shared-memory scratch area, scr[i * SCR_NT] (conflict-free), and the loop body (one input times
// a row of weights, 16-byte weight loads) is emitted once instead of 16-64 times. That shrinks the kernel's code
// ~5x (the unrolled rgb kernel is ~17k instructions, far over the SM's instruction caches).
#if MLP_ROLLED
#define OUTER_LOOP _Pragma("unroll 1")
#else
#define OUTER_LOOP _Pragma("unroll")
#endif

HD float* mlp_scratch() {
#ifdef __CUDACC__
    return s_mem + SCR_BASE + threadIdx.y * BLOCK_X + threadIdx.x;
#else
    static thread_local float buf[HIDDEN > FEAT ? (HIDDEN > GEO_DIM + DIR_DIM ? HIDDEN : GEO_DIM + DIR_DIM) : FEAT];
    return buf;
#endif
}

// Density part of the decoder: feature -> (raw density out[0], geometry features out[1..15]); hidden activations
// (relu applied) are returned through `h`.
HD void density_mlp(const float* feat, float* h, float* out) {
#if MLP_ROLLED
    float* scr = mlp_scratch();
#pragma unroll
    for (int f = 0; f < FEAT; ++f) scr[f * SCR_NT] = feat[f];
#define IN0(f) scr[(f) * SCR_NT]
#else
#define IN0(f) feat[f]
#endif
#pragma unroll
    for (int j = 0; j < HIDDEN; ++j) h[j] = 0.f;
    OUTER_LOOP
    for (int f = 0; f < FEAT; ++f) {
        const float x = IN0(f);
#pragma unroll
        for (int j = 0; j < HIDDEN; j += 4) {
            const float4 w = DEC4(OFF_W0 + f * HIDDEN + j);
            h[j] = fmaf(x, w.x, h[j]); h[j + 1] = fmaf(x, w.y, h[j + 1]);
            h[j + 2] = fmaf(x, w.z, h[j + 2]); h[j + 3] = fmaf(x, w.w, h[j + 3]);
        }
    }
#undef IN0
#pragma unroll
    for (int j = 0; j < HIDDEN; j += 4) {
        const float4 b = DEC4(OFF_B0 + j);
        h[j] = fmaxf(h[j] + b.x, 0.f); h[j + 1] = fmaxf(h[j + 1] + b.y, 0.f);
        h[j + 2] = fmaxf(h[j + 2] + b.z, 0.f); h[j + 3] = fmaxf(h[j + 3] + b.w, 0.f);
    }
#if MLP_ROLLED
#pragma unroll
    for (int j = 0; j < HIDDEN; ++j) scr[j * SCR_NT] = h[j];
#define IN1(j) scr[(j) * SCR_NT]
#else
#define IN1(j) h[j]
#endif
#pragma unroll
    for (int o = 0; o < OUT1; ++o) out[o] = 0.f;
    OUTER_LOOP
    for (int j = 0; j < HIDDEN; ++j) {
        const float x = IN1(j);
#pragma unroll
        for (int o = 0; o < OUT1; o += 4) {
            const float4 w = DEC4(OFF_W1 + j * OUT1 + o);
            out[o] = fmaf(x, w.x, out[o]); out[o + 1] = fmaf(x, w.y, out[o + 1]);
            out[o + 2] = fmaf(x, w.z, out[o + 2]); out[o + 3] = fmaf(x, w.w, out[o + 3]);
        }
    }
#undef IN1
#pragma unroll
    for (int o = 0; o < OUT1; ++o) out[o] += DEC(OFF_B1 + o);
}

// Colour part: geometry features out[1..15] and the direction encoding -> rgb in [0,1].
HD void color_mlp(const float* out, const float* denc, float* rgb) {
    float h2[HIDDEN];
#if MLP_ROLLED
    float* scr = mlp_scratch();
#pragma unroll
    for (int i = 0; i < GEO_DIM; ++i) scr[i * SCR_NT] = out[1 + i];
#pragma unroll
    for (int i = 0; i < DIR_DIM; ++i) scr[(GEO_DIM + i) * SCR_NT] = denc[i];
#define IN2(i) scr[(i) * SCR_NT]
#else
#define IN2(i) ((i) < GEO_DIM ? out[1 + (i)] : denc[(i) - GEO_DIM])
#endif
#pragma unroll
    for (int j = 0; j < HIDDEN; ++j) h2[j] = 0.f;
    OUTER_LOOP
    for (int i = 0; i < GEO_DIM + DIR_DIM; ++i) {
        const float x = IN2(i);
#pragma unroll
        for (int j = 0; j < HIDDEN; j += 4) {
            const float4 w = DEC4(OFF_W2 + i * HIDDEN + j);
            h2[j] = fmaf(x, w.x, h2[j]); h2[j + 1] = fmaf(x, w.y, h2[j + 1]);
            h2[j + 2] = fmaf(x, w.z, h2[j + 2]); h2[j + 3] = fmaf(x, w.w, h2[j + 3]);
        }
    }
#undef IN2
#pragma unroll
    for (int j = 0; j < HIDDEN; j += 4) {
        const float4 b = DEC4(OFF_B2 + j);
        h2[j] = fmaxf(h2[j] + b.x, 0.f); h2[j + 1] = fmaxf(h2[j + 1] + b.y, 0.f);
        h2[j + 2] = fmaxf(h2[j + 2] + b.z, 0.f); h2[j + 3] = fmaxf(h2[j + 3] + b.w, 0.f);
    }
#if MLP_ROLLED
#pragma unroll
    for (int j = 0; j < HIDDEN; ++j) scr[j * SCR_NT] = h2[j];
#define IN3(j) scr[(j) * SCR_NT]
#else
#define IN3(j) h2[j]
#endif
    float o3[3] = {0.f, 0.f, 0.f};
    OUTER_LOOP
    for (int j = 0; j < HIDDEN; ++j) {
        const float x = IN3(j);
        o3[0] = fmaf(x, DEC(OFF_W3 + j * 3 + 0), o3[0]);
        o3[1] = fmaf(x, DEC(OFF_W3 + j * 3 + 1), o3[1]);
        o3[2] = fmaf(x, DEC(OFF_W3 + j * 3 + 2), o3[2]);
    }
#undef IN3
#pragma unroll
    for (int c = 0; c < 3; ++c) rgb[c] = 1.f / (1.f + expf(-(o3[c] + DEC(OFF_B3 + c))));
}

HD float clamp01(float v) { return fminf(fmaxf(v, 0.f), 1.f); }

HD void write_pixel(const Params& p, int x, int y, float v0, float v1, float v2) {
    const int yy = p.flip_y ? p.height - 1 - y : y;
    const int channels = (MODE == MODE_RGB || MODE == MODE_NORMAL) ? 3 : 1;
    if (p.encoding == ENC_FLOAT) {
        float* o = (float*)((char*)p.out + (long long)yy * p.pitch) + (long long)x * channels;
        o[0] = v0;
        if (channels == 3) { o[1] = v1; o[2] = v2; }
        return;
    }
    if (channels == 1) {
        if (p.encoding == ENC_RGBA8) v0 *= p.display_scale;
        v1 = v0; v2 = v0;
    } else if (MODE == MODE_NORMAL && p.encoding == ENC_RGBA8) {
        v0 = 0.5f * v0 + 0.5f; v1 = 0.5f * v1 + 0.5f; v2 = 0.5f * v2 + 0.5f;
    }
    if (p.encoding == ENC_RGBA8) {
        const unsigned int r = (unsigned int)(clamp01(v0) * 255.f + 0.5f);
        const unsigned int g = (unsigned int)(clamp01(v1) * 255.f + 0.5f);
        const unsigned int b = (unsigned int)(clamp01(v2) * 255.f + 0.5f);
#ifdef __CUDACC__
        if (p.surface) {
            asm volatile("sust.b.2d.v4.b8.trap [%0, {%1, %2}], {%3, %4, %5, %6};"
                         :: "l"(p.surface), "r"(x * 4), "r"(yy), "r"(r), "r"(g), "r"(b), "r"(255u) : "memory");
            return;
        }
#endif
        uchar4* o = (uchar4*)((char*)p.out + (long long)yy * p.pitch) + x;
        uchar4 val;
        val.x = (unsigned char)r; val.y = (unsigned char)g; val.z = (unsigned char)b; val.w = 255;
        *o = val;
    } else {
#ifdef __CUDACC__
        if (p.surface) {
            asm volatile("sust.b.2d.v4.b32.trap [%0, {%1, %2}], {%3, %4, %5, %6};"
                         :: "l"(p.surface), "r"(x * 16), "r"(yy), "f"(v0), "f"(v1), "f"(v2), "f"(1.f) : "memory");
            return;
        }
#endif
        float4* o = (float4*)((char*)p.out + (long long)yy * p.pitch) + x;
        float4 val;
        val.x = v0; val.y = v1; val.z = v2; val.w = 1.f;
        *o = val;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// One ray as a small state machine (ray_init, then ray_step until it returns true, then ray_finish), so that the
// persistent kernel can hand a lane a new pixel as soon as its ray is done.

struct RayState {
    float org[3], dir[3];
    float t_near, t_far;
#if MODE == MODE_RGB
    float denc[DIR_DIM];
#endif
    float T, opacity, acc0, acc1, acc2;  // acc: rgb / normal / depth (acc0)
    int n_samples, max_depth;
    int k;                                // next sample index
    int idx[MAX_LEVEL + 1];               // cell index per level of the last descent, valid for levels <= valid
    int valid, pc0, pc1, pc2;             // ... and the LOD-level cell coordinates it was made for
    int x, y;
};

HD void ray_init(const Params& p, RayState& s, int x, int y) {
    s.x = x; s.y = y;
    // Ray through the pixel centre (engine/cameras.rays_from_pixels).
    float xn, yn;
    if (p.pixel_xy != nullptr) {  // lens distortion: undistorted on the host, once per camera
        const long long i = 2LL * ((long long)y * p.width + x);
        xn = p.pixel_xy[i];
        yn = p.pixel_xy[i + 1];
    } else {
        xn = ((float)x + 0.5f - p.cx) / p.fx;
        yn = ((float)y + 0.5f - p.cy) / p.fy;
    }
    const float cn = sqrtf(xn * xn + yn * yn + 1.f);
    const float d_cam[3] = {xn / cn, -yn / cn, -1.f / cn};
#pragma unroll
    for (int i = 0; i < 3; ++i) {
        s.dir[i] = p.c2w[4 * i] * d_cam[0] + p.c2w[4 * i + 1] * d_cam[1] + p.c2w[4 * i + 2] * d_cam[2];
        s.org[i] = p.c2w[4 * i + 3];
    }
    const float dn = sqrtf(s.dir[0] * s.dir[0] + s.dir[1] * s.dir[1] + s.dir[2] * s.dir[2]);
    s.dir[0] /= dn; s.dir[1] /= dn; s.dir[2] /= dn;

    // Scene cube (engine.render.ray_cube_interval).
    float t_near = -3.402823466e38f, t_far = 3.402823466e38f;
#pragma unroll
    for (int i = 0; i < 3; ++i) {
        const float safe = fabsf(s.dir[i]) < 1e-9f ? 1e-9f : s.dir[i];
        const float inv = 1.f / safe;
        const float t0 = FMUL(FSUB(FSUB(p.center[i], p.half_size), s.org[i]), inv);
        const float t1 = FMUL(FSUB(FADD(p.center[i], p.half_size), s.org[i]), inv);
        t_near = fmaxf(t_near, fminf(t0, t1));
        t_far = fminf(t_far, fmaxf(t0, t1));
    }
    s.t_near = fmaxf(t_near, 0.f);
    s.t_far = p.root_present ? t_far : s.t_near;  // an empty octree: no sample at all

#if MODE == MODE_RGB
    // Direction encoding (engine.decoder.encode_direction), once per ray.
#pragma unroll
    for (int i = 0; i < 3; ++i) {
        s.denc[i] = s.dir[i];
        SINCOSPI(s.dir[i], &s.denc[3 + i], &s.denc[6 + i]);
        SINCOSPI(2.f * s.dir[i], &s.denc[9 + i], &s.denc[12 + i]);
    }
#endif
    s.T = 1.f; s.opacity = 0.f; s.acc0 = 0.f; s.acc1 = 0.f; s.acc2 = 0.f;
    s.n_samples = 0; s.max_depth = -1; s.k = 0;
#pragma unroll
    for (int l = 0; l <= MAX_LEVEL; ++l) s.idx[l] = 0;
    s.valid = 0; s.pc0 = -1; s.pc1 = -1; s.pc2 = -1;
}

// Finds the next occupied sample (skipping empty cells hierarchically), evaluates and composites it.
// Returns true when the ray is done (no sample left, or T < EARLY_STOP).
HD bool ray_step(const Params& p, const float* const* rows_k, RayState& s) {
    const int L = p.level;
    const float res = (float)(1 << L);
    const int rmax = (1 << L) - 1;
    float t, u0, u1, u2;
    while (true) {
        t = FADD(s.t_near, FMUL((float)s.k + 0.5f, p.step));
        if (!(t < s.t_far)) return true;
        u0 = FADD(FMUL(FSUB(FADD(s.org[0], FMUL(t, s.dir[0])), p.center[0]), p.inv_size), 0.5f);
        u1 = FADD(FMUL(FSUB(FADD(s.org[1], FMUL(t, s.dir[1])), p.center[1]), p.inv_size), 0.5f);
        u2 = FADD(FMUL(FSUB(FADD(s.org[2], FMUL(t, s.dir[2])), p.center[2]), p.inv_size), 0.5f);
        const int c0 = min(max((int)floorf(u0 * res), 0), rmax);
        const int c1 = min(max((int)floorf(u1 * res), 0), rmax);
        const int c2 = min(max((int)floorf(u2 * res), 0), rmax);
#if PATH_CACHE
        // Deepest level whose cell the previous descended sample shares with this one.
        const unsigned int diff = (unsigned int)((c0 ^ s.pc0) | (c1 ^ s.pc1) | (c2 ^ s.pc2));
        int start = L;
        if (diff) {
#ifdef __CUDACC__
            start = L - (32 - __clz(diff));
#else
            start = L - (32 - __builtin_clz(diff));
#endif
        }
        if (start < 0) start = 0;
        if (start > s.valid) start = s.valid;
#else
        const int start = 0;
#endif
        s.pc0 = c0; s.pc1 = c1; s.pc2 = c2;
        int depth = start;
        bool alive = true;
#pragma unroll
        for (int l = 0; l < MAX_LEVEL; ++l) {
            if (l >= start && l < L && alive) {
                const int2 node = LDG(p.nodes[l] + s.idx[l]);
                const int sh = L - l - 1;
                const int oct = child_octant(c0, c1, c2, sh);
                if (has_child(node.x, oct)) {
                    s.idx[l + 1] = child_index(node.x, node.y, oct);
                    depth = l + 1;
                } else {
                    alive = false;
                }
            }
        }
        s.valid = depth;
        s.max_depth = depth > s.max_depth ? depth : s.max_depth;
        if (depth == L) break;
        // The empty cell is at level depth+1: jump to the first sample past its exit (minus a safety margin).
        const int e = depth + 1, sh = L - e;
        const float inv_r = 1.f / (float)(1 << e);
        const float cc[3] = {(float)(c0 >> sh), (float)(c1 >> sh), (float)(c2 >> sh)};
        const float uu[3] = {u0, u1, u2};
        float t_exit = 3.402823466e38f;
#pragma unroll
        for (int i = 0; i < 3; ++i) {
            const float du = s.dir[i] * p.inv_size;  // unit-cube units per world unit along the ray
            if (fabsf(du) > 1e-12f) {
                const float bound = (du > 0.f ? cc[i] + 1.f : cc[i]) * inv_r;
                t_exit = fminf(t_exit, t + (bound - uu[i]) / du);
            }
        }
        if (!(t_exit < s.t_far)) return true;  // the empty cell reaches the end of the ray
        const float q = (t_exit - s.t_near) / p.step - 0.5f - SKIP_MARGIN;
        const int k_next = (int)floorf(q) + 1;
        s.k = k_next > s.k + 1 ? k_next : s.k + 1;
    }

    // Occupied sample: features, decoder, compositing.
    int cell[N_LODS];
#pragma unroll
    for (int kk = 0; kk < N_LODS; ++kk) cell[kk] = s.idx[BASE_LEVEL + kk];
    float feat[FEAT];
    float h[HIDDEN], out[OUT1];
    gather_features(p, rows_k, cell, u0, u1, u2, feat);
    density_mlp(feat, h, out);
    const float sigma = expf(fminf(out[0], MAX_LOG_DENSITY));
    const float alpha = 1.f - expf(-(sigma * p.step));
    const float w = s.T * alpha;
    ++s.n_samples;
#if MODE == MODE_RGB
    if (w >= p.rgb_min_weight) {
        float rgb[3];
        color_mlp(out, s.denc, rgb);
        s.acc0 = fmaf(w, rgb[0], s.acc0); s.acc1 = fmaf(w, rgb[1], s.acc1); s.acc2 = fmaf(w, rgb[2], s.acc2);
    }
#elif MODE == MODE_DEPTH
    s.acc0 = fmaf(w, t, s.acc0);
#elif MODE == MODE_NORMAL
    {
        // d out0 / d u = sum_f gvec_f d feat_f / d u with gvec_f = sum_j w1[j,0] [h_j > 0] w0[f,j];
        // d sigma = sigma d out0 (0 where the clamp at MAX_LOG_DENSITY is active).
        float g[3] = {0.f, 0.f, 0.f};
        if (out[0] <= MAX_LOG_DENSITY) {
            // (rolled over f: unrolled, ptxas spilled this pass heavily at every optimisation level)
#pragma unroll
            for (int j = 0; j < HIDDEN; ++j) h[j] = h[j] > 0.f ? DEC(OFF_W1 + j * OUT1) : 0.f;
            float gvec[FEAT];
#pragma unroll 1
            for (int f = 0; f < FEAT; ++f) {
                float a = 0.f;
#pragma unroll
                for (int j = 0; j < HIDDEN; j += 4) {
                    const float4 w = DEC4(OFF_W0 + f * HIDDEN + j);
                    a = fmaf(h[j], w.x, a); a = fmaf(h[j + 1], w.y, a);
                    a = fmaf(h[j + 2], w.z, a); a = fmaf(h[j + 3], w.w, a);
                }
                gvec[f] = a;
            }
            gather_gradient(p, rows_k, cell, u0, u1, u2, gvec, g);
            g[0] *= sigma; g[1] *= sigma; g[2] *= sigma;
        }
        const float gn = fmaxf(sqrtf(g[0] * g[0] + g[1] * g[1] + g[2] * g[2]), 1e-12f);
        s.acc0 = fmaf(w, -g[0] / gn, s.acc0); s.acc1 = fmaf(w, -g[1] / gn, s.acc1);
        s.acc2 = fmaf(w, -g[2] / gn, s.acc2);
    }
#endif
    s.opacity += w;
    s.T *= 1.f - alpha;
    ++s.k;
    return s.T < EARLY_STOP;
}

HD void ray_finish(const Params& p, const RayState& s) {
#if MODE == MODE_RGB
    const float rest = 1.f - s.opacity;
    write_pixel(p, s.x, s.y, fmaf(rest, p.background[0], s.acc0), fmaf(rest, p.background[1], s.acc1),
                fmaf(rest, p.background[2], s.acc2));
#elif MODE == MODE_DEPTH
    write_pixel(p, s.x, s.y, s.acc0, 0.f, 0.f);
#elif MODE == MODE_NORMAL
    write_pixel(p, s.x, s.y, s.acc0, s.acc1, s.acc2);
#elif MODE == MODE_SAMPLES
    write_pixel(p, s.x, s.y, (float)s.n_samples, 0.f, 0.f);
#else
    write_pixel(p, s.x, s.y, (float)s.max_depth, 0.f, 0.f);
#endif
}

HD void march_pixel(const Params& p, const float* const* rows_k, int x, int y) {
    RayState s;
    ray_init(p, s, x, y);
    while (!ray_step(p, rows_k, s)) {
    }
    ray_finish(p, s);
}

// Pixel of job j in tile order: tiles of 8 x 4 pixels (one warp's worth), row-major over the image.
HD bool job_pixel(const Params& p, int j, int* x, int* y) {
    const int tiles_x = (p.width + 7) >> 3;
    const int tile = j >> 5, r = j & 31;
    *x = (tile % tiles_x) * 8 + (r & 7);
    *y = (tile / tiles_x) * 4 + (r >> 3);
    return *x < p.width && *y < p.height;
}

#ifdef __CUDACC__
#ifndef PERSISTENT
#define PERSISTENT 1
#endif

// Copies the decoder and the codebooks to shared memory (per the options); sets rows_k to where rows are read.
__device__ __forceinline__ void load_shared(const Params& p, const float** rows_k) {
#pragma unroll
    for (int k = 0; k < N_LODS; ++k) rows_k[k] = p.rows[k];
#if W_SHARED || (CB_SHARED && CODES != 0)
    const int tid = threadIdx.y * blockDim.x + threadIdx.x, nt = blockDim.x * blockDim.y;
    int base = 0;
#if W_SHARED
    for (int i = tid; i < DEC_SIZE; i += nt) s_mem[i] = p.decoder[i];
    base = (DEC_SIZE + 3) & ~3;
#endif
#if CB_SHARED && CODES != 0
#pragma unroll
    for (int k = 0; k < N_LODS; ++k) {
        float* dst = s_mem + base + k * CB_ROWS * FEAT;
        if (k <= p.lod)
            for (int i = tid; i < CB_ROWS * FEAT; i += nt) dst[i] = p.rows[k][i];
        rows_k[k] = dst;
    }
#endif
    __syncthreads();
#endif
}

#if PERSISTENT
// Persistent threads: a grid that just fills the GPU; each warp takes pixels from a global counter (p.counter,
// zeroed before the launch) whenever some of its lanes are idle, so lanes whose rays end early get new pixels
// instead of idling until the slowest ray of their warp is done. 1-D blocks of BLOCK_X * BLOCK_Y threads.
extern "C" __global__ void __launch_bounds__(BLOCK_X * BLOCK_Y) march_rays(const Params p) {
    const float* rows_k[N_LODS];
    load_shared(p, rows_k);
    const unsigned int lane = threadIdx.x & 31;
    const unsigned int below = (1u << lane) - 1u;
    const int total = ((p.width + 7) >> 3) * ((p.height + 3) >> 2) * 32;
    RayState s;
    bool active = false, more = true;
    while (true) {
        if (more) {
            const unsigned int idle = __ballot_sync(0xFFFFFFFFu, !active);
            if (idle) {
                const int leader = __ffs(idle) - 1;
                int base = 0;
                if ((int)lane == leader) base = atomicAdd(p.counter, __popc(idle));
                base = __shfl_sync(0xFFFFFFFFu, base, leader);
                if (base + __popc(idle) >= total) more = false;
                if (!active) {
                    const int j = base + __popc(idle & below);
                    int x, y;
                    if (j < total && job_pixel(p, j, &x, &y)) {
                        ray_init(p, s, x, y);
                        active = true;
                    }
                }
            }
        }
        if (!__any_sync(0xFFFFFFFFu, active)) {
            if (!more) break;
            continue;
        }
        if (active && ray_step(p, rows_k, s)) {
            ray_finish(p, s);
            active = false;
        }
    }
}
#else
extern "C" __global__ void __launch_bounds__(BLOCK_X * BLOCK_Y) march_rays(const Params p) {
    const float* rows_k[N_LODS];
    load_shared(p, rows_k);
    const int x = blockIdx.x * BLOCK_X + threadIdx.x;
    const int y = blockIdx.y * BLOCK_Y + threadIdx.y;
    if (x >= p.width || y >= p.height) return;
    march_pixel(p, rows_k, x, y);
}
#endif
#else
extern "C" void march_rays_host(const Params* p) {
    g_host_dec = p->decoder;
    const float* rows_k[N_LODS];
    for (int k = 0; k < N_LODS; ++k) rows_k[k] = p->rows[k];
    const int total = ((p->width + 7) >> 3) * ((p->height + 3) >> 2) * 32;
    for (int j = 0; j < total; ++j) {  // the persistent kernel's job order
        int x, y;
        if (job_pixel(*p, j, &x, &y)) march_pixel(*p, rows_k, x, y);
    }
}
#endif
