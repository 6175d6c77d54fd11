// vq_adam: the vq logits' training step in one pass (engine/optim.py's VQLogitsAdam). Twin of engine/cuda/vq_adam.py
// `vq_adam_torch`: the straight-through gradient of the logits (engine/grids.py `ste_gradient`) followed by an
// Adam step on the rows that have one.
//
//   for each corner row r whose feature gradient v = grad_table[r, :] is not all zero:
//     s_j = v . codebook[j, :]                 (first-order change of the loss if the corner used row j; the kernel
//                                               reads codebook_t = codebook^T, [FEAT, K])
//     p = softmax(logits[r, :])
//     g_j = p_j (s_j - <p, s>)                  straight-through ("ste")
//     ReinMax: pi1 = (onehot(argmax) + p) / 2, g_j = 2 pi1_j (s_j - <pi1, s>) - g_j / 2
//     v2 = beta2 * exp_avg_sq[r, j] + (1 - beta2) g_j^2;  m = beta1 * exp_avg[r, j] + (1 - beta1) g_j (m = g_j
//     without exp_avg);  logits[r, j] -= step_size * m / (sqrt(v2) / root_correction + eps)
//   rows whose v is zero (no sample reached the corner this step) are left alone, moments included ("lazy" Adam).
//   indices[r] = argmax_j logits[r, j] after the step, when indices is given: the index table the next forward
//   reads is kept up to date row by row instead of by an argmax over every corner each step.
//
// One warp per row on the GPU (its lanes stride over the K = 2^b logits; the warps stride over the rows; the block
// copies the transposed codebook to shared memory when it fits, else reads it from global memory, where the lanes'
// consecutive rows j are consecutive addresses too), one thread per row on the host. Nothing is
// materialised: no gathered rows, no softmax, no sparse gradient, no host synchronisation to find the touched rows.
// Compiled at run time by NVRTC (engine/cuda/vq_adam.py) with -DFEAT=F; the same file compiles as plain C++ on the
// host (tests/test_optim.py compares it with its torch twin, vq_adam_torch).

#ifndef FEAT
#define FEAT 16
#endif

#include "common.cuh"  // HD and the host shim

#ifdef __CUDACC__
#define EXP expf
#define SQRT sqrtf
#define LANES 32
#else  // host build (tests only)
#define EXP std::exp
#define SQRT std::sqrt
#define LANES 1
#endif

struct VQAdamParams {
    const float* grad_table;  // [n_rows, FEAT]: gradient of the loss w.r.t. each corner's feature row
    const float* codebook_t;  // [FEAT, K]: the codebook transposed (entry (j, f) at f * K + j)
    float* logits;            // [n_rows, K]
    float* exp_avg_sq;        // [n_rows, K]
    float* exp_avg;           // [n_rows, K] or null (no first moment)
    int* indices;             // [n_rows] or null: each stepped row's argmax after the step
    long long n_rows;
    int k;                    // codebook rows K = 2^b
    int reinmax;              // 0: straight-through, 1: ReinMax
    float beta1, beta2, step_size, root_correction, eps;
};

HD float lanes_sum(float x) {
#ifdef __CUDACC__
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
#endif
    return x;
}

// The largest value and its first index (ties: the lowest index, as torch.argmax).
HD void lanes_argmax(float& x, int& i) {
#ifdef __CUDACC__
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        const int j = __shfl_xor_sync(0xffffffffu, i, o);
        if (y > x || (y == x && j < i)) { x = y; i = j; }
    }
#endif
}

// Where the codebook is read from: codebook_t or the kernel's shared-memory copy of it (entry (j, f) at f * k + j in
// both, so the lanes of a warp, which read consecutive rows j, hit consecutive banks or coalesce in global memory).
// Before 2026-12-03 the global path read the row-major codebook, 16 floats apart per lane, for b > 8.
struct CodebookView {
    const float* data;
    int row_stride, feature_stride;
};

// v . codebook[j, :]
HD float dot_row(const float* v, const CodebookView& book, const int j) {
    const float* row = book.data + (long long)j * book.row_stride;
    float s = 0.0f;
#pragma unroll
    for (int f = 0; f < FEAT; ++f) s += v[f] * row[f * book.feature_stride];
    return s;
}

// The step of row r, computed by `lanes` lanes of which this is `lane` (every lane of a warp takes part).
HD void vq_adam_row(const VQAdamParams& p, const CodebookView& book, long long r, int lane) {
    float v[FEAT];
    bool touched = false;
#pragma unroll
    for (int f = 0; f < FEAT; ++f) {
        v[f] = p.grad_table[r * FEAT + f];
        touched |= v[f] != 0.0f;
    }
    if (!touched) return;  // the same for every lane: they all read the same v
    float* logits = p.logits + r * p.k;
    float* sq = p.exp_avg_sq + r * p.k;
    float* m1 = p.exp_avg ? p.exp_avg + r * p.k : nullptr;

    float top = -3.4028235e38f;  // -FLT_MAX (logits are finite)
    int top_j = p.k;
    for (int j = lane; j < p.k; j += LANES)
        if (logits[j] > top) { top = logits[j]; top_j = j; }
    lanes_argmax(top, top_j);

    float z = 0.0f, zs = 0.0f;
    for (int j = lane; j < p.k; j += LANES) {
        const float e = EXP(logits[j] - top);
        z += e;
        zs += e * dot_row(v, book, j);
    }
    z = lanes_sum(z);
    const float mean_s = lanes_sum(zs) / z;  // <p, s>
    const float s_top = dot_row(v, book, top_j);
    const float mean_pi1 = 0.5f * (mean_s + s_top);  // <pi1, s>

    for (int j = lane; j < p.k; j += LANES) {
        const float prob = EXP(logits[j] - top) / z;
        const float s = dot_row(v, book, j);
        float g = prob * (s - mean_s);
        if (p.reinmax) {
            const float pi1 = 0.5f * prob + (j == top_j ? 0.5f : 0.0f);
            g = 2.0f * pi1 * (s - mean_pi1) - 0.5f * g;
        }
        const float v2 = p.beta2 * sq[j] + (1.0f - p.beta2) * g * g;
        sq[j] = v2;
        float m = g;
        if (m1) {
            m = p.beta1 * m1[j] + (1.0f - p.beta1) * g;
            m1[j] = m;
        }
        logits[j] -= p.step_size * m / (SQRT(v2) / p.root_correction + p.eps);
    }
    if (p.indices) {  // each lane reads back only the logits it wrote: no barrier needed
        float best = -3.4028235e38f;
        int best_j = p.k;
        for (int j = lane; j < p.k; j += LANES)
            if (logits[j] > best) { best = logits[j]; best_j = j; }
        lanes_argmax(best, best_j);
        if (lane == 0) p.indices[r] = best_j < p.k ? best_j : 0;  // all-NaN row: a valid index (the guard rolls back)
    }
}

#ifdef __CUDACC__
#define SHARED_CODEBOOK_FLOATS 4096  // 16 KB: K * FEAT up to this (b <= 8 at F = 16) is read from shared memory

// One warp per row, the warps striding over the rows (the launch caps the blocks, so each block's copy of the
// codebook serves many rows).
extern "C" __global__ void vq_adam(const VQAdamParams p) {
    __shared__ float shared_book[SHARED_CODEBOOK_FLOATS];
    CodebookView book{p.codebook_t, 1, p.k};
    if (p.k * FEAT <= SHARED_CODEBOOK_FLOATS) {
        for (int i = threadIdx.x; i < p.k * FEAT; i += blockDim.x) shared_book[i] = p.codebook_t[i];
        __syncthreads();
        book = CodebookView{shared_book, 1, p.k};
    }
    const long long warps = (long long)gridDim.x * blockDim.x / LANES;
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / LANES; r < p.n_rows; r += warps)
        vq_adam_row(p, book, r, threadIdx.x % LANES);
}
#else
extern "C" void vq_adam_host(const VQAdamParams* p) {
    const CodebookView book{p->codebook_t, 1, p->k};
    for (long long r = 0; r < p->n_rows; ++r) vq_adam_row(*p, book, r, 0);
}

// Field offsets and size of VQAdamParams (tests check the ctypes twin against them).
extern "C" int vq_adam_params_layout(long long* out) {
    int i = 0;
    out[i++] = offsetof(VQAdamParams, grad_table);
    out[i++] = offsetof(VQAdamParams, codebook_t);
    out[i++] = offsetof(VQAdamParams, logits);
    out[i++] = offsetof(VQAdamParams, exp_avg_sq);
    out[i++] = offsetof(VQAdamParams, exp_avg);
    out[i++] = offsetof(VQAdamParams, indices);
    out[i++] = offsetof(VQAdamParams, n_rows);
    out[i++] = offsetof(VQAdamParams, k);
    out[i++] = offsetof(VQAdamParams, reinmax);
    out[i++] = offsetof(VQAdamParams, beta1);
    out[i++] = offsetof(VQAdamParams, beta2);
    out[i++] = offsetof(VQAdamParams, step_size);
    out[i++] = offsetof(VQAdamParams, root_correction);
    out[i++] = offsetof(VQAdamParams, eps);
    out[i++] = sizeof(VQAdamParams);
    return i;
}
#endif
