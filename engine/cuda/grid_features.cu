// grid_features: the training-time feature lookup, fused. Twin of engine/field.py `feature_from_cells` after
// engine/octree.py `descend`: for every point, walk the octree from the root to level BASE + lod, and sum over
// LOD 0..lod the trilinear interpolation of that LOD's corner features.
//
//   grid_features_forward:  out[m, :]  = sum_k sum_c w_kc(p_m) * table_k[corners_k[cell_k(m), c], :]
//   grid_features_backward: grad_table_k[corners_k[cell_k(m), c], :] += w_kc(p_m) * grad_out[m, :]
//
// One thread per point; the backward recomputes the descent and the weights instead of storing them, and on the GPU
// sums the lanes of a warp that add to the same corner row before the atomic (warp_add_row). Points whose
// cell at some level is unoccupied use cell 0 there, as `descend` does (the trainer culls them before).
//
// Compiled at run time by NVRTC (engine/cuda/grid_features.py) with -DFEAT=F. The same file compiles as plain C++ on
// the host (no __CUDACC__): tests/test_grid_features.py checks it against the torch functions on the CPU.

#ifndef FEAT
#define FEAT 16
#endif

#include "common.cuh"  // HD, POPC, MAX_LEVELS, child_octant / has_child / child_index, corner_weights

// Mirrored by engine/cuda/grid_features.py FeatureParams (ctypes).
struct FeatureParams {
    const float* points;                        // [n, 3] unit cube
    const unsigned char* child_mask[MAX_LEVELS]; // per octree level: uint8 [n_l]
    const int* child_start[MAX_LEVELS];          // per octree level: int32 [n_l]
    const int* corners[MAX_LEVELS];              // per LOD: int32 [n_cells, 8] corner-table row of each corner
    const float* tables[MAX_LEVELS];             // per LOD: float [n_corners, FEAT] (forward)
    float* grad_tables[MAX_LEVELS];              // per LOD: float [n_corners, FEAT] (backward, accumulated)
    float* out;                                  // [n, FEAT] (forward)
    const float* grad_out;                       // [n, FEAT] (backward)
    long long n;                                 // points
    int base_level;                              // octree level of LOD 0
    int lod;                                     // finest LOD summed
    int root_present;                            // octree level 0 has its cell
    int pad_;
};

#ifndef __CUDACC__
extern "C" int feature_params_layout(long long* offsets) {
    int i = 0;
    offsets[i++] = offsetof(FeatureParams, points);
    offsets[i++] = offsetof(FeatureParams, child_mask);
    offsets[i++] = offsetof(FeatureParams, child_start);
    offsets[i++] = offsetof(FeatureParams, corners);
    offsets[i++] = offsetof(FeatureParams, tables);
    offsets[i++] = offsetof(FeatureParams, grad_tables);
    offsets[i++] = offsetof(FeatureParams, out);
    offsets[i++] = offsetof(FeatureParams, grad_out);
    offsets[i++] = offsetof(FeatureParams, n);
    offsets[i++] = offsetof(FeatureParams, base_level);
    offsets[i++] = offsetof(FeatureParams, lod);
    offsets[i++] = offsetof(FeatureParams, root_present);
    offsets[i++] = sizeof(FeatureParams);
    return i;
}
#endif

// Descends one point from the root: cell[l] = index into cells[l] for l = 0..max_level (0 where unoccupied).
HD void descend_point(const FeatureParams& p, const float px, const float py, const float pz, const int max_level,
                      int cell[MAX_LEVELS]) {
    int index = 0;
    bool alive = p.root_present != 0;
    cell[0] = 0;
    for (int l = 0; l < max_level; ++l) {
        const int r = 1 << (l + 1);
        const int ix = (int)fminf(fmaxf(floor(px * (float)r), 0.0f), (float)(r - 1));
        const int iy = (int)fminf(fmaxf(floor(py * (float)r), 0.0f), (float)(r - 1));
        const int iz = (int)fminf(fmaxf(floor(pz * (float)r), 0.0f), (float)(r - 1));
        const int octant = child_octant(ix, iy, iz, 0);
        const int mask = p.child_mask[l][index];
        const bool occupied = alive && has_child(mask, octant);
        const int child = child_index(mask, p.child_start[l][index], octant);
        index = occupied ? child : 0;
        alive = occupied;
        cell[l + 1] = index;
    }
}

HD void forward_point(const FeatureParams& p, const long long m) {
    const float px = p.points[3 * m], py = p.points[3 * m + 1], pz = p.points[3 * m + 2];
    int cell[MAX_LEVELS];
    descend_point(p, px, py, pz, p.base_level + p.lod, cell);
    float acc[FEAT];
    for (int f = 0; f < FEAT; ++f) acc[f] = 0.0f;
    for (int k = 0; k <= p.lod; ++k) {
        const int level = p.base_level + k;
        float w[8];
        corner_weights(px, py, pz, level, w);
        const int* rows = p.corners[k] + 8 * (long long)cell[level];
        for (int c = 0; c < 8; ++c) {
            const float* row = p.tables[k] + (long long)rows[c] * FEAT;
#if defined(__CUDACC__) && (FEAT % 4 == 0)
            for (int f = 0; f < FEAT; f += 4) {
                const float4 v = __ldg(reinterpret_cast<const float4*>(row + f));
                acc[f] += w[c] * v.x;
                acc[f + 1] += w[c] * v.y;
                acc[f + 2] += w[c] * v.z;
                acc[f + 3] += w[c] * v.w;
            }
#else
            for (int f = 0; f < FEAT; ++f) acc[f] += w[c] * row[f];
#endif
        }
    }
    float* out = p.out + m * FEAT;
    for (int f = 0; f < FEAT; ++f) out[f] = acc[f];
}

#ifndef __CUDACC__
// The host build's backward (the GPU's is backward_point_warp below, the same sums with warp-aggregated atomics).
HD void backward_point(const FeatureParams& p, const long long m) {
    float g[FEAT];
    bool any = false;
    for (int f = 0; f < FEAT; ++f) {
        g[f] = p.grad_out[m * FEAT + f];
        any = any || g[f] != 0.0f;
    }
    if (!any) return;
    const float px = p.points[3 * m], py = p.points[3 * m + 1], pz = p.points[3 * m + 2];
    int cell[MAX_LEVELS];
    descend_point(p, px, py, pz, p.base_level + p.lod, cell);
    for (int k = 0; k <= p.lod; ++k) {
        const int level = p.base_level + k;
        float w[8];
        corner_weights(px, py, pz, level, w);
        const int* rows = p.corners[k] + 8 * (long long)cell[level];
        for (int c = 0; c < 8; ++c) {
            float* row = p.grad_tables[k] + (long long)rows[c] * FEAT;
            for (int f = 0; f < FEAT; ++f) row[f] += w[c] * g[f];
        }
    }
}
#endif

#ifdef __CUDACC__
extern "C" __global__ void __launch_bounds__(128) grid_features_forward(const FeatureParams p) {
    const long long m = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (m < p.n) forward_point(p, m);
}

// Adds w * g[0..FEAT) to row `row` of grad_table (row < 0: this lane adds nothing). The lanes of the warp that add
// to the same row are summed first (a tree over those lanes, by shuffles) and their lowest lane does the atomic:
// consecutive samples of a ray mostly share their coarse levels' corners, so the atomics, which bound this kernel,
// drop several-fold. Every lane of the warp calls it with the same sequence of calls (shuffles).
__device__ __forceinline__ void warp_add_row(float* grad_table, const int row, const float w, const float* g) {
    const unsigned all = 0xffffffffu;
    const int lane = threadIdx.x & 31;
    const unsigned peers = __match_any_sync(all, row);
    float x[FEAT];
#pragma unroll
    for (int f = 0; f < FEAT; ++f) x[f] = w * g[f];
    if (!__all_sync(all, peers == (1u << lane))) {  // some lanes share a row: sum over them
        int rank = __popc(peers & ((1u << lane) - 1));  // this lane's position among its peers
        unsigned rest = peers & (0xfffffffeu << lane);  // the peers above it not yet summed in
        while (__any_sync(all, rest != 0)) {
            const int next = __ffs(rest) - 1;  // each lane takes in its next peer's partial sum (-1: none left)
#pragma unroll
            for (int f = 0; f < FEAT; ++f) {
                const float t = __shfl_sync(all, x[f], next < 0 ? lane : next);
                if (next >= 0) x[f] += t;
            }
            rest &= ~__ballot_sync(all, rank & 1);  // the odd ranks were taken in: the pairs halve
            rank >>= 1;
        }
    }
    if (row < 0 || (__ffs(peers) - 1) != lane) return;
    float* out = grad_table + (long long)row * FEAT;
#if (FEAT % 4 == 0) && (__CUDA_ARCH__ >= 900)
#pragma unroll
    for (int f = 0; f < FEAT; f += 4)  // one 16-byte atomic (sm_90+)
        atomicAdd(reinterpret_cast<float4*>(out + f), make_float4(x[f], x[f + 1], x[f + 2], x[f + 3]));
#else
#pragma unroll
    for (int f = 0; f < FEAT; ++f) atomicAdd(out + f, x[f]);
#endif
}

// backward_point with warp aggregation (warp_add_row). Every lane runs it, including lanes past the last point and
// points whose gradient is zero (they add nothing), since the warp's shuffles need every lane.
__device__ void backward_point_warp(const FeatureParams& p, const long long m) {
    float g[FEAT];
    bool any = false;
    for (int f = 0; f < FEAT; ++f) {
        g[f] = m < p.n ? p.grad_out[m * FEAT + f] : 0.0f;
        any = any || g[f] != 0.0f;
    }
    const float px = any ? p.points[3 * m] : 0.5f, py = any ? p.points[3 * m + 1] : 0.5f;
    const float pz = any ? p.points[3 * m + 2] : 0.5f;
    int cell[MAX_LEVELS];
    descend_point(p, px, py, pz, p.base_level + p.lod, cell);
    for (int k = 0; k <= p.lod; ++k) {
        const int level = p.base_level + k;
        float w[8];
        corner_weights(px, py, pz, level, w);
        const int* rows = p.corners[k] + 8 * (long long)cell[level];
        for (int c = 0; c < 8; ++c) warp_add_row(p.grad_tables[k], any ? rows[c] : -1, w[c], g);
    }
}

extern "C" __global__ void __launch_bounds__(128) grid_features_backward(const FeatureParams p) {
    backward_point_warp(p, (long long)blockIdx.x * blockDim.x + threadIdx.x);
}
#else
extern "C" void grid_features_forward_host(const FeatureParams* p) {
    for (long long m = 0; m < p->n; ++m) forward_point(*p, m);
}

extern "C" void grid_features_backward_host(const FeatureParams* p) {
    for (long long m = 0; m < p->n; ++m) backward_point(*p, m);
}
#endif
