"""Microbenchmark of the fused Triton quantizer ("triton-v1") against the same work in plain torch.

For each batch size x vocabulary x logits dtype it times, with triton.testing.do_bench (median, L2
flushed between runs):

- triton freqs+cdf: llmzip.kernels.quantize.frequencies_and_cumulative (one launch, both tables);
- triton intervals: llmzip.kernels.quantize.intervals (the encoder's path: no table is written);
- torch freqs+cdf: llmzip.quantize.frequencies_torch followed by torch.cumsum;

and, for the decoder's coder work per step, the device range decoder (llmzip.kernels.range_decode,
16 windows per stream) against constriction decoding on the host after copying the table over; and
the portable engine's kernels: the int-v1 quantizer, and the integer linear layer
(llmzip.kernels.integer_linear) against its torch path and a bf16 matmul of the same shape.

Throughput is reported as GB/s of logits read (rows * V * itemsize / time), next to the bandwidth of
a plain device-to-device copy measured in the same run (bytes read / time), which is the ceiling a
memory-bound kernel that reads its input once can approach. The fused kernel reads each row four
times; for a row that stays in L2 the re-reads are cheap, so it can show more than the copy's read
bandwidth on small batches and less on batches whose rows no longer fit.

Needs a CUDA GPU; prints a markdown table and the environment, and writes JSON with --out:

    python bench/kernel_bench.py --out results/kernel_bench.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

DEFAULT_BATCHES = (1, 16, 64, 256)
DEFAULT_VOCABS = (49152, 262144)
DEFAULT_DTYPES = ("bfloat16", "float32")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the fused Triton quantizer against plain torch on a CUDA GPU (GB/s of logits read).")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON to this path")
    parser.add_argument("--batches", type=int, nargs="+", default=list(DEFAULT_BATCHES), help="rows per call")
    parser.add_argument("--vocabs", type=int, nargs="+", default=list(DEFAULT_VOCABS), help="vocabulary sizes")
    parser.add_argument("--dtypes", nargs="+", default=list(DEFAULT_DTYPES), choices=["bfloat16", "float16", "float32"],
                        help="logits dtypes")
    parser.add_argument("--warmup", type=int, default=25, help="do_bench warmup time, ms")
    parser.add_argument("--rep", type=int, default=100, help="do_bench repetition time, ms")
    parser.add_argument("--copy-mib", type=int, default=1024, help="size of the device-to-device copy, MiB")
    return parser.parse_args(argv)


def environment() -> dict[str, object]:
    import torch
    import triton

    from llmzip.kernels import quantize as kernels

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "sm_count": props.multi_processor_count,
        "compute_capability": f"{props.major}.{props.minor}",
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "quantizer_config": kernels.CONFIG_ID,
    }


def copy_bandwidth(mib: int, warmup: int, rep: int) -> dict[str, float]:
    """A device-to-device copy of `mib` MiB: GB/s of bytes read (the copy also writes as many)."""
    import torch
    from triton.testing import do_bench

    src = torch.empty(mib * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=warmup, rep=rep, return_mode="median")
    return {"bytes": src.numel(), "ms": ms, "read_gbps": src.numel() / ms / 1e6}


def torch_freqs_and_cdf(logits):
    import torch

    from llmzip.quantize import frequencies_torch

    freqs = frequencies_torch(logits)
    return freqs, torch.cumsum(freqs, dim=-1, dtype=torch.int32)


def bench_case(batch: int, vocab: int, dtype_name: str, warmup: int, rep: int) -> dict[str, object]:
    import torch
    from triton.testing import do_bench

    from llmzip.kernels import quantize as kernels
    from llmzip.quantize import TOTAL

    dtype = getattr(torch, dtype_name)
    generator = torch.Generator(device="cuda").manual_seed(batch * 1_000_003 + vocab)
    logits = (torch.randn(batch, vocab, device="cuda", generator=generator) * 3).to(dtype)
    tokens = torch.randint(0, vocab, (batch,), device="cuda", generator=generator)

    # Sanity before timing: valid tables, and the same lookups as the kernel's own table.
    freqs, cdf = kernels.frequencies_and_cumulative(logits)
    assert bool((freqs.sum(dim=-1, dtype=torch.int64) == TOTAL).all()) and int(freqs.min()) >= 1
    assert int(cdf[:, -1].min()) == TOTAL
    low, freq = kernels.intervals(logits, tokens)
    assert torch.equal(freq, freqs.gather(1, tokens[:, None]).squeeze(1).long())

    read = batch * vocab * logits.element_size()
    timings = {
        "triton_freqs_cdf": do_bench(lambda: kernels.frequencies_and_cumulative(logits), warmup=warmup, rep=rep,
                                     return_mode="median"),
        "triton_intervals": do_bench(lambda: kernels.intervals(logits, tokens), warmup=warmup, rep=rep,
                                     return_mode="median"),
        "torch_freqs_cdf": do_bench(lambda: torch_freqs_and_cdf(logits), warmup=warmup, rep=rep,
                                    return_mode="median"),
    }
    return {
        "batch": batch,
        "vocab": vocab,
        "dtype": dtype_name,
        "logits_bytes": read,
        "config": kernels.config_id(vocab),
        "ms": timings,
        "logits_gbps": {name: read / ms / 1e6 for name, ms in timings.items()},
        "speedup_vs_torch": timings["torch_freqs_cdf"] / timings["triton_freqs_cdf"],
    }


def decoder_case(batch: int, vocab: int, stream_windows: int, warmup: int, rep: int) -> dict[str, object]:
    """One decoding step's coder work for `batch` rows: the device range decoder (on the table the
    quantizer leaves on the GPU) against constriction on the host (the table copied over first)."""
    import time

    import numpy as np
    import torch
    from triton.testing import do_bench

    import constriction
    from llmzip.kernels import quantize as kernels
    from llmzip.kernels.range_decode import RangeDecoders

    generator = torch.Generator(device="cuda").manual_seed(batch + vocab)
    logits = (torch.randn(batch, vocab, device="cuda", generator=generator) * 3).to(torch.bfloat16)
    freqs, cdf = kernels.frequencies_and_cumulative(logits)
    streams = [np.random.default_rng(s).integers(0, 2**32, 4096, dtype=np.uint64).astype("<u4").tobytes()
               for s in range(-(-batch // stream_windows))]
    decoder = RangeDecoders(streams, stream_windows, "cuda")  # garbage words: the work per token is the same
    device_ms = do_bench(lambda: decoder.decode(cdf, batch), warmup=warmup, rep=rep, return_mode="median")

    family = constriction.stream.model.Categorical(perfect=False)
    host = constriction.stream.queue.RangeDecoder(np.frombuffer(streams[0], dtype="<u4").copy())
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        rows = (freqs - 1).float().cpu().numpy()  # the copy a host decoder needs every step
        host.decode(family, np.ascontiguousarray(rows))
        times.append(time.perf_counter() - t0)
    host_ms = 1e3 * sorted(times)[len(times) // 2]
    return {"batch": batch, "vocab": vocab, "stream_windows": stream_windows, "device_ms": device_ms,
            "host_ms": host_ms, "device_tokens_per_s": batch / device_ms * 1e3,
            "host_tokens_per_s": batch / host_ms * 1e3}


def integer_quantizer_case(batch: int, vocab: int, warmup: int, rep: int) -> dict[str, object]:
    """The portable quantizer int-v1 (the portable engine's, on int64 logits in bits) as its Triton
    kernel against the torch definition it must equal."""
    import torch
    from triton.testing import do_bench

    from llmzip.kernels import integer_quantize
    from llmzip.portable.llama import FRACTION
    from llmzip.quantize import frequencies_integer

    generator = torch.Generator(device="cuda").manual_seed(batch * 7 + vocab)
    logits = (torch.randn(batch, vocab, device="cuda", generator=generator, dtype=torch.float64) * 4 * (1 << FRACTION)).long()
    assert torch.equal(integer_quantize.frequencies(logits), frequencies_integer(logits.cpu()).cuda())
    read = logits.numel() * logits.element_size()
    kernel_ms = do_bench(lambda: integer_quantize.frequencies(logits), warmup=warmup, rep=rep, return_mode="median")
    return {"batch": batch, "vocab": vocab, "logits_bytes": read, "kernel_ms": kernel_ms,
            "kernel_gbps": read / kernel_ms / 1e6}


# The default model's (SmolLM2-135M) linear layers: inner size, outputs.
LINEAR_SHAPES = {"q,k,v": (576, 960), "gate,up": (576, 3072), "down": (1536, 576), "output": (576, 49152)}


def integer_linear_case(rows: int, layer: str, warmup: int, rep: int) -> dict[str, object]:
    """One of the portable engine's linear layers on 16-bit activations (two int8 halves): the Triton
    kernel (int8 tl.dot and the rescaling fused) against the torch path (torch._int_mm on the
    stacked halves, then element-wise int64 passes), and a bf16 matmul of the same shape (what the
    float engine pays). Rates count 2 multiply-adds per weight and row (the two halves)."""
    import torch
    from triton.testing import do_bench

    from llmzip.portable import llama as portable_llama

    terms, columns = LINEAR_SHAPES[layer]
    generator = torch.Generator().manual_seed(rows + terms + columns)
    linear = portable_llama.Linear.from_float(torch.randn(columns, terms, generator=generator) * 0.05, None,
                                              torch.device("cuda"))
    values = (torch.randn(rows, terms, generator=generator, dtype=torch.float64) * (1 << 20)).long().cuda()
    x = portable_llama.quantize_rows(values, portable_llama.FRACTION, portable_llama.INT16_LEVELS)
    kernel_ms = do_bench(lambda: linear(x), warmup=warmup, rep=rep, return_mode="median")
    expected = linear(x)
    original = portable_llama.linear_by_kernel
    portable_llama.linear_by_kernel = lambda device: False
    try:
        assert torch.equal(linear(x), expected)
        torch_ms = do_bench(lambda: linear(x), warmup=warmup, rep=rep, return_mode="median")
    finally:
        portable_llama.linear_by_kernel = original
    a = torch.randn(rows, terms, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(terms, columns, device="cuda", dtype=torch.bfloat16)
    bf16_ms = do_bench(lambda: a @ w, warmup=warmup, rep=rep, return_mode="median")
    ops = 2 * 2 * rows * terms * columns
    return {"rows": rows, "layer": layer, "terms": terms, "columns": columns, "kernel_ms": kernel_ms,
            "torch_ms": torch_ms, "bf16_matmul_ms": bf16_ms, "kernel_tops": ops / kernel_ms / 1e9,
            "torch_tops": ops / torch_ms / 1e9, "speedup_vs_torch": torch_ms / kernel_ms}


def markdown(results: list[dict[str, object]], copy: dict[str, float], env: dict[str, object]) -> str:
    lines = [
        f"GPU: {env['gpu']} (sm {env['compute_capability']}, {env['sm_count']} SMs); torch {env['torch']} "
        f"(CUDA {env['torch_cuda']}); triton {env['triton']}; quantizer {env['quantizer_config']}",
        f"Device-to-device copy of {copy['bytes'] / 2**20:.0f} MiB: {copy['read_gbps']:.0f} GB/s read "
        f"({2 * copy['read_gbps']:.0f} GB/s read+write)",
        "",
        "| batch | V | dtype | logits MB | triton freqs+cdf ms | GB/s | triton intervals ms | GB/s "
        "| torch freqs+cdf ms | GB/s | speedup |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ms, gbps = r["ms"], r["logits_gbps"]
        lines.append(
            f"| {r['batch']} | {r['vocab']} | {r['dtype']} | {r['logits_bytes'] / 1e6:.1f} "
            f"| {ms['triton_freqs_cdf']:.3f} | {gbps['triton_freqs_cdf']:.0f} "
            f"| {ms['triton_intervals']:.3f} | {gbps['triton_intervals']:.0f} "
            f"| {ms['torch_freqs_cdf']:.3f} | {gbps['torch_freqs_cdf']:.0f} | {r['speedup_vs_torch']:.1f}x |"
        )
    return "\n".join(lines)


def decoder_markdown(results: list[dict[str, object]]) -> str:
    lines = ["", "Coder work per decoding step: the device range decoder vs constriction on the host "
             "(table copied to the host, then decoded)", "",
             "| batch | V | windows per stream | device ms | device tokens/s | host ms | host tokens/s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['batch']} | {r['vocab']} | {r['stream_windows']} | {r['device_ms']:.3f} "
                     f"| {r['device_tokens_per_s']:,.0f} | {r['host_ms']:.1f} | {r['host_tokens_per_s']:,.0f} |")
    return "\n".join(lines)


def portable_markdown(quantizers: list[dict[str, object]], linears: list[dict[str, object]]) -> str:
    lines = ["", "The portable engine's kernels. int-v1 quantizer (int64 logits):", "",
             "| batch | V | logits MB | kernel ms | GB/s |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['vocab']} | {r['logits_bytes'] / 1e6:.1f} | {r['kernel_ms']:.3f} | {r['kernel_gbps']:.0f} |"
              for r in quantizers]
    lines += ["", "Integer linear layers, 16-bit activations (TOPS: int8 multiply-adds x 2 / s):", "",
              "| rows | layer | K x N | kernel ms | TOPS | torch path ms | TOPS | speedup | bf16 matmul ms |",
              "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['rows']} | {r['layer']} | {r['terms']} x {r['columns']} | {r['kernel_ms']:.3f} | {r['kernel_tops']:.1f} "
              f"| {r['torch_ms']:.3f} | {r['torch_tops']:.1f} | {r['speedup_vs_torch']:.1f}x | {r['bf16_matmul_ms']:.3f} |"
              for r in linears]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("kernel_bench.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was measured.",
              file=sys.stderr)
        return 2
    env = environment()
    copy = copy_bandwidth(args.copy_mib, args.warmup, args.rep)
    results = []
    for dtype_name in args.dtypes:
        for vocab in args.vocabs:
            for batch in args.batches:
                results.append(bench_case(batch, vocab, dtype_name, args.warmup, args.rep))
                torch.cuda.empty_cache()
    decoders = [decoder_case(batch, vocab, 16, args.warmup, args.rep)
                 for vocab in args.vocabs for batch in args.batches]
    quantizers = [integer_quantizer_case(batch, 49152, args.warmup, args.rep) for batch in args.batches]
    linears = [integer_linear_case(rows, layer, args.warmup, args.rep)
               for rows in (1, 64, 4096) for layer in LINEAR_SHAPES]
    print(markdown(results, copy, env))
    print(decoder_markdown(decoders))
    print(portable_markdown(quantizers, linears))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"environment": env, "copy": copy, "results": results, "decoder": decoders,
                   "integer_quantizer": quantizers, "integer_linear": linears,
                   "method": "triton.testing.do_bench, median, L2 flushed between runs"}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
