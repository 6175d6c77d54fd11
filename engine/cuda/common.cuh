// common.cuh: what the kernels of engine/cuda share. Included by march_rays.cu, grid_features.cu and vq_adam.cu.
//
// - The host shim: every .cu file also compiles as plain C++ on the host (no __CUDACC__; tests/host_build.py), so
//   the tests check its arithmetic against the torch twins on a CPU. HD marks a function for both builds; LDG, POPC
//   and the small vector types (int2, float4, ...) have host stand-ins.
// - Octree descent, one level at a time (engine/octree.py `descend`): the octant of a child cell and its index in
//   the next level's cells from its parent's child mask and first child.
// - Trilinear corner weights of a point in its cell (engine/octree.py `trilinear_weights`), corner
//   c = dx*4 + dy*2 + dz.
//
// NVRTC gets this file as a header string (engine/cuda/toolchain.py read_source), so its text is part of every
// kernel's disk-cache key; the host compiler finds it next to the .cu file.

#pragma once

#define MAX_LEVELS 16  // octree levels / LODs a parameter struct has room for (toolchain.MAX_LEVELS)

#ifdef __CUDACC__
#define HD __device__ __forceinline__
#define LDG(p) __ldg(p)
#define POPC(x) __popc(x)
#else  // host build (tests only)
#include <cmath>
#include <cstddef>
using std::floor;
struct int2 { int x, y; };
struct int4 { int x, y, z, w; };
struct uint2 { unsigned int x, y; };
struct uint4 { unsigned int x, y, z, w; };
struct float4 { float x, y, z, w; };
struct uchar4 { unsigned char x, y, z, w; };
#define HD static inline
#define __restrict__
#define LDG(p) (*(p))
#define POPC(x) __builtin_popcount(x)
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
#endif

// ---------------------------------------------------------------------------------------------------------------
// Octree descent. A cell's children are described by its child mask (bit o set: the child in octant o is occupied)
// and child_start (the index of its first occupied child in the next level's cells); children are stored in octant
// order, so the child in octant o is child_start + the number of occupied octants below o.

// Octant of a cell among its parent's children, from integer coordinates (x, y, z) at a level `shift` levels finer
// than the cell's (0: the cell's own): o = 4 bx + 2 by + bz, with b the bit `shift` of each coordinate.
HD int child_octant(const int x, const int y, const int z, const int shift) {
    return (((x >> shift) & 1) << 2) | (((y >> shift) & 1) << 1) | ((z >> shift) & 1);
}

// Whether the child in `octant` is occupied (mask: the parent's child mask, 0..255).
HD bool has_child(const int mask, const int octant) { return (mask >> octant) & 1; }

// Index in the next level's cells of the child in `octant` (meaningful when has_child).
HD int child_index(const int mask, const int child_start, const int octant) {
    return child_start + POPC(mask & ((1 << octant) - 1));
}

// ---------------------------------------------------------------------------------------------------------------
// Trilinear corner weights

// Per axis the weights (1 - f, f) of the two corner planes of the cell at `level` holding unit point (u0, u1, u2):
// f = u r - clamp(floor(u r), 0, r - 1) with r = 2^level (points outside the cube extrapolate from the edge cell).
HD void corner_fractions(const float u0, const float u1, const float u2, const int level, float* wx, float* wy,
                         float* wz) {
    const float r = (float)(1 << level);
    const float rmax = r - 1.f;
    const float s0 = u0 * r, s1 = u1 * r, s2 = u2 * r;
    const float f0 = s0 - fminf(fmaxf(floorf(s0), 0.f), rmax);
    const float f1 = s1 - fminf(fmaxf(floorf(s1), 0.f), rmax);
    const float f2 = s2 - fminf(fmaxf(floorf(s2), 0.f), rmax);
    wx[0] = 1.f - f0; wx[1] = f0; wy[0] = 1.f - f1; wy[1] = f1; wz[0] = 1.f - f2; wz[1] = f2;
}

// The weight of corner c = dx*4 + dy*2 + dz from the per-axis weights of corner_fractions.
HD float corner_weight(const float* wx, const float* wy, const float* wz, const int c) {
    return (wx[c >> 2] * wy[(c >> 1) & 1]) * wz[c & 1];
}

// All 8 corner weights of unit point (u0, u1, u2) in its cell at `level`.
HD void corner_weights(const float u0, const float u1, const float u2, const int level, float w[8]) {
    float wx[2], wy[2], wz[2];
    corner_fractions(u0, u1, u2, level, wx, wy, wz);
    for (int c = 0; c < 8; ++c) w[c] = corner_weight(wx, wy, wz, c);
}
