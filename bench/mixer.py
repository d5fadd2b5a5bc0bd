"""What the match model and mixer gain, in real bytes, on text with long-range repetition and without.

    python bench/mixer.py bench/data/dpkg.log llmzip/codec.py FORMAT.md ../shared/corpus/alice29.txt \
        --bytes 12288 --threads 2 --out bench/results/mixer.json

The first BYTES of each file are compressed twice at the default level with the embedded default
model: without a mixer (`mixer="none"`) and with the default `match-v1`. Both files come from the
same model calls on the same windows, so their difference is what mixing gains; each coded stream
of the second is mixed only if that coded it shorter, and the table says how many were. xz -9e on
the same bytes is shown for scale. The files are sized, not decoded (tests/test_match.py
round-trips mixed files at several decoder batches). Then `python bench/make_results.py --write`
renders the section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import time
from pathlib import Path

import llmzip  # noqa: I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.coder import StreamDecoder
from llmzip.container import MIXER_CODES, NO_MIXER, StreamReader
from llmzip.levels import DEFAULT_LEVEL
from llmzip.measure.bench import run_record
from llmzip.portable.coding import read_mixing_flag


def mixed_streams(blob: bytes) -> tuple[int, int]:
    """(streams flagged as mixed, all streams) of a match-v1 file: each stream's first symbol."""
    reader = StreamReader(io.BytesIO(blob))
    header, _ = reader.read_header()
    flags = [read_mixing_flag(StreamDecoder(s)) for block, _ in reader.blocks(header) for s in block.streams]
    return sum(flags), len(flags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--bytes", type=int, default=12288, help="first BYTES of each file (default 12288)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mixer.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = llmzip.load_model(None, device="cpu", dtype="float32")
    rows = []
    for path in args.files:
        data = path.read_bytes()[: args.bytes]
        sizes, seconds = {}, {}
        for mixer in (NO_MIXER, MIXER_CODES[0]):
            started = time.perf_counter()
            blob = llmzip.Codec(model, preset=DEFAULT_LEVEL, mixer=mixer).compress(data)
            seconds[mixer], sizes[mixer] = time.perf_counter() - started, len(blob)
        mixed, streams = mixed_streams(blob)
        row = {"file": path.name, "bytes": len(data), "tokens": llmzip.inspect(blob).tokens,
               "plain_bytes": sizes[NO_MIXER], "mixed_bytes": sizes[MIXER_CODES[0]],
               "plain_bits_per_byte": 8 * sizes[NO_MIXER] / len(data),
               "mixed_bits_per_byte": 8 * sizes[MIXER_CODES[0]] / len(data),
               "gain_percent": 100 * (1 - sizes[MIXER_CODES[0]] / sizes[NO_MIXER]),
               "mixed_streams": mixed, "streams": streams,
               "plain_seconds": seconds[NO_MIXER], "mixed_seconds": seconds[MIXER_CODES[0]],
               "xz_bits_per_byte": 8 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) / len(data)}
        rows.append(row)
        print(f"{path.name:16s} {len(data)} bytes: {row['plain_bits_per_byte']:.4f} -> {row['mixed_bits_per_byte']:.4f} "
              f"bits/byte ({row['gain_percent']:+.2f}%), {mixed}/{streams} streams mixed; "
              f"{seconds[NO_MIXER]:.0f} s / {seconds[MIXER_CODES[0]]:.0f} s", flush=True)
    payload = {
        **run_record(args.threads, argv),
        "settings": {"bytes": args.bytes, "level": DEFAULT_LEVEL, "model": model.name, "mixer": MIXER_CODES[0]},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
