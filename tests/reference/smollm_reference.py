#!/usr/bin/env python3
"""Independent reference for the Rust engine: tokenizer ids and llama logits.

Reads a GGUF file with the `gguf` package (its own parser and dequantizer), builds a
Hugging Face `tokenizers` BPE from the GGUF vocabulary and merges with SmolLM's
pre-tokenizer (Digits(individual_digits) then ByteLevel), and runs the llama forward
in numpy float64 (RMSNorm, interleaved-pair RoPE as GGUF Q/K are stored, grouped-query
causal attention, SwiGLU, tied or separate LM head). Nothing here shares code with the
Rust crate.

Usage: smollm_reference.py --model FILE --input input.json --out DIR
  input.json: {"texts": [str, ...], "prompts": [str, ...]}
  writes DIR/result.json: {"text_ids": [[int]], "prompt_ids": [[int]],
                           "logits_files": [str], "vocab": int}
  and DIR/logits_{i}.f32: little-endian float32 [len(prompt_ids[i]), vocab] row-major.
"""
import argparse
import json
import os

import numpy as np
import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers


def field(reader, key):
    return reader.fields[key].contents()


def build_tokenizer(reader):
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    specials = [tokens[i] for i, t in enumerate(types) if t in (3, 4)]
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tk


def load_weights(reader):
    w = {}
    for t in reader.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        # gguf lists dims innermost first; numpy shape is the reverse: [out, in].
        w[t.name] = np.asarray(a, dtype=np.float64).reshape([int(d) for d in reversed(t.shape)])
    return w


def forward(w, hp, ids):
    n = len(ids)
    dim, nh, nkv = hp["dim"], hp["n_heads"], hp["n_kv"]
    hd = dim // nh
    eps = hp["eps"]

    def rmsnorm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    pos = np.arange(n)[:, None]
    freqs = hp["theta"] ** (-np.arange(0, hd, 2) / hd)  # [hd/2]
    ang = pos * freqs[None, :]
    cos, sin = np.cos(ang), np.sin(ang)  # [n, hd/2]

    def rope(x):  # x [n, heads, hd], pairs (2i, 2i+1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        c, s = cos[:, None, :], sin[:, None, :]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    x = w["token_embd.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(hp["n_layers"]):
        p = f"blk.{l}."
        h = rmsnorm(x, w[p + "attn_norm.weight"])
        q = rope((h @ w[p + "attn_q.weight"].T).reshape(n, nh, hd))
        k = rope((h @ w[p + "attn_k.weight"].T).reshape(n, nkv, hd))
        v = (h @ w[p + "attn_v.weight"].T).reshape(n, nkv, hd)
        group = nh // nkv
        att = np.empty((n, nh, hd))
        for hh in range(nh):
            kh, vh = k[:, hh // group], v[:, hh // group]
            s = q[:, hh] @ kh.T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            att[:, hh] = s @ vh
        x = x + att.reshape(n, dim) @ w[p + "attn_output.weight"].T
        h = rmsnorm(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
    x = rmsnorm(x, w["output_norm.weight"])
    head = w.get("output.weight", w["token_embd.weight"])
    return x @ head.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    inp = json.load(open(args.input))
    reader = gguf.GGUFReader(args.model)
    arch = field(reader, "general.architecture")
    hp = {
        "dim": int(field(reader, f"{arch}.embedding_length")),
        "n_heads": int(field(reader, f"{arch}.attention.head_count")),
        "n_kv": int(field(reader, f"{arch}.attention.head_count_kv")),
        "n_layers": int(field(reader, f"{arch}.block_count")),
        "eps": float(field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        "theta": float(field(reader, f"{arch}.rope.freq_base")),
    }
    tk = build_tokenizer(reader)
    text_ids = [tk.encode(t, add_special_tokens=False).ids for t in inp["texts"]]
    prompt_ids = [tk.encode(t, add_special_tokens=False).ids for t in inp["prompts"]]
    w = load_weights(reader)
    files = []
    for i, ids in enumerate(prompt_ids):
        logits = forward(w, hp, np.array(ids)).astype("<f4")
        name = f"logits_{i}.f32"
        logits.tofile(os.path.join(args.out, name))
        files.append(name)
    json.dump({"text_ids": text_ids, "prompt_ids": prompt_ids, "logits_files": files,
               "vocab": int(w["token_embd.weight"].shape[0])},
              open(os.path.join(args.out, "result.json"), "w"))


if __name__ == "__main__":
    main()
