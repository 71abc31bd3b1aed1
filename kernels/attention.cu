// Causal self-attention with grouped-query heads, forward and backward, tiled so the
// [T, T] score matrix never exists: the forward keeps an online softmax per query row
// and saves only the row log-sum-exp; the backward recomputes probabilities from q, k and
// the saved log-sum-exp (FlashAttention's scheme).
//
// CPU twins: trainer::train::attention::{attention, attention_backward}.
// Layout: q, out, dq: [T, nh * hd]; k, v, dk, dv: [T, nkv * hd]; lse, D: [nh, T].
// Query head h reads kv head h / (nh / nkv).
//
// Deliberately simple: one thread per query row (forward, dq) or key row (dk, dv), 32
// threads per block, K/V (or Q/dO) tiles staged in shared memory and shared by the block,
// per-thread accumulators in shared memory with rows padded by one float so the 32
// threads' accesses fall in 32 different banks. f32 throughout. A tensor-core version is
// the next step once this one is verified on the device.

// The dynamic shared area. On the GPU (NVRTC) this is `extern __shared__ T name[]`, the
// same code as before; the CPU emulation (gpu-emu/cuda_emu.h) defines it as a pointer to
// the launch's sharedMemBytes, since an extern array of unknown bound has no C++ meaning.
#ifndef SSR_DYNAMIC_SHARED
#define SSR_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

#define ROWS 32   // threads (rows) per block; launch code uses blockDim.x == ROWS
#define TILE 16   // keys staged per tile (forward, dq)
#define QTILE 8   // queries staged per tile (dk, dv)

// Forward. T query rows at positions q0 .. q0 + T - 1 attend to keys 0 .. q0 + row
// (Tk = q0 + T keys in k and v, e.g. a KV cache during generation; q0 = 0 in training).
extern "C" __global__ void attention_forward(const float* q, const float* k, const float* v, int T, int q0, int nh,
                                             int nkv, int hd, float scale, float* out, float* lse) {
    SSR_DYNAMIC_SHARED(float, smem);
    const int ldo = hd + 1;
    float* o = smem;               // [ROWS][hd + 1]
    float* ks = o + ROWS * ldo;    // [TILE][hd]
    float* vs = ks + TILE * hd;    // [TILE][hd]
    int h = blockIdx.y, g = h / (nh / nkv);
    int row0 = blockIdx.x * ROWS;
    int i = row0 + threadIdx.x;
    float* oi = o + threadIdx.x * ldo;
    const float* qi = q + (size_t)i * nh * hd + (size_t)h * hd;
    for (int d = 0; d < hd; d++) oi[d] = 0.f;
    float m = -__int_as_float(0x7f800000), l = 0.f;  // -inf (no math headers under NVRTC)
    int last = min(row0 + ROWS, T) - 1 + q0;  // last key any row of this block sees
    for (int kt = 0; kt <= last; kt += TILE) {
        __syncthreads();
        for (int e = threadIdx.x; e < TILE * hd; e += blockDim.x) {
            int j = kt + e / hd, d = e % hd;
            size_t src = (size_t)j * nkv * hd + (size_t)g * hd + d;
            ks[e] = j <= last ? k[src] : 0.f;
            vs[e] = j <= last ? v[src] : 0.f;
        }
        __syncthreads();
        if (i < T) {
            int jmax = min(kt + TILE - 1, i + q0);
            for (int j = kt; j <= jmax; j++) {
                const float* kj = ks + (j - kt) * hd;
                const float* vj = vs + (j - kt) * hd;
                float s = 0.f;
                for (int d = 0; d < hd; d++) s += qi[d] * kj[d];
                s *= scale;
                if (s > m) {
                    float c = __expf(m - s);  // 0 on the first key (m = -inf)
                    l *= c;
                    for (int d = 0; d < hd; d++) oi[d] *= c;
                    m = s;
                }
                float p = __expf(s - m);
                l += p;
                for (int d = 0; d < hd; d++) oi[d] += p * vj[d];
            }
        }
    }
    if (i < T) {
        float inv = 1.f / l;
        float* dst = out + (size_t)i * nh * hd + (size_t)h * hd;
        for (int d = 0; d < hd; d++) dst[d] = oi[d] * inv;
        lse[(size_t)h * T + i] = m + __logf(l);
    }
}

// D[h, i] = dO[i, h] · O[i, h] (= rowsum(P ∘ dP)); one thread per (row, head).
extern "C" __global__ void attention_backward_preprocess(const float* dout, const float* out, int T, int nh, int hd,
                                                         float* D) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * nh) return;
    int i = idx / nh, h = idx % nh;
    const float* a = dout + (size_t)i * nh * hd + (size_t)h * hd;
    const float* b = out + (size_t)i * nh * hd + (size_t)h * hd;
    float s = 0.f;
    for (int d = 0; d < hd; d++) s += a[d] * b[d];
    D[(size_t)h * T + i] = s;
}

// dq for one query row per thread: dq_i = Σ_{j ≤ i} ds_ij k_j, ds_ij = p_ij (dO_i·v_j − D_i) scale.
extern "C" __global__ void attention_backward_dq(const float* q, const float* k, const float* v, const float* dout,
                                                 const float* lse, const float* D, int T, int nh, int nkv, int hd,
                                                 float scale, float* dq) {
    SSR_DYNAMIC_SHARED(float, smem);
    const int ldo = hd + 1;
    float* acc = smem;              // [ROWS][hd + 1]
    float* ks = acc + ROWS * ldo;   // [TILE][hd]
    float* vs = ks + TILE * hd;     // [TILE][hd]
    int h = blockIdx.y, g = h / (nh / nkv);
    int row0 = blockIdx.x * ROWS;
    int i = row0 + threadIdx.x;
    float* ai = acc + threadIdx.x * ldo;
    for (int d = 0; d < hd; d++) ai[d] = 0.f;
    const float* qi = q + (size_t)i * nh * hd + (size_t)h * hd;
    const float* doi = dout + (size_t)i * nh * hd + (size_t)h * hd;
    float lse_i = i < T ? lse[(size_t)h * T + i] : 0.f;
    float d_i = i < T ? D[(size_t)h * T + i] : 0.f;
    int last = min(row0 + ROWS, T) - 1;
    for (int kt = 0; kt <= last; kt += TILE) {
        __syncthreads();
        for (int e = threadIdx.x; e < TILE * hd; e += blockDim.x) {
            int j = kt + e / hd, d = e % hd;
            size_t src = (size_t)j * nkv * hd + (size_t)g * hd + d;
            ks[e] = j < T ? k[src] : 0.f;
            vs[e] = j < T ? v[src] : 0.f;
        }
        __syncthreads();
        if (i < T) {
            int jmax = min(kt + TILE - 1, i);
            for (int j = kt; j <= jmax; j++) {
                const float* kj = ks + (j - kt) * hd;
                const float* vj = vs + (j - kt) * hd;
                float s = 0.f, dp = 0.f;
                for (int d = 0; d < hd; d++) {
                    s += qi[d] * kj[d];
                    dp += doi[d] * vj[d];
                }
                float p = __expf(s * scale - lse_i);
                float ds = p * (dp - d_i) * scale;
                for (int d = 0; d < hd; d++) ai[d] += ds * kj[d];
            }
        }
    }
    if (i < T) {
        float* dst = dq + (size_t)i * nh * hd + (size_t)h * hd;
        for (int d = 0; d < hd; d++) dst[d] = ai[d];
    }
}

// dk, dv for one key row per thread of kv head g, summed over the group's query heads
// and the query rows i ≥ j: dv_j = Σ p_ij dO_i, dk_j = Σ ds_ij q_i.
extern "C" __global__ void attention_backward(const float* q, const float* k, const float* v, const float* dout,
                                              const float* lse, const float* D, int T, int nh, int nkv, int hd,
                                              float scale, float* dk, float* dv) {
    SSR_DYNAMIC_SHARED(float, smem);
    const int ldo = hd + 1;
    float* dka = smem;                 // [ROWS][hd + 1]
    float* dva = dka + ROWS * ldo;     // [ROWS][hd + 1]
    float* qs = dva + ROWS * ldo;      // [QTILE][hd]
    float* dos = qs + QTILE * hd;      // [QTILE][hd]
    float* ls = dos + QTILE * hd;      // [QTILE]
    float* ds_ = ls + QTILE;           // [QTILE]
    int g = blockIdx.y, group = nh / nkv;
    int row0 = blockIdx.x * ROWS;
    int j = row0 + threadIdx.x;
    float* dkj = dka + threadIdx.x * ldo;
    float* dvj = dva + threadIdx.x * ldo;
    for (int d = 0; d < hd; d++) { dkj[d] = 0.f; dvj[d] = 0.f; }
    const float* kj = k + (size_t)j * nkv * hd + (size_t)g * hd;
    const float* vj = v + (size_t)j * nkv * hd + (size_t)g * hd;
    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int it = row0; it < T; it += QTILE) {
            __syncthreads();
            for (int e = threadIdx.x; e < QTILE * hd; e += blockDim.x) {
                int i = it + e / hd, d = e % hd;
                size_t src = (size_t)i * nh * hd + (size_t)h * hd + d;
                qs[e] = i < T ? q[src] : 0.f;
                dos[e] = i < T ? dout[src] : 0.f;
            }
            for (int e = threadIdx.x; e < QTILE; e += blockDim.x) {
                int i = it + e;
                ls[e] = i < T ? lse[(size_t)h * T + i] : 0.f;
                ds_[e] = i < T ? D[(size_t)h * T + i] : 0.f;
            }
            __syncthreads();
            if (j < T) {
                int imax = min(it + QTILE, T);
                for (int i = max(it, j); i < imax; i++) {
                    const float* qi = qs + (i - it) * hd;
                    const float* doi = dos + (i - it) * hd;
                    float s = 0.f, dp = 0.f;
                    for (int d = 0; d < hd; d++) {
                        s += qi[d] * kj[d];
                        dp += doi[d] * vj[d];
                    }
                    float p = __expf(s * scale - ls[i - it]);
                    float dsv = p * (dp - ds_[i - it]) * scale;
                    for (int d = 0; d < hd; d++) {
                        dvj[d] += p * doi[d];
                        dkj[d] += dsv * qi[d];
                    }
                }
            }
        }
    }
    if (j < T) {
        float* dkd = dk + (size_t)j * nkv * hd + (size_t)g * hd;
        float* dvd = dv + (size_t)j * nkv * hd + (size_t)g * hd;
        for (int d = 0; d < hd; d++) { dkd[d] = dkj[d]; dvd[d] = dvj[d]; }
    }
}
