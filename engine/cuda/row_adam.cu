// row_adam: one Adam step on the rows of a 2-D parameter that a row-sparse gradient names (engine/optim.py's
// RowAdam, the vq logits' optimiser). Twin of engine/optim.py `row_adam_reference`.
//
//   for each listed row r (rows[i], or i itself when rows is null) and column k:
//     v = beta2 * exp_avg_sq[r,k] + (1 - beta2) * g^2              g = grad[i,k]
//     m = beta1 * exp_avg[r,k] + (1 - beta1) * g    (m = g when exp_avg is null: no first moment)
//     param[r,k] -= step_size * m / (sqrt(v) / root_correction + eps)
//
// One thread per element; rows are unique, so no two threads touch the same element. Compiled at run time by NVRTC
// (engine/cuda/row_adam.py); the same file compiles as plain C++ on the host (tests/test_optim.py).

#ifdef __CUDACC__
#define HD __device__ __forceinline__
#define SQRT sqrtf
#else  // host build (tests only)
#include <cmath>
#define HD static inline
#define SQRT std::sqrt
#define __restrict__
#endif

HD void row_adam_element(long long e, const long long* __restrict__ rows, const float* __restrict__ grad,
                         float* __restrict__ param, float* __restrict__ exp_avg_sq, float* __restrict__ exp_avg,
                         int width, float beta1, float beta2, float step_size, float root_correction, float eps) {
    const long long i = e / width;
    const int k = (int)(e - i * width);
    const long long j = (rows ? rows[i] : i) * width + k;
    const float g = grad[e];
    const float v = beta2 * exp_avg_sq[j] + (1.0f - beta2) * g * g;
    exp_avg_sq[j] = v;
    float m = g;
    if (exp_avg) {
        m = beta1 * exp_avg[j] + (1.0f - beta1) * g;
        exp_avg[j] = m;
    }
    param[j] -= step_size * m / (SQRT(v) / root_correction + eps);
}

#ifdef __CUDACC__
extern "C" __global__ void row_adam(const long long* __restrict__ rows, const float* __restrict__ grad,
                                    float* __restrict__ param, float* __restrict__ exp_avg_sq,
                                    float* __restrict__ exp_avg, long long n_rows, int width, float beta1,
                                    float beta2, float step_size, float root_correction, float eps) {
    const long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < n_rows * width)
        row_adam_element(e, rows, grad, param, exp_avg_sq, exp_avg, width, beta1, beta2, step_size,
                         root_correction, eps);
}
#else
extern "C" void row_adam_host(const long long* rows, const float* grad, float* param, float* exp_avg_sq,
                              float* exp_avg, long long n_rows, int width, float beta1, float beta2, float step_size,
                              float root_correction, float eps) {
    for (long long e = 0; e < n_rows * width; ++e)
        row_adam_element(e, rows, grad, param, exp_avg_sq, exp_avg, width, beta1, beta2, step_size,
                         root_correction, eps);
}
#endif
