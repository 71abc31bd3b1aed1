// RL maths on per-token and per-reward arrays: group advantages over ragged groups, the
// PPO/DAPO clipped token-level policy loss with optional k3 KL and its gradient wrt the
// current log-probs, and a deterministic one-block sum used for the loss statistics.
//
// CPU twins: trainer::rl::advantages, trainer::rl::weighted_policy_loss (policy_loss is
// that with trainer::rl::aggregation_weights, computed on the host from masks alone).

// One thread per group: groups are small (G rollouts per prompt) and few, so a serial loop
// in f64 (as the CPU twin) is both exact and cheap. offsets: [n_groups + 1].
// kind: 0 = GRPO (sample std, divisor n - 1), 1 = Dr. GRPO, 2 = RLOO.
extern "C" __global__ void advantages(const float* rewards, const unsigned long long* offsets, int n_groups, int kind,
                                      float eps, float* out) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n_groups) return;
    unsigned long long lo = offsets[g], hi = offsets[g + 1];
    unsigned long long n = hi - lo;
    if (n < 2) {
        for (unsigned long long i = lo; i < hi; i++) out[i] = 0.f;
        return;
    }
    double nf = (double)n;
    double sum = 0.0;
    for (unsigned long long i = lo; i < hi; i++) sum += (double)rewards[i];
    double mean = sum / nf;
    if (kind == 0) {
        double var = 0.0;
        for (unsigned long long i = lo; i < hi; i++) {
            double d = (double)rewards[i] - mean;
            var += d * d;
        }
        var /= (nf - 1.0);
        if (var == 0.0) {
            for (unsigned long long i = lo; i < hi; i++) out[i] = 0.f;
            return;
        }
        double denom = sqrt(var) + (double)eps;
        for (unsigned long long i = lo; i < hi; i++) out[i] = (float)(((double)rewards[i] - mean) / denom);
    } else if (kind == 1) {
        for (unsigned long long i = lo; i < hi; i++) out[i] = (float)((double)rewards[i] - mean);
    } else {
        for (unsigned long long i = lo; i < hi; i++) {
            double others = (sum - (double)rewards[i]) / (nf - 1.0);
            out[i] = (float)((double)rewards[i] - others);
        }
    }
}

// Number of per-token statistic rows written by policy_loss into `stats` ([6, n]).
#define PL_LOSS 0
#define PL_PG 1
#define PL_K3 2
#define PL_RATIO 3
#define PL_MASKED 4
#define PL_CLIPPED 5

// One thread per token. ref_logp is nullable (no KL). weights: aggregation weights w_t.
// Writes dlogp[t] and the six per-token statistics (0 where mask <= 0); the host sums
// each row with sum_f32.
extern "C" __global__ void policy_loss(const float* logp, const float* old_logp, const float* ref_logp,
                                       const float* adv, const float* mask, const float* weights, int n,
                                       float clip_low, float clip_high, float kl_coef, float* dlogp, float* stats) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    float loss = 0.f, pg = 0.f, k3 = 0.f, ratio = 0.f, masked = 0.f, clipped_flag = 0.f, grad = 0.f;
    if (mask[t] > 0.f) {
        masked = 1.f;
        float w = weights[t], a = adv[t];
        ratio = __expf(logp[t] - old_logp[t]);
        float lo = 1.f - clip_low, hi = 1.f + clip_high;
        float unclipped = ratio * a;
        float clipped = fminf(fmaxf(ratio, lo), hi) * a;
        float pg_t, dpg;
        if (unclipped <= clipped) {
            pg_t = -unclipped;
            dpg = -unclipped;  // d(-rho A)/dlogp = -rho A
        } else {
            pg_t = -clipped;
            dpg = 0.f;
            clipped_flag = 1.f;
        }
        float dk3 = 0.f;
        if (ref_logp) {
            float d = ref_logp[t] - logp[t];
            float e = __expf(d);
            k3 = e - d - 1.f;
            dk3 = 1.f - e;
        }
        pg = w * pg_t;
        loss = w * (pg_t + kl_coef * k3);
        grad = w * (dpg + kl_coef * dk3);
    }
    dlogp[t] = grad;
    stats[(size_t)PL_LOSS * n + t] = loss;
    stats[(size_t)PL_PG * n + t] = pg;
    stats[(size_t)PL_K3 * n + t] = k3;
    stats[(size_t)PL_RATIO * n + t] = ratio;
    stats[(size_t)PL_MASKED * n + t] = masked;
    stats[(size_t)PL_CLIPPED * n + t] = clipped_flag;
}

// Sums each row of x ([n_rows, n]) into out[row]; one block per row, fixed order, so the
// result is the same on every run. blockDim.x: a power of two <= 1024 (launch code).
// Accumulates in f64: these are loss statistics over up to millions of tokens.
extern "C" __global__ void sum_f32(const float* x, int n, float* out) {
    __shared__ double partial[1024];
    const float* row = x + (size_t)blockIdx.x * n;
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += (double)row[i];
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = (float)partial[0];
}
