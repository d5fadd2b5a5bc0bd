"""Compression levels, gzip's -1 ... -9 and lzma's `preset=`: points on the speed/ratio curve.

A level chooses the window layout (`schedule.Layout`): how many tokens each model call sees,
how many of them are context carried over from the text before, and how long the lanes are that
a decoder must go through one window after another. More context codes better; more carried
context costs the encoder more forward work per coded token; longer lanes leave the decoder fewer
lanes to step side by side. It also chooses the portable engine's default mixer: from level 2 on,
a logit bias learned while coding (`llmzip.adapt`), which the encoder computes step by step. The
file header records both, so decoding needs no level.

Each level is a point of the measured sweep in bench/levels.py (bench/RESULTS.md, "Compression
levels"); the default is the one that sweep picked.
"""
from __future__ import annotations

from .container import ADAPT_MIXER, MIXER_CODES
from .errors import UnsupportedParameterError
from .schedule import Layout

LEVELS: dict[int, Layout] = {
    1: Layout(context=512, carry=0, lane_tokens=512),  # every window from BOS: most parallel decoding
    2: Layout(context=512, carry=128, lane_tokens=2048),
    3: Layout(context=512, carry=256, lane_tokens=4096),
    4: Layout(context=768, carry=384, lane_tokens=4096),
    5: Layout(context=1024, carry=512, lane_tokens=8192),
    6: Layout(context=1536, carry=768, lane_tokens=16384),
    7: Layout(context=2048, carry=1024, lane_tokens=32768),
    8: Layout(context=2048, carry=1536, lane_tokens=32768),
    9: Layout(context=4096, carry=3072, lane_tokens=131072),  # twice the KV cache, two lanes per 1 MiB block
}
# From the sweep of 2026-12-05 with adapt-v2 and both line filters (bench/RESULTS.md, four
# Canterbury texts): past -5, -6 and -7 gain 0.4% and 0.7% in bits per byte for 11% and 25% of the
# encoder's speed, but their longer lanes halve and quarter the lanes a decoder steps side by side
# in a 1 MiB block, and the decoder's KV cache, read at every step, grows with the context. -9's
# 4,096 tokens coded the whole of alice29.txt 0.65% smaller than -8's 2,048 (1.0343 against 1.0411
# bits per byte, both before the line-end filter).
DEFAULT_LEVEL = 5
FASTEST, BEST = min(LEVELS), max(LEVELS)


# Level 1 is the fastest: its encoder stays one full-sequence pass. From level 2 on the encoder
# also steps each stream's output layer and quantizer through the coding order to train the bias.
ADAPT_FROM = 2


def mixer_for(preset: int | None) -> str:
    """The portable engine's default mixer at a level (None: the default level)."""
    level = DEFAULT_LEVEL if preset is None else preset
    layout_for(level)  # refuses a level that does not exist
    return ADAPT_MIXER if level >= ADAPT_FROM else MIXER_CODES[0]


def layout_for(preset: int | None) -> Layout:
    """The layout of a level (None: the default level)."""
    level = DEFAULT_LEVEL if preset is None else preset
    if level not in LEVELS:
        raise UnsupportedParameterError(f"compression level must be {FASTEST} to {BEST}, not {preset}")
    return LEVELS[level]
