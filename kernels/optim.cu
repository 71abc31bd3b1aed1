// AdamW step and gradient-norm pieces for the f32 master weights.
// CPU twin: trainer::optim::AdamW::step and trainer::optim::grad_norm. Compiled WITHOUT
// --use_fast_math (see compile.rs): the update must track the twin step after step.

// Per element, in the twin's order: g' = g * grad_scale (the clip), m, v updates in f32,
// bias-corrected ratio in f64, then w = w * decay - lr * update. w_bf16 (nullable)
// receives the bf16 working copy of the updated weight.
extern "C" __global__ void adamw_step(float* w, const float* g, float* m, float* v, long long n, float grad_scale,
                                      float beta1, float beta2, float eps, float lr, float decay, double bc1,
                                      double bc2, unsigned short* w_bf16) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) {
        float gj = g[i] * grad_scale;
        float mj = beta1 * m[i] + (1.f - beta1) * gj;
        float vj = beta2 * v[i] + (1.f - beta2) * gj * gj;
        m[i] = mj;
        v[i] = vj;
        double mhat = (double)mj / bc1;
        double vhat = (double)vj / bc2;
        float update = (float)(mhat / (sqrt(vhat) + (double)eps));
        float wj = w[i] * decay - lr * update;
        w[i] = wj;
        if (w_bf16) {
            unsigned int u = __float_as_uint(wj);
            u += 0x7fffu + ((u >> 16) & 1u);
            w_bf16[i] = (unsigned short)(u >> 16);
        }
    }
}

// partial[blockIdx.x] = Σ x² over this block's grid-stride share, in f64. The host sums
// the partials of every tensor in a fixed order: deterministic.
extern "C" __global__ void sum_squares(const float* x, long long n, double* partial) {
    __shared__ double buf[256];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        acc += (double)x[i] * (double)x[i];
    buf[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = buf[0];
}

// x *= s (gradient clipping applied to a whole tensor).
extern "C" __global__ void scale_in_place(float* x, long long n, float s) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) x[i] *= s;
}
