"""What the match model and the logit bias gain, in real bytes, on text with long-range repetition and without.

    python bench/mixer.py bench/data/dpkg.log llmzip/codec.py FORMAT.md ../shared/corpus/alice29.txt \
        --bytes 12288 --threads 2 --out bench/results/mixer.json

The first BYTES of each file are compressed four times at the default level with the embedded
default model: without a mixer (`mixer="none"`), with the match model (`match-v1`), with `adapt-v1`
(a logit bias learned while coding, plus the match model) and with the default `adapt-v2` (the
bias at a rate per token that falls as the token recurs). All four come from
the same model calls on the same windows, so their differences are what each part gains; each
coded stream is mixed (and adapted) only where that coded it shorter, and the table says how many
were. xz -9e on
the same bytes is shown for scale. The files are sized, not decoded (tests/test_match.py
round-trips mixed files at several decoder batches). Then `python bench/make_results.py --write`
renders the section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import io
import lzma
import time
from pathlib import Path

import llmzip  # noqa: I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.coder import StreamDecoder
from llmzip.container import ADAPT_MIXER, ADAPT_MIXERS, MIXER_CODES, NO_MIXER, StreamReader
from llmzip.levels import DEFAULT_LEVEL
from llmzip.measure.bench import write_run
from llmzip.portable.coding import StreamFlag, read_stream_flag


def stream_flags(blob: bytes, adapt: bool = False) -> list[StreamFlag]:
    """Each stream's first symbol in a mixer file: mixed (match-v1), or (mixed, adapted) (adapt-v1, adapt-v2)."""
    reader = StreamReader(io.BytesIO(blob))
    header, _ = reader.read_header()
    return [read_stream_flag(StreamDecoder(s), adapt) for block, _ in reader.blocks(header) for s in block.streams]


def mixed_streams(blob: bytes) -> tuple[int, int]:
    """(streams flagged as mixed, all streams) of a match-v1 file."""
    flags = stream_flags(blob)
    return sum(f.mixed for f in flags), len(flags)


MIXERS = (NO_MIXER, MIXER_CODES[0], *ADAPT_MIXERS)  # the default, ADAPT_MIXER, last


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
        sizes, seconds, blobs = {}, {}, {}
        for mixer in MIXERS:
            started = time.perf_counter()
            blobs[mixer] = llmzip.Codec(model, preset=DEFAULT_LEVEL, mixer=mixer).compress(data)
            seconds[mixer], sizes[mixer] = time.perf_counter() - started, len(blobs[mixer])
        mixed, streams = mixed_streams(blobs[MIXER_CODES[0]])
        adapted_flags = stream_flags(blobs[ADAPT_MIXER], adapt=True)
        row = {"file": path.name, "bytes": len(data), "tokens": llmzip.inspect(blobs[NO_MIXER]).tokens,
               "streams": streams, "mixed_streams": mixed,
               "adapted_streams": sum(f.biased for f in adapted_flags),
               "adapted_mixed_streams": sum(f.mixed for f in adapted_flags),
               "xz_bits_per_byte": 8 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) / len(data)}
        for mixer in MIXERS:
            row[mixer] = {"bytes": sizes[mixer], "bits_per_byte": 8 * sizes[mixer] / len(data), "seconds": seconds[mixer],
                          "gain_percent": 100 * (1 - sizes[mixer] / sizes[NO_MIXER])}
        rows.append(row)
        print(f"{path.name:16s} {len(data)} bytes: " + ", ".join(
            f"{m} {row[m]['bits_per_byte']:.4f} ({row[m]['gain_percent']:+.2f}%, {row[m]['seconds']:.0f} s)" for m in MIXERS),
            flush=True)
    write_run(args.out, args.threads, argv,
              settings={"bytes": args.bytes, "level": DEFAULT_LEVEL, "model": model.name, "mixers": list(MIXERS)},
              rows=rows)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
