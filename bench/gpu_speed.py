"""End-to-end speed of llmzip: compress and decompress timed separately, against the physical floor.

    python bench/gpu_speed.py ../shared/corpus/*.txt --out bench/results/gpu_speed.json

The input files are concatenated (and repeated) up to --mib MiB: with inputs longer than a block
(1 MiB), no block holds a repeat, so neither the model's windows nor the match model see one, and
bits per byte stay those of the texts. The default model runs in bf16 on the GPU with the codec's defaults (static engine
with CUDA graphs, triton-v1, the device range decoder, batch chosen from free memory).
With --random-weights FOLDER the model is the architecture in FOLDER's config.json with seeded
random weights and FOLDER's tokenizer (speed does not depend on the weights; bits per byte do, and
are then meaningless): the way to time on a machine the real weights cannot reach.

Reported, from one run: bytes/s and tokens/s each way (median of --repeats), the round trip
verified; the share of time in the model, the quantizer kernels and the coder (a separate pass that
synchronizes the GPU around each phase, so it is slower than the timed runs); and the floor: the
time a step cannot beat, the larger of (weights + the KV cache every window must read) / the copy
bandwidth and the step's FLOPs / the matmul throughput, both measured in the same run.
Also runs on a CPU (the floor is then computed from the same measurements on the CPU).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from llmzip import Codec, load_model
from llmzip.inference import StaticLlamaStepper
from llmzip.measure.bench import environment
from llmzip.measure.flops import flops_per_token


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time llmzip compress and decompress; compare with the floor.")
    p.add_argument("files", nargs="+", type=Path, help="text files, concatenated (and repeated) up to --mib")
    p.add_argument("--mib", type=float, default=4.0, help="MiB of input (default 4)")
    p.add_argument("--model", default=None, help="model spec (default: the embedded SmolLM2-135M)")
    p.add_argument("--random-weights", type=Path, default=None, metavar="FOLDER",
                   help="use FOLDER's config.json and tokenizer with random weights (speed only)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--preset", type=int, default=None, help="compression level (default: the codec's)")
    p.add_argument("--context", type=int, default=None, help="default: the level's")
    p.add_argument("--batch", type=int, default=None, help="default: the codec's (free memory on GPU)")
    p.add_argument("--engine", default="auto")
    p.add_argument("--quantizer", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return p.parse_args(argv)


def read_input(files: list[Path], mib: float) -> bytes:
    text = b"".join(f.read_bytes() for f in files)
    if not text:
        raise SystemExit("gpu_speed: the input files are empty")
    size = int(mib * 2**20)
    return (text * (size // len(text) + 1))[:size]


def random_model_folder(source: Path, target: Path) -> Path:
    """A model folder with `source`'s config and tokenizer and seeded random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source))
    model.save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_bandwidth(device: torch.device, mib: int = 512, repeats: int = 10) -> float:
    """Bytes read per second by a device-to-device copy (the ceiling of a memory-bound step)."""
    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(repeats + 2):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return src.numel() / statistics.median(times[2:])


def measure_matmul(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> float:
    """FLOP/s of a large square matrix product in the model's dtype."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for _ in range(repeats + 2):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times[2:])


def floor(codec: Codec, tokens: int, bandwidth: float, flops_rate: float) -> dict[str, float]:
    """The fastest the step loop could code `tokens`: per step, max(bytes / bandwidth, FLOPs / rate).

    A step of B windows reads every weight once and, per window, the keys and values of every
    position so far (mean (context + 1) / 2 per token). FLOPs are the model's per-token forward
    FLOPs (llmzip.measure.flops) times B.
    """
    m = codec.model
    weight_bytes = sum(p.numel() * p.element_size() for p in m.model.parameters())
    kv_per_token = m.kv_bytes_per_token * (codec.context + 1) / 2
    batch = codec.batch
    step_bytes = weight_bytes + batch * kv_per_token
    step_flops = batch * flops_per_token(m.config, codec.context)
    step_seconds = max(step_bytes / bandwidth, step_flops / flops_rate)
    return {"weight_bytes": weight_bytes, "kv_bytes_per_token": kv_per_token, "step_bytes": step_bytes,
            "step_flops": step_flops, "step_seconds": step_seconds, "tokens_per_second": batch / step_seconds,
            "seconds": tokens / batch * step_seconds, "bound": "memory" if step_bytes / bandwidth >= step_flops /
            flops_rate else "compute"}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    data = read_input(args.files, args.mib)
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.model
        if args.random_weights is not None:
            spec = str(random_model_folder(args.random_weights, Path(tmp) / "random"))
        t0 = time.perf_counter()
        loaded = load_model(spec, device=device, dtype=dtype)
        load_seconds = time.perf_counter() - t0
    codec = Codec(loaded, preset=args.preset, context=args.context, batch=args.batch, engine=args.engine,
                  quantizer=args.quantizer)

    compress_times, decompress_times = [], []
    blob, stats = b"", None
    for _ in range(args.repeats):
        _sync(device)
        t0 = time.perf_counter()
        blob, stats = codec.compress_with_stats(data)
        _sync(device)
        compress_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        restored = codec.decompress(blob)
        _sync(device)
        decompress_times.append(time.perf_counter() - t0)
        if restored != data:
            raise SystemExit("gpu_speed: the round trip did not restore the input")
    assert stats is not None

    # The time shares, from a pass that waits for the GPU around each phase.
    codec.timing_sync = True
    shares = {}
    for direction, run in (("compress", lambda: codec.compress_with_stats(data)[1]),
                           ("decompress", lambda: _decompress_stats(codec, blob))):
        s = run()
        parts = {"model": s.model_seconds, "kernels": s.quantize_seconds, "coder": s.coder_seconds}
        total = s.seconds
        shares[direction] = {**{k: v / total for k, v in parts.items()},
                             "other": 1 - sum(parts.values()) / total, "seconds": total}
    codec.timing_sync = False

    bandwidth = measure_bandwidth(device)
    flops_rate = measure_matmul(device, loaded.dtype)
    bound = floor(codec, stats.tokens, bandwidth, flops_rate)
    c_med, d_med = statistics.median(compress_times), statistics.median(decompress_times)
    result = {
        "environment": environment(str(device), dtype),
        "model": loaded.name + (" (random weights)" if args.random_weights else ""),
        "settings": {"preset": args.preset, "context": codec.context, "carry": codec.layout.carry,
                     "lane_tokens": codec.layout.lane_size, "mixer": codec.mixer,
                     "batch": codec.batch, "stream_windows": codec.stream_windows,
                     "engine": codec.engine, "quantizer": codec.quantizer},
        "input_bytes": len(data), "tokens": stats.tokens, "compressed_bytes": len(blob),
        "bits_per_byte": 8 * len(blob) / len(data), "load_seconds": load_seconds,
        "compress": {"seconds": compress_times, "median_seconds": c_med, "bytes_per_second": len(data) / c_med,
                     "tokens_per_second": stats.tokens / c_med},
        "decompress": {"seconds": decompress_times, "median_seconds": d_med, "bytes_per_second": len(data) / d_med,
                       "tokens_per_second": stats.tokens / d_med},
        "shares": shares,
        "measured": {"copy_read_bytes_per_second": bandwidth, "matmul_flops_per_second": flops_rate},
        "floor": {**bound, "bytes_per_second": len(data) / bound["seconds"],
                  "compress_gap": c_med / bound["seconds"], "decompress_gap": d_med / bound["seconds"]},
        "static_engine": isinstance(next(iter(codec._lockstep.steppers.values()), None), StaticLlamaStepper),
    }
    report(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _decompress_stats(codec: Codec, blob: bytes):
    import io

    return codec.decompress_stream(io.BytesIO(blob), io.BytesIO())


def report(r: dict) -> None:
    env = r["environment"]
    print(f"{r['model']} on {env['gpu'] or env['cpu']}, {env['dtype']}, torch {env['torch']}, "
          f"triton {env['triton']}, transformers {env['transformers']}")
    print(f"settings: {r['settings']}")
    print(f"{r['input_bytes']} bytes, {r['tokens']} tokens -> {r['compressed_bytes']} bytes "
          f"({r['bits_per_byte']:.3f} bits/byte)")
    for direction in ("compress", "decompress"):
        d, s = r[direction], r["shares"][direction]
        print(f"{direction:>10}: {d['bytes_per_second'] / 1e6:8.4g} MB/s  {d['tokens_per_second']:10.0f} tokens/s  "
              f"(median of {len(d['seconds'])}); time in model {s['model']:.0%}, kernels {s['kernels']:.0%}, "
              f"coder {s['coder']:.0%}, other {s['other']:.0%}")
    f = r["floor"]
    print(f"{'floor':>10}: {f['bytes_per_second'] / 1e6:8.4g} MB/s  {f['tokens_per_second']:10.0f} tokens/s  "
          f"({f['bound']}-bound: {f['step_bytes'] / 1e6:.1f} MB and {f['step_flops'] / 1e9:.1f} GFLOP per step; "
          f"measured {r['measured']['copy_read_bytes_per_second'] / 1e9:.0f} GB/s copy, "
          f"{r['measured']['matmul_flops_per_second'] / 1e12:.1f} TFLOP/s matmul); "
          f"gap x{f['compress_gap']:.1f} compress, x{f['decompress_gap']:.1f} decompress")


if __name__ == "__main__":
    main(sys.argv[1:])
