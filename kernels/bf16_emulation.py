"""Emulates the GPU Bf16 precision mode of the tiny test model on the CPU with numpy.

Why: the Bf16 parity tests (trainer/tests/it/gpu/bf16_mode.rs) were written without a
GPU; this script checks their a-priori tolerances against the same roundings done on
the CPU: bf16 (round to nearest even) weight copies and GEMM inputs (xn, attn, hn, act),
f32 everything else, bf16 LM head in both the emulated mode and nothing else, against
an f32 reference with an f32 LM head (the CPU twin). Forward only (logits, log-probs).
It is not a GPU measurement: GEMM summation order and fast-math differ on the device.

Run: python3 kernels/bf16_emulation.py  (numpy only; ~10 s)
"""
import numpy as np

V, D, L, H, KV, F, T = 64, 16, 2, 4, 2, 24, 24  # Config::tiny(), 24 tokens
HD = D // H


def bf16(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def identity(x):
    return x


def model(seed):
    r = np.random.default_rng(seed)

    def u(*shape):
        return r.uniform(-0.3, 0.3, shape).astype(np.float32)

    layers = [
        dict(an=1 + u(D), wq=u(H * HD, D), wk=u(KV * HD, D), wv=u(KV * HD, D),
             wo=u(D, H * HD), fn=1 + u(D), wg=u(F, D), wu=u(F, D), wd=u(D, F))
        for _ in range(L)
    ]
    return u(V, D), layers, 1 + u(D), r.integers(0, V, T)


def rms_norm(x, g, q):
    rstd = 1 / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-5)
    return q((x * rstd.astype(np.float32)) * g)


def rope(x, heads):
    x = x.reshape(T, heads, HD).copy()
    i = np.arange(HD // 2)
    a = np.arange(T)[:, None] * 10000.0 ** (-2 * i / HD)
    c, s = np.cos(a)[:, None, :], np.sin(a)[:, None, :]
    u, w = x[..., 0::2].copy(), x[..., 1::2].copy()
    x[..., 0::2], x[..., 1::2] = u * c - w * s, u * s + w * c
    return x


def forward(emb, layers, final_norm, toks, q, bf16_head):
    """Logits; `q` rounds GEMM operands (identity = f32)."""
    x = emb[toks]
    for l in layers:
        xn = rms_norm(x, l["an"], q)
        qh = rope(xn @ q(l["wq"]).T, H)
        kh = rope(xn @ q(l["wk"]).T, KV)
        vh = (xn @ q(l["wv"]).T).reshape(T, KV, HD)
        out = np.zeros((T, H, HD), np.float32)
        for h in range(H):
            g = h // (H // KV)
            s = qh[:, h] @ kh[:, g].T / np.sqrt(HD)
            s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
            p = np.exp(s - s.max(1, keepdims=True))
            out[:, h] = (p / p.sum(1, keepdims=True)) @ vh[:, g]
        hh = x + q(out.reshape(T, H * HD)) @ q(l["wo"]).T
        hn = rms_norm(hh, l["fn"], q)
        gate, up = hn @ q(l["wg"]).T, hn @ q(l["wu"]).T
        x = hh + q(gate / (1 + np.exp(-gate)) * up) @ q(l["wd"]).T
    hidden = rms_norm(x, final_norm, identity)
    return bf16(hidden) @ bf16(emb).T if bf16_head else hidden @ emb.T


def log_softmax(z):
    m = z.max(1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(1, keepdims=True))


def errors(seed):
    emb, layers, fnorm, toks = model(seed)
    want = forward(emb, layers, fnorm, toks, identity, bf16_head=False)
    got = forward(emb, layers, fnorm, toks, bf16, bf16_head=True)
    rows = np.arange(T - 1)
    lp_w = log_softmax(want)[rows, toks[1:]]
    lp_g = log_softmax(got)[rows, toks[1:]]
    return (np.linalg.norm(got - want) / np.linalg.norm(want), np.abs(got - want).max(),
            np.abs(lp_g - lp_w).max(), abs(lp_g.mean() - lp_w.mean()))


if __name__ == "__main__":
    res = np.array([errors(s) for s in range(200)])
    names = ["logits rel-L2", "max |d logit|", "max |d logprob|", "|d mean logprob|"]
    for name, col in zip(names, res.T):
        print(f"{name:18s} median {np.median(col):.2e}  p99 {np.quantile(col, .99):.2e}  "
              f"max {col.max():.2e}")
