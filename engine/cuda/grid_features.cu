// grid_features: the training-time feature lookup, fused. Twin of engine/field.py `feature_from_cells` after
// engine/octree.py `descend`: for every point, walk the octree from the root to level BASE + lod, and sum over
// LOD 0..lod the trilinear interpolation of that LOD's corner features.
//
//   grid_features_forward:  out[m, :]  = sum_k sum_c w_kc(p_m) * table_k[corners_k[cell_k(m), c], :]
//   grid_features_backward: grad_table_k[corners_k[cell_k(m), c], :] += w_kc(p_m) * grad_out[m, :]
//
// One thread per point; the backward recomputes the descent and the weights instead of storing them. Points whose
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
#if defined(__CUDACC__) && (FEAT % 4 == 0) && (__CUDA_ARCH__ >= 900)
            for (int f = 0; f < FEAT; f += 4)  // one 16-byte atomic (sm_90+)
                atomicAdd(reinterpret_cast<float4*>(row + f),
                          make_float4(w[c] * g[f], w[c] * g[f + 1], w[c] * g[f + 2], w[c] * g[f + 3]));
#elif defined(__CUDACC__)
            for (int f = 0; f < FEAT; ++f) atomicAdd(row + f, w[c] * g[f]);
#else
            for (int f = 0; f < FEAT; ++f) row[f] += w[c] * g[f];
#endif
        }
    }
}

#ifdef __CUDACC__
extern "C" __global__ void __launch_bounds__(128) grid_features_forward(const FeatureParams p) {
    const long long m = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (m < p.n) forward_point(p, m);
}

extern "C" __global__ void __launch_bounds__(128) grid_features_backward(const FeatureParams p) {
    const long long m = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (m < p.n) backward_point(p, m);
}
#else
extern "C" void grid_features_forward_host(const FeatureParams* p) {
    for (long long m = 0; m < p->n; ++m) forward_point(*p, m);
}

extern "C" void grid_features_backward_host(const FeatureParams* p) {
    for (long long m = 0; m < p->n; ++m) backward_point(*p, m);
}
#endif
