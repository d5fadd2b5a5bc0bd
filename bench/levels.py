"""The compression levels measured: real bits per byte against tokens per second, in one run.

    python bench/levels.py ../shared/corpus/{alice29,lcet10}.txt --bytes 16384 --decode-bytes 4096 \
        --decode-files 1 --threads 2 --out bench/results/levels.json

For each level (default all, see llmzip/levels.py) and each file it compresses the first BYTES
bytes with the embedded default model and the portable engine, and records the real size of the
file (bits per byte of the whole .llmz, header included), the coded streams alone, the model's
cross-entropy estimate, and the compression tokens per second. Decompression is timed on the
first DECODE_BYTES of the first DECODE_FILES files (stepping is 5 to 30 times slower than compressing, so a smaller
slice keeps the sweep within an hour on two cores), and every decoded output is compared with its
input; the larger BYTES slices' files are sized, not decoded. The classic compressors (llmzip.measure.baselines: gzip -9, bzip2 -9, xz -9e, zstd -22,
brotli 11) run on the same BYTES slices. With `--bytes 0 --decode-bytes 0 --levels 9 --out bench/results/levels_whole.json` it
compresses whole files at the best level and decodes the first (`--decode-files 0`: sizes them only). Then `python bench/make_results.py --write` renders the
"Compression levels" section of bench/RESULTS.md and the plot bench/results/levels.png.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import llmzip  # noqa: I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.levels import DEFAULT_LEVEL, LEVELS
from llmzip.measure.baselines import run_baselines
from llmzip.measure.bench import write_run


def measure_level(model: llmzip.LoadedModel, level: int, slices: dict[str, bytes], decode_slices: dict[str, bytes]) -> dict:
    codec = llmzip.Codec(model, preset=level, engine="portable")
    codec.portable  # the integer model is built once per loaded model, outside the timings
    rows = []
    for name, data in slices.items():
        started = time.perf_counter()
        blob, stats = codec.compress_with_stats(data)
        compress_s = time.perf_counter() - started
        row = {"file": name, "original_bytes": len(data), "compressed_bytes": len(blob), "stream_bytes": stats.stream_bytes,
               "tokens": stats.tokens, "cross_entropy_bits": stats.cross_entropy_bits, "compress_seconds": compress_s,
               "decode_bytes": 0, "decode_tokens": 0, "decompress_seconds": 0.0}
        if name in decode_slices:
            small = decode_slices[name]
            small_blob = blob if small == data else codec.compress(small)
            started = time.perf_counter()
            restored = codec.decompress(small_blob)
            row["decompress_seconds"] = time.perf_counter() - started
            if restored != small:
                raise SystemExit(f"level {level}: the round trip of {name} failed; the benchmark stops here")
            row["decode_bytes"], row["decode_tokens"] = len(small), llmzip.inspect(small_blob).tokens
        rows.append(row)
        decode_rate = row["decode_tokens"] / row["decompress_seconds"] if row["decode_tokens"] else float("nan")
        print(f"level {level} {name:12s} {8 * len(blob) / len(data):.4f} bpb  compress {stats.tokens / compress_s:6.1f} "
              f"tok/s  decompress {decode_rate:6.1f} tok/s", flush=True)
    total = sum(r["original_bytes"] for r in rows)
    layout = codec.layout
    return {
        "level": level, "context": layout.context, "carry": layout.carry, "lane_tokens": layout.lane_size,
        "mixer": codec.mixer,
        "bits_per_byte": 8 * sum(r["compressed_bytes"] for r in rows) / total,
        "stream_bits_per_byte": 8 * sum(r["stream_bytes"] for r in rows) / total,
        "estimate_bits_per_byte": sum(r["cross_entropy_bits"] for r in rows) / total,
        "compress_tokens_per_s": sum(r["tokens"] for r in rows) / sum(r["compress_seconds"] for r in rows),
        "decompress_tokens_per_s": (sum(r["decode_tokens"] for r in rows) / sum(r["decompress_seconds"] for r in rows)
                                    if any(r["decode_tokens"] for r in rows) else None),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--bytes", type=int, default=16384,
                        help="first BYTES of each file to compress (default 16384; 0: whole files)")
    parser.add_argument("--decode-bytes", type=int, default=4096,
                        help="first DECODE_BYTES of each file to time decompression on (default 4096; 0: whole files)")
    parser.add_argument("--decode-files", type=int, default=1,
                        help="time decompression on the first N files only (default 1)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="comma-separated levels (default all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "levels.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = llmzip.load_model(None, device="cpu", dtype="float32")
    slices = {path.name: path.read_bytes()[: args.bytes or None] for path in args.files}
    decode_slices = {path.name: path.read_bytes()[: args.decode_bytes or None] for path in args.files[: args.decode_files]}
    levels = [measure_level(model, int(level), slices, decode_slices) for level in args.levels.split(",")]
    baselines = {}
    for name, data in slices.items():
        for result in run_baselines(data):
            if result.skipped is None:
                entry = baselines.setdefault(result.name, {"settings": result.settings, "compressed_bytes": 0,
                                                           "original_bytes": 0})
                entry["compressed_bytes"] += result.compressed_size
                entry["original_bytes"] += len(data)
    for entry in baselines.values():
        entry["bits_per_byte"] = 8 * entry["compressed_bytes"] / entry["original_bytes"]
    write_run(args.out, args.threads, argv,
              settings={"bytes": args.bytes, "decode_bytes": args.decode_bytes, "decode_files": list(decode_slices),
                        "model": model.name, "engine": "portable-v1", "default_level": DEFAULT_LEVEL,
                        "files": list(slices)},
              levels=levels, baselines=baselines)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
