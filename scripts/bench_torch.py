#!/usr/bin/env python3
"""PyTorch eager baselines for `ssr bench kernels` (run side by side on the same GPU).

Prints one JSON object on stdout: {"device": str, "torch": str, "cases": [{"op", "shape",
"tokens", "vocab", "dim", "ms", "peak_bytes"}]}. Ops mirror the Rust cases:
  logprobs_fwd      log_softmax(logits.float()) + gather            (bf16 logits in)
  logprobs_fwd_bwd  the same, then backward of sum(dlogp * logprob) to the bf16 logits
  lm_head_fwd_bwd   hidden @ W^T (bf16) + log_softmax + gather + backward to hidden and W
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kernels", help="log-prob and LM-head baselines")
    k.add_argument("--shapes", default="smollm2,7b")
    k.add_argument("--tokens", default="4096,16384")
    k.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    if args.cmd == "kernels":
        kernels(args)


if __name__ == "__main__":
    main()
