"""What the line-end filter gains, in real bytes: CRLF text coded as it is against coded as LF.

    python bench/line_ends.py ../shared/corpus/alice29.txt ../shared/corpus/asyoulik.txt \
        ../shared/corpus/lcet10.txt ../shared/corpus/plrabn12.txt --bytes 16384 --threads 2 \
        --out bench/results/line_ends.json

The first BYTES of each file (0: all of it) are compressed twice at the level given (default: the
default level) with the embedded default model (or `--model`): with `keep_line_ends=True` (every
byte coded as it is) and with the filter (the default: a block whose line ends are all CRLF is
coded as LF text).
The filtered file is decompressed and compared with the input. A file with LF line ends (or mixed
ones) is coded the same both ways, and the table says so. Then `python bench/make_results.py
--write` renders the section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import llmzip  # noqa: I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.levels import DEFAULT_LEVEL
from llmzip.measure.bench import write_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--bytes", type=int, default=16384, help="first BYTES of each file (0: the whole file)")
    parser.add_argument("--level", type=int, default=DEFAULT_LEVEL)
    parser.add_argument("--model", default=None, help="model folder or .gguf file (default: the embedded SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "line_ends.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = llmzip.load_model(args.model, device="cpu", dtype="float32")
    codecs = {kept: llmzip.Codec(model, preset=args.level, keep_line_ends=kept) for kept in (True, False)}
    rows = []
    for path in args.files:
        data = path.read_bytes()
        data = data[: args.bytes] if args.bytes else data
        row: dict = {"file": path.name, "bytes": len(data), "crlf": data.count(b"\r\n"), "lf": data.count(b"\n")}
        for kept, name in ((True, "kept"), (False, "filtered")):
            started = time.perf_counter()
            blob, stats = codecs[kept].compress_with_stats(data)
            seconds = time.perf_counter() - started
            row[name] = {"bytes": len(blob), "bits_per_byte": 8 * len(blob) / len(data), "tokens": stats.tokens,
                         "seconds": seconds, "tokens_per_s": stats.tokens / seconds,
                         "line_ends": sum(b.line_ends for b in llmzip.inspect(blob).block_list)}
        started = time.perf_counter()
        assert codecs[False].decompress(blob) == data, f"{path.name}: the round trip differs"
        row["filtered"]["decompress_seconds"] = time.perf_counter() - started
        row["gain_percent"] = 100 * (1 - row["filtered"]["bytes"] / row["kept"]["bytes"])
        rows.append(row)
        print(f"{path.name:16s} {len(data)} bytes, {row['crlf']} CRLF of {row['lf']} LF: "
              f"kept {row['kept']['bits_per_byte']:.4f} ({row['kept']['tokens']} tokens), "
              f"filtered {row['filtered']['bits_per_byte']:.4f} ({row['filtered']['tokens']} tokens), "
              f"{row['gain_percent']:+.2f}%", flush=True)
    write_run(args.out, args.threads, argv, settings={"bytes": args.bytes, "level": args.level, "model": model.name},
              rows=rows)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
