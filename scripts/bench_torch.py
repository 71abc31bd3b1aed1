#!/usr/bin/env python3
"""PyTorch eager baselines for `ssr bench kernels` (run side by side on the same GPU).

Prints one JSON object on stdout: {"device": str, "torch": str, "cases": [{"op", "shape",
"tokens", "vocab", "dim", "ms", "peak_bytes"}]}. Ops mirror the Rust cases:
  logprobs_fwd      log_softmax(logits.float()) + gather            (bf16 logits in)
  logprobs_fwd_bwd  the same, then backward of sum(dlogp * logprob) to the bf16 logits
  lm_head_fwd_bwd   hidden @ W^T (bf16) + log_softmax + gather + backward to hidden and W
and `train` (for `ssr bench train`) prints {"step_ms", "train_tokens_per_s", "peak_bytes",
"prefill_tokens_per_s", "decode_tokens_per_s", "torch"}: a transformers LlamaForCausalLM with
SmolLM2-135M's config and random weights (no download), f32 master weights with bf16
autocast, next-token cross-entropy + AdamW, eager (no torch.compile); generation greedy with
the KV cache in f32, as the Rust decoder.
Timing: CUDA events, 3 warm-up runs, median of --reps; peak memory from
torch.cuda.max_memory_allocated over the timed region.
"""
import argparse
import json
import sys

SHAPES = {"smollm2": (49152, 576), "7b": (152064, 3584)}


def timed(torch, fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    peak = torch.cuda.max_memory_allocated()
    return times[len(times) // 2], peak, base


def kernels(args):
    import torch

    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    cases = []
    for name in args.shapes.split(","):
        vocab, dim = SHAPES[name]
        for n in [int(t) for t in args.tokens.split(",")]:
            logits = (torch.rand(n, vocab, device=dev, generator=g) * 16 - 8).to(torch.bfloat16)
            targets = torch.randint(0, vocab, (n, 1), device=dev, generator=g)
            dlogp = torch.rand(n, 1, device=dev, generator=g) * 2 - 1

            def fwd():
                lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets)
                return lp

            ms, peak, _ = timed(torch, fwd, args.reps)
            cases.append(dict(op="logprobs_fwd", shape=name, tokens=n, vocab=vocab, dim=dim, ms=ms, peak_bytes=peak))

            leaf = logits.clone().requires_grad_(True)

            def fwd_bwd():
                leaf.grad = None
                lp = torch.log_softmax(leaf.float(), dim=-1).gather(-1, targets)
                (lp * dlogp).sum().backward()

            ms, peak, _ = timed(torch, fwd_bwd, args.reps)
            cases.append(dict(op="logprobs_fwd_bwd", shape=name, tokens=n, vocab=vocab, dim=dim, ms=ms, peak_bytes=peak))
            del logits, leaf
            torch.cuda.empty_cache()

            hidden = (torch.rand(n, dim, device=dev, generator=g) * 2 - 1).to(torch.bfloat16).requires_grad_(True)
            weight = ((torch.rand(vocab, dim, device=dev, generator=g) * 2 - 1) * 0.05).to(torch.bfloat16).requires_grad_(True)

            def lm_head():
                hidden.grad = None
                weight.grad = None
                lg = hidden @ weight.t()
                lp = torch.log_softmax(lg.float(), dim=-1).gather(-1, targets)
                (lp * dlogp).sum().backward()

            try:
                ms, peak, _ = timed(torch, lm_head, args.reps)
                cases.append(dict(op="lm_head_fwd_bwd", shape=name, tokens=n, vocab=vocab, dim=dim, ms=ms, peak_bytes=peak))
            except torch.cuda.OutOfMemoryError as e:  # the unfused baseline may not fit
                print(f"lm_head {name} {n}: out of memory: {e}", file=sys.stderr)
            del hidden, weight
            torch.cuda.empty_cache()
    print(json.dumps(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, cases=cases)))


def train(args):
    import time

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dev = torch.device("cuda")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, rms_norm_eps=1e-5,
                      max_position_embeddings=8192, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-6)
    n_seq = -(-args.tokens_per_step // args.seq_len)
    ids = torch.randint(0, cfg.vocab_size, (n_seq, args.seq_len), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(max(args.steps, 1)):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    step_ms = times[len(times) // 2]
    peak = torch.cuda.max_memory_allocated()
    del opt
    model.eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, args.gen_prompt), device=dev)
    with torch.no_grad():
        model.generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(input_ids=prompt)
        torch.cuda.synchronize()
        prefill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=args.gen_tokens, min_new_tokens=args.gen_tokens, do_sample=False)
        torch.cuda.synchronize()
        gen_s = time.perf_counter() - t0
    n_new = out.shape[1] - prompt.shape[1]
    print(json.dumps(dict(
        step_ms=step_ms,
        train_tokens_per_s=n_seq * args.seq_len / (step_ms * 1e-3),
        peak_bytes=peak,
        prefill_tokens_per_s=args.gen_prompt / prefill_s,
        # generate() includes its prefill; subtract the measured one to compare decode.
        decode_tokens_per_s=max(n_new - 1, 1) / max(gen_s - prefill_s, 1e-9),
        torch=torch.__version__,
    )))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kernels", help="log-prob and LM-head baselines")
    k.add_argument("--shapes", default="smollm2,7b")
    k.add_argument("--tokens", default="4096,16384")
    k.add_argument("--reps", type=int, default=20)
    t = sub.add_parser("train", help="training step and generation baseline (transformers)")
    t.add_argument("--tokens-per-step", type=int, default=8192)
    t.add_argument("--seq-len", type=int, default=2048)
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--gen-prompt", type=int, default=128)
    t.add_argument("--gen-tokens", type=int, default=256)
    args = p.parse_args()
    if args.cmd == "kernels":
        kernels(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
