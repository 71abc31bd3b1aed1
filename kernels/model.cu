// Element-wise and row-wise ops of the llama block for the GPU training path. Inputs are
// f32 (the residual stream, GEMM outputs); outputs that feed a GEMM have a bf16 twin
// (`*_bf16`: RMSNorm and SwiGLU write the bf16 GEMM operand directly, so the f32 copy
// never exists), used by the Bf16 precision mode (trainer/src/gpu/precision.rs). All
// arithmetic and statistics stay f32/f64; bf16 is only the storage of the result.
//
// CPU twins (trainer::train): embedding / embedding_backward, rms_norm /
// rms_norm_backward, rope / rope_backward (interleaved pairs), swiglu / swiglu_backward;
// add_in_place is the residual `x += y`.

typedef unsigned short bf16_t;

__device__ __forceinline__ float bf16_to_f32(bf16_t b) { return __uint_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

extern "C" __global__ void cast_f32_to_bf16(const float* x, bf16_t* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) y[i] = f32_to_bf16(x[i]);
}

extern "C" __global__ void cast_bf16_to_f32(const bf16_t* x, float* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) y[i] = bf16_to_f32(x[i]);
}

// out[t, :] = table[tokens[t], :]; one block per token. Tokens >= vocab give NaN rows
// (the host validates ids first; the kernel never reads out of bounds).
extern "C" __global__ void embedding_forward(const float* table, const unsigned int* tokens, int T, int dim, int vocab,
                                             float* out) {
    int t = blockIdx.x;
    if (t >= T) return;
    unsigned int tok = tokens[t];
    for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        out[(size_t)t * dim + d] = tok < (unsigned int)vocab ? table[(size_t)tok * dim + d] : __int_as_float(0x7fc00000);
    }
}

// dtable[tokens[t], d] += dout[t, d] for t in position order: one thread per column d,
// so the sum order is the CPU twin's and the result is deterministic (no atomics).
extern "C" __global__ void embedding_backward(float* dtable, const unsigned int* tokens, int T, int dim, int vocab,
                                              const float* dout) {
    int d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= dim) return;
    for (int t = 0; t < T; t++) {
        unsigned int tok = tokens[t];
        if (tok < (unsigned int)vocab) dtable[(size_t)tok * dim + d] += dout[(size_t)t * dim + d];
    }
}

// Block-wide f64 sum (blockDim.x a power of two <= 1024).
__device__ double block_sum(double v) {
    __shared__ double buf[1024];
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    double r = buf[0];
    __syncthreads();
    return r;
}

// Stores an f32 result as the output's element type (f32 as is, bf16 rounded to nearest
// even), so one template body serves both precisions.
__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(bf16_t* p, float v) { *p = f32_to_bf16(v); }

// y = x * rstd * g per row; rstd = 1 / sqrt(mean(x^2) + eps) (sum in f64 as the twin).
// The product is formed in f32 and rounded once when Y is bf16.
template <typename Y>
__device__ void rmsnorm_row(const float* x, const float* gain, int T, int dim, float eps, Y* y, float* rstd) {
    int t = blockIdx.x;
    if (t >= T) return;
    const float* xr = x + (size_t)t * dim;
    double ss = 0.0;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) ss += (double)xr[d] * (double)xr[d];
    ss = block_sum(ss);
    float r = (float)(1.0 / sqrt(ss / dim + (double)eps));
    for (int d = threadIdx.x; d < dim; d += blockDim.x) store_out(y + (size_t)t * dim + d, xr[d] * r * gain[d]);
    if (threadIdx.x == 0) rstd[t] = r;
}

extern "C" __global__ void rmsnorm_forward(const float* x, const float* gain, int T, int dim, float eps, float* y,
                                           float* rstd) {
    rmsnorm_row<float>(x, gain, T, dim, eps, y, rstd);
}

// The fused "RMSNorm -> bf16 GEMM operand" of the Bf16 mode; rstd stays f32.
extern "C" __global__ void rmsnorm_forward_bf16(const float* x, const float* gain, int T, int dim, float eps,
                                                bf16_t* y, float* rstd) {
    rmsnorm_row<bf16_t>(x, gain, T, dim, eps, y, rstd);
}

// Blocks [0, T): dx of row t = rstd (dy∘g − x̂ · mean(dy∘g∘x̂)).
// Blocks [T, T + ceil(dim / blockDim)): dgain[d] += Σ_t dy[t,d] x[t,d] rstd[t] in row
// order (f64), one thread per column: deterministic, as the twin.
extern "C" __global__ void rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd,
                                            int T, int dim, float* dx, float* dgain) {
    if ((int)blockIdx.x < T) {
        int t = blockIdx.x;
        const float* dyr = dy + (size_t)t * dim;
        const float* xr = x + (size_t)t * dim;
        float r = rstd[t];
        double dot = 0.0;
        for (int d = threadIdx.x; d < dim; d += blockDim.x) dot += (double)(dyr[d] * gain[d]) * (double)(xr[d] * r);
        dot = block_sum(dot);
        float mean = (float)(dot / dim);
        for (int d = threadIdx.x; d < dim; d += blockDim.x) {
            float xhat = xr[d] * r;
            dx[(size_t)t * dim + d] = r * (dyr[d] * gain[d] - xhat * mean);
        }
    } else {
        int d = (blockIdx.x - T) * blockDim.x + threadIdx.x;
        if (d >= dim) return;
        double acc = 0.0;
        for (int t = 0; t < T; t++) acc += (double)(dy[(size_t)t * dim + d] * x[(size_t)t * dim + d] * rstd[t]);
        dgain[d] += (float)acc;
    }
}

// Rotates interleaved pairs (2i, 2i+1) of each head by pos * theta^(-2i/hd), pos = row +
// pos0; sign = -1 rotates back (the backward). Angles in f64 and rounded once, as the twin.
__device__ void rope_rotate(float* x, int T, int heads, int hd, float theta, int pos0, float sign) {
    int half = hd / 2;
    long long n = (long long)T * heads * half;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    int i = (int)(idx % half);
    long long th = idx / half;  // t * heads + head
    int t = (int)(th / heads);
    double freq = pow((double)theta, -2.0 * (double)i / (double)hd);
    double a = (double)(t + pos0) * freq;
    float c = (float)cos(a), s = sign * (float)sin(a);
    float* p = x + th * hd + 2 * i;
    float u = p[0], w = p[1];
    p[0] = u * c - w * s;
    p[1] = u * s + w * c;
}

extern "C" __global__ void rope_forward(float* x, int T, int heads, int hd, float theta, int pos0) {
    rope_rotate(x, T, heads, hd, theta, pos0, 1.f);
}

extern "C" __global__ void rope_backward(float* dx, int T, int heads, int hd, float theta, int pos0) {
    rope_rotate(dx, T, heads, hd, theta, pos0, -1.f);
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

template <typename A>
__device__ void swiglu_elems(const float* gate, const float* up, A* act, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) {
        float g = gate[i];
        store_out(act + i, g * sigmoidf_(g) * up[i]);
    }
}

extern "C" __global__ void swiglu_forward(const float* gate, const float* up, float* act, long long n) {
    swiglu_elems<float>(gate, up, act, n);
}

// SwiGLU writing the down projection's bf16 operand directly (Bf16 mode).
extern "C" __global__ void swiglu_forward_bf16(const float* gate, const float* up, bf16_t* act, long long n) {
    swiglu_elems<bf16_t>(gate, up, act, n);
}

// out[i, :] = bf16(x[rows[i], :]): gathers the LM head's scoring rows from the final
// hidden states straight into its bf16 operand (no host round trip). One block per row.
extern "C" __global__ void gather_rows_bf16(const float* x, const unsigned int* rows, int n, int dim, bf16_t* out) {
    int i = blockIdx.x;
    if (i >= n) return;
    const float* src = x + (size_t)rows[i] * dim;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) out[(size_t)i * dim + d] = f32_to_bf16(src[d]);
}

// dx[rows[i], :] += g[i, :]: scatters the LM head's hidden gradient back to its rows.
// One block per row; rows are distinct (the host checks), so no two blocks write the
// same element.
extern "C" __global__ void scatter_rows_add(const float* g, const unsigned int* rows, int n, int dim, float* dx) {
    int i = blockIdx.x;
    if (i >= n) return;
    float* dst = dx + (size_t)rows[i] * dim;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) dst[d] += g[(size_t)i * dim + d];
}

extern "C" __global__ void swiglu_backward(const float* dact, const float* gate, const float* up, float* dgate,
                                           float* dup, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) {
        float g = gate[i], u = up[i], d = dact[i];
        float s = sigmoidf_(g);
        dgate[i] = d * u * s * (1.f + g * (1.f - s));
        dup[i] = d * g * s;
    }
}

extern "C" __global__ void add_in_place(float* x, const float* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) x[i] += y[i];
}
