"""The portable engine against the float engine, in one run with the same threads.

    python bench/portable_engine.py ../shared/corpus/{alice29,asyoulik,lcet10,plrabn12}.txt \
        --bytes 8192 --threads 2 --out bench/results/portable_engine.json

For each file's first BYTES bytes and each engine (the transformers float engine, which steps
every window in both directions, and the portable integer engine, which compresses with
full-sequence forwards and decompresses by stepping), it compresses, decompresses, checks the
round trip, and records real bits per byte, the cross-entropy estimate and tokens per second.
Timings are medians of --repeats runs. Then `python bench/make_results.py --write` renders the
section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

import llmzip  # noqa: I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.measure.bench import write_run

ENGINES = ("transformers", "portable")


def cpu_seconds() -> float:
    """This process's CPU time so far (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(codec: llmzip.Codec, data: bytes, repeats: int) -> dict:
    compress_times, decompress_times, compress_cpu, decompress_cpu = [], [], [], []
    blob, stats = b"", None
    for _ in range(repeats):
        started, cpu = time.perf_counter(), cpu_seconds()
        blob, stats = codec.compress_with_stats(data)
        compress_times.append(time.perf_counter() - started)
        compress_cpu.append(cpu_seconds() - cpu)
        started, cpu = time.perf_counter(), cpu_seconds()
        restored = codec.decompress(blob)
        decompress_times.append(time.perf_counter() - started)
        decompress_cpu.append(cpu_seconds() - cpu)
        if restored != data:
            raise SystemExit("round trip failed: the benchmark stops here")
    compress_s, decompress_s = statistics.median(compress_times), statistics.median(decompress_times)
    compress_cpu_s, decompress_cpu_s = statistics.median(compress_cpu), statistics.median(decompress_cpu)
    return {
        "engine": codec.engine, "original_bytes": len(data), "compressed_bytes": len(blob),
        "stream_bytes": stats.stream_bytes, "tokens": stats.tokens,
        "bits_per_byte": 8 * len(blob) / len(data), "stream_bits_per_byte": 8 * stats.stream_bytes / len(data),
        "estimate_bits_per_byte": stats.cross_entropy_bits / len(data),
        "compress_seconds": compress_s, "decompress_seconds": decompress_s,
        "compress_tokens_per_s": stats.tokens / compress_s, "decompress_tokens_per_s": stats.tokens / decompress_s,
        "compress_cpu_seconds": compress_cpu_s, "decompress_cpu_seconds": decompress_cpu_s,
        "round_trip_verified": True,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--bytes", type=int, default=8192, help="first BYTES of each file (default 8192)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", default=None, help="model (default: the embedded default)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "portable_engine.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model = llmzip.load_model(args.model, device="cpu", dtype="float32")
    codecs = {"transformers": llmzip.Codec(model, context=args.context, engine="transformers", threads=args.threads),
              # the float engine's layout (level 1: every window from BOS, no carried context), so
              # that the engines do the same work per token; the match model is mixed in as by default
              "portable": llmzip.Codec(model, preset=1, context=args.context, engine="portable")}
    started = time.perf_counter()
    codecs["portable"].portable  # build the integer model once, outside the timings
    build_seconds = time.perf_counter() - started
    rows = []
    for path in args.files:
        data = path.read_bytes()[: args.bytes]
        for name in ENGINES:
            row = {"file": path.name, **measure(codecs[name], data, args.repeats)}
            rows.append(row)
            print(f"{path.name:14s} {name:12s} {row['bits_per_byte']:.4f} bpb (stream {row['stream_bits_per_byte']:.4f}, "
                  f"estimate {row['estimate_bits_per_byte']:.4f})  compress {row['compress_tokens_per_s']:7.1f} tok/s  "
                  f"decompress {row['decompress_tokens_per_s']:7.1f} tok/s", flush=True)
    summary = {}
    for name in ENGINES:
        mine = [r for r in rows if r["engine"].startswith(name)]
        total = sum(r["original_bytes"] for r in mine)
        summary[name] = {
            "bits_per_byte": 8 * sum(r["compressed_bytes"] for r in mine) / total,
            "stream_bits_per_byte": 8 * sum(r["stream_bytes"] for r in mine) / total,
            "compress_tokens_per_s": sum(r["tokens"] for r in mine) / sum(r["compress_seconds"] for r in mine),
            "decompress_tokens_per_s": sum(r["tokens"] for r in mine) / sum(r["decompress_seconds"] for r in mine),
            # Per CPU-second (all threads): what the engine costs, whatever share of the cores it got.
            "compress_tokens_per_cpu_s": sum(r["tokens"] for r in mine) / sum(r["compress_cpu_seconds"] for r in mine),
            "decompress_tokens_per_cpu_s": sum(r["tokens"] for r in mine) / sum(r["decompress_cpu_seconds"] for r in mine),
        }
    ratio = {key: summary["portable"][key] / summary["transformers"][key] for key in summary["portable"]}
    write_run(args.out, args.threads, argv,
              settings={"bytes": args.bytes, "context": args.context, "repeats": args.repeats, "model": model.name,
                        "float_dtype": "float32"},
              portable_build_seconds=build_seconds,
              load_average={"before": list(load_before), "after": list(os.getloadavg())},
              rows=rows, summary=summary, portable_over_float=ratio)
    print(f"portable / float: bits per byte x{ratio['bits_per_byte']:.4f}, compress x{ratio['compress_tokens_per_s']:.2f}, "
          f"decompress x{ratio['decompress_tokens_per_s']:.2f} (per CPU-second: x{ratio['compress_tokens_per_cpu_s']:.2f}, "
          f"x{ratio['decompress_tokens_per_cpu_s']:.2f}); written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
