// Log-probabilities of target tokens from logits, one row per block, with an online
// softmax (running max, sum of exponentials, and the sum needed for the entropy) in one
// read of the row, and an optional second read that writes the logits gradient in place
// (llm.c's fused classifier) when the per-token upstream gradient is known in advance.
//
// CPU twins: trainer::rl::logprobs_from_logits / logprobs_from_logits_backward.
// Compiled by NVRTC (trainer/src/gpu/compile.rs); no CUDA headers are included, so bf16 is
// handled as raw 16-bit words with explicit round-to-nearest-even (matching half::bf16).

typedef unsigned short bf16_t;

__device__ __forceinline__ float bf16_to_f32(bf16_t b) {
    return __uint_as_float(((unsigned int)b) << 16);
}

__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
    return (bf16_t)(u >> 16);
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16_t x) { return bf16_to_f32(x); }
__device__ __forceinline__ void store_as(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_as(bf16_t* p, float v) { *p = f32_to_bf16(v); }

// 16-byte vector access: 4 floats or 8 bf16 per load/store.
template <typename T> struct Vec16;
template <> struct Vec16<float> {
    static const int N = 4;
    __device__ __forceinline__ static void load(const float* p, float* out) {
        float4 v = *reinterpret_cast<const float4*>(p);
        out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
    }
    __device__ __forceinline__ static void store(float* p, const float* in) {
        *reinterpret_cast<float4*>(p) = make_float4(in[0], in[1], in[2], in[3]);
    }
};
template <> struct Vec16<bf16_t> {
    static const int N = 8;
    __device__ __forceinline__ static void load(const bf16_t* p, float* out) {
        uint4 v = *reinterpret_cast<const uint4*>(p);
        unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            out[2 * k] = __uint_as_float(w[k] << 16);
            out[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        }
    }
    __device__ __forceinline__ static void store(bf16_t* p, const float* in) {
        unsigned int w[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            w[k] = (unsigned int)f32_to_bf16(in[2 * k]) | ((unsigned int)f32_to_bf16(in[2 * k + 1]) << 16);
        }
        *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
    }
};

// Stores of N gradient values of type T (N = the input's vector width): 16 bytes for
// f32x4 and bf16x8, 8 bytes for bf16x4 (the LM head's f32-in, bf16-out row pass).
template <typename T, int N> struct StoreN;
template <> struct StoreN<float, 4> {
    __device__ __forceinline__ static void store(float* p, const float* in) { Vec16<float>::store(p, in); }
};
template <> struct StoreN<bf16_t, 8> {
    __device__ __forceinline__ static void store(bf16_t* p, const float* in) { Vec16<bf16_t>::store(p, in); }
};
template <> struct StoreN<bf16_t, 4> {
    __device__ __forceinline__ static void store(bf16_t* p, const float* in) {
        unsigned int w0 = (unsigned int)f32_to_bf16(in[0]) | ((unsigned int)f32_to_bf16(in[1]) << 16);
        unsigned int w1 = (unsigned int)f32_to_bf16(in[2]) | ((unsigned int)f32_to_bf16(in[3]) << 16);
        *reinterpret_cast<uint2*>(p) = make_uint2(w0, w1);
    }
};

// Online softmax state over scaled logits x: m = max x, s = sum e^(x-m),
// u = sum e^(x-m) (x-m). Then log Z = m + log s and entropy H = log s - u / s.
// s == 0 marks the empty state.
struct Stats {
    float m, s, u;
};

__device__ __forceinline__ Stats stats_empty() {
    Stats a;
    a.m = 0.f; a.s = 0.f; a.u = 0.f;
    return a;
}

__device__ __forceinline__ void stats_push(Stats& a, float x) {
    if (a.s == 0.f) {
        a.m = x; a.s = 1.f; a.u = 0.f;
    } else if (x > a.m) {
        float c = __expf(a.m - x);
        a.u = c * (a.u + (a.m - x) * a.s);
        a.s = a.s * c + 1.f;
        a.m = x;
    } else {
        float d = x - a.m;
        float e = __expf(d);
        a.s += e;
        a.u += e * d;
    }
}

__device__ __forceinline__ Stats stats_combine(Stats a, Stats b) {
    if (a.s == 0.f) return b;
    if (b.s == 0.f) return a;
    float M = fmaxf(a.m, b.m);
    float ca = __expf(a.m - M), cb = __expf(b.m - M);
    Stats r;
    r.m = M;
    r.s = a.s * ca + b.s * cb;
    r.u = ca * (a.u + (a.m - M) * a.s) + cb * (b.u + (b.m - M) * b.s);
    return r;
}

// Block-wide combine; every thread gets the result. blockDim.x must be a multiple of 32
// and at most 1024 (checked by the launch code).
__device__ Stats block_stats(Stats a) {
    __shared__ float sm[32], ss[32], su[32];
    __shared__ Stats total;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        Stats b;
        b.m = __shfl_xor_sync(0xffffffffu, a.m, off);
        b.s = __shfl_xor_sync(0xffffffffu, a.s, off);
        b.u = __shfl_xor_sync(0xffffffffu, a.u, off);
        a = stats_combine(a, b);
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) { sm[warp] = a.m; ss[warp] = a.s; su[warp] = a.u; }
    __syncthreads();
    if (warp == 0) {
        int n_warps = blockDim.x / 32;
        Stats b = stats_empty();
        if (lane < n_warps) { b.m = sm[lane]; b.s = ss[lane]; b.u = su[lane]; }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            Stats c;
            c.m = __shfl_xor_sync(0xffffffffu, b.m, off);
            c.s = __shfl_xor_sync(0xffffffffu, b.s, off);
            c.u = __shfl_xor_sync(0xffffffffu, b.u, off);
            b = stats_combine(b, c);
        }
        if (lane == 0) total = b;
    }
    __syncthreads();
    return total;
}

// One block per row. logits: [n_rows, vocab]; targets: [n_rows]; outputs logprob,
// entropy: [n_rows]. dlogp / dentropy (nullable): per-row upstream gradients of the loss
// wrt logprob and entropy. dlogits (nullable; may alias logits, as each element is read
// and then written by the same thread, except the target logit, which thread 0 reads
// before the reduction's barriers): receives dLoss/dlogits (through the temperature).
// vec_ok: the caller checked vocab % Vec16<TIn>::N == 0 and 16-byte aligned rows for
// both logits and dlogits.
template <typename TIn, typename TG>
__device__ void logprobs_row(const TIn* logits, const unsigned int* targets, int n_rows, int vocab, float inv_temp,
                             int vec_ok, float* logprob, float* entropy, const float* dlogp,
                             const float* dentropy, TG* dlogits) {
    int row = blockIdx.x;
    if (row >= n_rows) return;
    const TIn* x = logits + (size_t)row * vocab;
    const int N = Vec16<TIn>::N;

    Stats st = stats_empty();
    if (vec_ok) {
        for (int i = threadIdx.x * N; i < vocab; i += blockDim.x * N) {
            float v[Vec16<TIn>::N];
            Vec16<TIn>::load(x + i, v);
#pragma unroll
            for (int k = 0; k < N; k++) stats_push(st, v[k] * inv_temp);
        }
    } else {
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) stats_push(st, to_f32(x[i]) * inv_temp);
    }
    unsigned int t = targets[row];
    bool t_ok = t < (unsigned int)vocab;
    // The target logit is read before block_stats' barriers: with dlogits aliasing logits
    // (the fused in-place pass), the thread owning element t may overwrite it with its
    // gradient as soon as it leaves the reduction, before thread 0 reads it (a race the
    // emulated device's parity test caught: logprob computed from a gradient value).
    float x_t = (threadIdx.x == 0 && t_ok) ? to_f32(x[t]) : 0.f;
    st = block_stats(st);
    float log_s = __logf(st.s);
    float lse = st.m + log_s;
    float H = log_s - st.u / st.s;

    if (threadIdx.x == 0) {
        logprob[row] = t_ok ? x_t * inv_temp - lse : __int_as_float(0x7fc00000);
        entropy[row] = H;
    }
    if (dlogits == 0) return;

    float g_lp = dlogp ? dlogp[row] : 0.f;
    float g_h = dentropy ? dentropy[row] : 0.f;
    TG* dx = dlogits + (size_t)row * vocab;
    // d logprob_t / d x_j = [j == t] - p_j ; d H / d x_j = -p_j (log p_j + H).
    // Both are then scaled by inv_temp for the gradient wrt the raw logits.
    if (vec_ok) {
        for (int i = threadIdx.x * N; i < vocab; i += blockDim.x * N) {
            float v[Vec16<TIn>::N], g[Vec16<TIn>::N];
            Vec16<TIn>::load(x + i, v);
#pragma unroll
            for (int k = 0; k < N; k++) {
                float lp = v[k] * inv_temp - lse;
                float p = __expf(lp);
                float d = g_lp * (((unsigned int)(i + k) == t ? 1.f : 0.f) - p) - g_h * p * (lp + H);
                g[k] = d * inv_temp;
            }
            StoreN<TG, Vec16<TIn>::N>::store(dx + i, g);
        }
    } else {
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            float lp = to_f32(x[i]) * inv_temp - lse;
            float p = __expf(lp);
            float d = g_lp * (((unsigned int)i == t ? 1.f : 0.f) - p) - g_h * p * (lp + H);
            store_as(dx + i, d * inv_temp);
        }
    }
}

extern "C" __global__ void logprobs_from_logits_f32(const float* logits, const unsigned int* targets, int n_rows, int vocab,
                                                    float inv_temp, int vec_ok, float* logprob, float* entropy,
                                                    const float* dlogp, const float* dentropy, float* dlogits) {
    logprobs_row<float, float>(logits, targets, n_rows, vocab, inv_temp, vec_ok, logprob, entropy, dlogp, dentropy,
                               dlogits);
}

extern "C" __global__ void logprobs_from_logits_bf16(const bf16_t* logits, const unsigned int* targets, int n_rows, int vocab,
                                                     float inv_temp, int vec_ok, float* logprob, float* entropy,
                                                     const float* dlogp, const float* dentropy, bf16_t* dlogits) {
    logprobs_row<bf16_t, bf16_t>(logits, targets, n_rows, vocab, inv_temp, vec_ok, logprob, entropy, dlogp, dentropy,
                                 dlogits);
}

// The fused LM head's row pass: f32 logits from the GEMM in, bf16 logits gradient out (the
// operand of the two backward GEMMs), so the f32 logits keep full precision for the
// log-probabilities while the backward GEMMs run on bf16 tensor cores.
// vec_ok here means vocab % 4 == 0: f32 rows 16-byte aligned, bf16 gradient rows 8-byte aligned.
extern "C" __global__ void lm_head_rows(const float* logits, const unsigned int* targets, int n_rows, int vocab,
                                        float inv_temp, int vec_ok, float* logprob, float* entropy,
                                        const float* dlogp, const float* dentropy, bf16_t* dlogits) {
    logprobs_row<float, bf16_t>(logits, targets, n_rows, vocab, inv_temp, vec_ok, logprob, entropy, dlogp, dentropy,
                                dlogits);
}
