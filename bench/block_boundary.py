"""What a block boundary and a lane boundary cost, in real bytes, at the default level.

    python bench/block_boundary.py ../shared/corpus/alice29.txt --bytes 40000 --threads 2 \
        --out bench/results/block_boundary.json

The first BYTES of the file are compressed three ways with the embedded default model and the
default level's window layout: as one block with a single lane (context carried all the way), as
one block with the level's lanes, and as two blocks of half the size each. Size differences are
what the extra lane starts and the block boundary cost, since everything else is the same text
coded the same way. The files are sized, not decoded: decoding 40 KB in one lane takes most of
an hour on two cores, and tests/test_levels.py round-trips these layouts. A boundary's cost over
a block of the default size gives its share of the bits per byte. Then `python
bench/make_results.py --write` renders the section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import llmzip  # noqa: I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.codec import BLOCK_BYTES
from llmzip.levels import DEFAULT_LEVEL, LEVELS
from llmzip.measure.bench import write_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--bytes", type=int, default=40000,
                        help="first BYTES of the file (default 40000: two lanes at the default level)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "block_boundary.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = llmzip.load_model(None, device="cpu", dtype="float32")
    data = args.file.read_bytes()[: args.bytes]
    level = LEVELS[DEFAULT_LEVEL]
    layouts = {
        "one block, one lane": (dict(lane_tokens=1 << 30), BLOCK_BYTES),
        "one block, the level's lanes": ({}, BLOCK_BYTES),
        # cut after a newline before this size: a block of about half, then the rest
        "two blocks, the level's lanes": ({}, len(data) // 2 + 2048),
    }
    rows = []
    for name, (override, block_bytes) in layouts.items():
        codec = llmzip.Codec(model, preset=DEFAULT_LEVEL, engine="portable", **override)
        blob = codec.compress(data, block_bytes=block_bytes)
        info = llmzip.inspect(blob)
        if info.blocks != (2 if name.startswith("two") else 1):
            raise SystemExit(f"{name}: {info.blocks} blocks; choose another --bytes")
        lanes = sum(-(-tokens // codec.layout.lane_size) for tokens in (b.tokens for b in info.block_list))
        rows.append({"layout": name, "blocks": info.blocks, "lanes": lanes, "tokens": info.tokens,
                     "compressed_bytes": len(blob), "bits_per_byte": 8 * len(blob) / len(data)})
        print(f"{name:32s} {info.blocks} block(s), {lanes} lane(s): {len(blob)} bytes, "
              f"{8 * len(blob) / len(data):.4f} bits/byte", flush=True)
    one_lane, lanes, blocks = rows
    lane_cost = (lanes["compressed_bytes"] - one_lane["compressed_bytes"]) / max(1, lanes["lanes"] - one_lane["lanes"])
    block_cost = blocks["compressed_bytes"] - lanes["compressed_bytes"]
    write_run(args.out, args.threads, argv,
              settings={"file": args.file.name, "bytes": len(data), "level": DEFAULT_LEVEL, "context": level.context,
                        "carry": level.carry, "lane_tokens": level.lane_size, "model": model.name,
                        "default_block_bytes": BLOCK_BYTES},
              rows=rows, bytes_per_lane_start=lane_cost, bytes_per_block_boundary=block_cost,
              block_boundary_share_of_default_block=8 * block_cost / BLOCK_BYTES)  # bits per byte of a default block
    print(f"a lane start costs {lane_cost:.1f} bytes, a block boundary {block_cost} bytes "
          f"({8 * block_cost / BLOCK_BYTES:.5f} bits/byte over a {BLOCK_BYTES >> 20} MiB block); written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
