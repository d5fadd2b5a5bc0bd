"""What the line filters gain, in real bytes: text coded as it is, with CRLF coded as LF, and with
hard-wrapped lines also coded as paragraphs.

    python bench/line_ends.py ../shared/corpus/alice29.txt ../shared/corpus/asyoulik.txt \
        ../shared/corpus/lcet10.txt ../shared/corpus/plrabn12.txt --bytes 16384 --threads 2 \
        --out bench/results/line_ends.json

The first BYTES of each file (0: all of it) are compressed three times at the level given
(default: the default level) with the embedded default model (or `--model`): with
`keep_line_ends=True` (every byte coded as it is); in format version 6, which has the line-end
filter only (a block whose line ends are all CRLF is coded as LF text); and as llmzip compresses by
default, with the reflow filter as well (a hard-wrapped block's soft line breaks coded as spaces,
plus a wrap record). The default file is decompressed and compared with the input. A file that
neither filter takes is coded the same each way, and the table says so. Then `python
bench/make_results.py --write` renders the section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import llmzip  # noqa: I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.codec import split_blocks
from llmzip.container import FORMAT_VERSION
from llmzip.filters import filter_block, soft_breaks, to_line_feeds
from llmzip.levels import DEFAULT_LEVEL
from llmzip.measure.bench import write_run


def joined_and_kept(data: bytes) -> tuple[int, int]:
    """Soft breaks the reflow filter codes as spaces, and those it keeps as LFs (where the line would
    still fit), over the blocks the compressor cuts and the filter takes."""
    joined = kept = 0
    for block in split_blocks(data):
        filtered = filter_block(block)
        if filtered.wrap is not None:
            left = soft_breaks(filtered.text)  # joining turns LFs into spaces and makes none
            joined += soft_breaks(to_line_feeds(block) if filtered.line_ends else block) - left
            kept += left
    return joined, kept


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
    kept = llmzip.Codec(model, preset=args.level, keep_line_ends=True)
    codec = llmzip.Codec(model, preset=args.level)
    variants = (("kept", kept, FORMAT_VERSION), ("line_ends", codec, 6), ("filtered", codec, FORMAT_VERSION))
    rows = []
    for path in args.files:
        data = path.read_bytes()
        data = data[: args.bytes] if args.bytes else data
        row: dict = {"file": path.name, "bytes": len(data), "crlf": data.count(b"\r\n"), "lf": data.count(b"\n")}
        for name, variant, version in variants:
            out = io.BytesIO()
            started = time.perf_counter()
            stats = variant.compress_stream(io.BytesIO(data), out, version=version)
            seconds = time.perf_counter() - started
            blob = out.getvalue()
            blocks = llmzip.inspect(blob).block_list
            row[name] = {"bytes": len(blob), "bits_per_byte": 8 * len(blob) / len(data), "tokens": stats.tokens,
                         "seconds": seconds, "tokens_per_s": stats.tokens / seconds,
                         "line_ends": sum(b.line_ends for b in blocks),
                         "wrapped_blocks": sum(1 for b in blocks if b.wrap_width),
                         "wrap_record_bytes": sum(b.wrap_bytes for b in blocks)}
        started = time.perf_counter()
        assert codec.decompress(blob) == data, f"{path.name}: the round trip differs"
        row["filtered"]["decompress_seconds"] = time.perf_counter() - started
        row["soft_breaks"] = sum(soft_breaks(block.replace(b"\r\n", b"\n")) for block in split_blocks(data))
        row["joined_breaks"], row["kept_breaks"] = joined_and_kept(data)
        row["line_ends_gain_percent"] = 100 * (1 - row["line_ends"]["bytes"] / row["kept"]["bytes"])
        row["reflow_gain_percent"] = 100 * (1 - row["filtered"]["bytes"] / row["line_ends"]["bytes"])
        row["gain_percent"] = 100 * (1 - row["filtered"]["bytes"] / row["kept"]["bytes"])
        rows.append(row)
        print(f"{path.name:16s} {len(data)} bytes, {row['crlf']} CRLF of {row['lf']} LF, "
              f"{row['soft_breaks']} soft breaks ({row['joined_breaks']} joined, {row['kept_breaks']} kept as LF): "
              f"kept {row['kept']['bits_per_byte']:.4f} "
              f"({row['kept']['tokens']} tokens), line ends {row['line_ends']['bits_per_byte']:.4f} "
              f"({row['line_ends']['tokens']}), both {row['filtered']['bits_per_byte']:.4f} "
              f"({row['filtered']['tokens']}), {row['gain_percent']:+.2f}%", flush=True)
    write_run(args.out, args.threads, argv, settings={"bytes": args.bytes, "level": args.level, "model": model.name},
              rows=rows)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
