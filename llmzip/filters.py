"""Reversible filters on a block's bytes before the model: CRLF line ends, and hard-wrapped lines.

The line-end filter: CRLF line ends coded as LF, and restored after decoding.

Language models learn from text with LF line ends; on a file whose lines end in CRLF (Windows
text, Project Gutenberg's books, three of the four Canterbury texts) every CR is a token the model
rarely saw, and the text around it reads as out of its distribution. Coding such a block as LF text
usually takes fewer tokens and fewer bits per token; bench/line_ends.py measures it in real bytes
(bench/RESULTS.md, "The line-end filter").

The filter is exact by construction and decided per block: it applies only where every LF of the
block follows a CR, so putting one CR before every LF gives the block back. The block records how
many line ends it took out (0: none), and the decoder checks that count against the LFs it decoded
before the block's CRC-32 checks the rest. A block with any bare LF (or none at all) is coded as it
is: a file that mixes line ends keeps them exactly.

The reflow filter: hard-wrapped text coded as the paragraphs it wraps.

Books, RFCs, licences and mail break their paragraphs into lines of at most some 65-80 columns. A
model reads "the\nrabbit" less well than "the rabbit", in one token more (the whole of alice29.txt
at -9 codes 2.6% smaller with its 1,758 soft breaks joined, record included), and most of those
breaks are where a greedy wrap puts them. So the filter codes those soft breaks (LFs between two
non-blank bytes) as spaces, and records the width W at which a greedy wrap best predicts them. A
candidate is a space or LF between two non-blank bytes; at each, in order, the wrap breaks when the
line so far, the space and the next word would pass W columns (characters: UTF-8 continuation bytes
do not count), measuring the line from the last actual line end. A soft break where the line would
still fit (a hand break, the end of a verse line) is left as an LF, which the decoder keeps; a space
where the wrap would break is an exception, recorded, so the decoder, walking the same candidates in
the same order, restores every break exactly. The encoder uses the filter only where the record is
small beside what it saves: at least `BREAKS_PER_RECORD_BYTE` joined breaks per byte of record,
each kept break counted as a byte (hand-wrapped text, code and tables do not pass). Joining keeps
the block's length, so only its CRC-32 checks the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .container import MAX_WRAP_WIDTH, Wrap
from .errors import FormatError


def crlf_line_ends(data: bytes) -> int:
    """How many CRLF line ends the filter would take out of `data`: all of its LFs where every one
    follows a CR, else 0 (the block is coded as it is)."""
    line_feeds = data.count(b"\n")
    return line_feeds if line_feeds and data.count(b"\r\n") == line_feeds else 0


def to_line_feeds(data: bytes) -> bytes:
    """The bytes the model codes: every CRLF as LF."""
    return data.replace(b"\r\n", b"\n")


def restore_crlf(text: bytes, line_ends: int) -> bytes:
    """The block from its decoded bytes: a CR before each of its `line_ends` LFs (0: as decoded)."""
    if not line_ends:
        return text
    if text.count(b"\n") != line_ends:
        raise FormatError("corrupted file: a block's line-end count does not match its decoded text")
    return text.replace(b"\n", b"\r\n")


# Each soft break joined saves about a third of a byte of coded text (bench/line_ends.py measures it);
# each byte of the record costs one. Four breaks per byte leaves a margin.
BREAKS_PER_RECORD_BYTE = 4
# What the encoder weighs in choosing a width, in tenths of a byte, as measured on the whole of
# alice29.txt: a soft break left as an LF costs the model about 1.2 bytes more than a joined one; a
# wrap exception costs about 1.5 bytes of record.
_KEPT_BREAK_COST, _EXCEPTION_COST = 12, 15
_BLANK = np.zeros(256, dtype=bool)
_BLANK[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20]] = True
_SPACE, _LINE_FEED = 0x20, 0x0A


class _Lines:
    """What a greedy wrap needs of a text, for each candidate: where it is, and how many columns the
    space and the word after it take; and the column count before every byte."""

    def __init__(self, text: bytes):
        self.bytes = np.frombuffer(text, dtype=np.uint8)
        blank = _BLANK[self.bytes]
        inner = (self.bytes[1:-1] == _SPACE) | (self.bytes[1:-1] == _LINE_FEED)
        self.candidates = np.flatnonzero(inner & ~blank[:-2] & ~blank[2:]) + 1
        # columns[i]: characters in text[:i] (a UTF-8 continuation byte is not a character).
        self.columns = np.zeros(len(text) + 1, dtype=np.int32 if len(text) < 1 << 31 else np.int64)
        np.cumsum((self.bytes & 0xC0) != 0x80, out=self.columns[1:])
        blanks = np.append(np.flatnonzero(blank), len(text))
        word_end = blanks[np.searchsorted(blanks, self.candidates + 1)]
        self.space_and_word = 1 + self.columns[word_end] - self.columns[self.candidates + 1]

    def line_starts(self) -> np.ndarray:
        """For each candidate, where its line begins: after the last LF before it (0: none)."""
        line_feeds = np.flatnonzero(self.bytes == _LINE_FEED)
        before = np.searchsorted(line_feeds, self.candidates)
        return np.where(before > 0, line_feeds[np.maximum(before - 1, 0)] + 1, 0) if len(line_feeds) else \
            np.zeros(len(self.candidates), dtype=np.int64)

    @cached_property
    def breaks(self) -> np.ndarray:
        """For each candidate, whether it is a soft break (an LF) rather than a space."""
        return self.bytes[self.candidates] == _LINE_FEED

    @cached_property
    def reach(self) -> np.ndarray:
        """For each candidate, how far its line would reach if the wrap did not break there (capped
        past the widest width a record can give)."""
        reach = self.columns[self.candidates] - self.columns[self.line_starts()] + self.space_and_word
        return np.minimum(reach, MAX_WRAP_WIDTH + 1)

    def plan(self) -> Wrap | None:
        """`plan_wrap` of this text."""
        wrap = self.wrap()
        if wrap is None:
            return None
        joined = int(np.count_nonzero(self.joined_breaks(wrap)))
        kept = int(np.count_nonzero(self.breaks)) - joined
        # A kept break counts against the filter like a byte of record: a text whose lines often end
        # where the next word would still fit (code, lists, verse) is not wrapped prose, and joining
        # its other lines costs bytes (Python files lost 1.1-1.8 bytes per joined break).
        return wrap if joined >= BREAKS_PER_RECORD_BYTE * (wrap.record_bytes() + kept) else None

    def wrap(self, width: int | None = None) -> Wrap | None:
        """`wrap_for` this text."""
        breaks = self.breaks
        if not breaks.any():
            return None
        reach = self.reach
        if width is None:
            # At width W a break whose line would fit (reach <= W) stays an LF; a space where the line
            # would not fit is an exception. The width costing least wins.
            # (Predicting no break where the line already passes W instead would suit a line joined
            # by hand, but costs more on real text: lcet10.txt 188 -> 286 mispredictions.)
            bins = MAX_WRAP_WIDTH + 2
            breaks_fitting = np.cumsum(np.bincount(reach[breaks], minlength=bins))
            spaces_fitting = np.cumsum(np.bincount(reach[~breaks], minlength=bins))
            cost = _KEPT_BREAK_COST * breaks_fitting + _EXCEPTION_COST * (spaces_fitting[-1] - spaces_fitting)
            width = int(np.argmin(cost[1:MAX_WRAP_WIDTH + 1])) + 1
        elif not 1 <= width <= MAX_WRAP_WIDTH:
            raise ValueError(f"a wrap width is 1 to {MAX_WRAP_WIDTH} columns, not {width}")
        return Wrap(width, tuple(int(k) for k in np.flatnonzero((reach > width) & ~breaks)))

    def joined_breaks(self, wrap: Wrap) -> np.ndarray:
        """For each candidate, whether it is a soft break that `wrap` puts back (the others stay)."""
        return self.breaks & (self.reach > wrap.width)

    def joined(self, wrap: Wrap) -> bytes:
        """`join_lines` of this text."""
        joined = self.bytes.copy()
        joined[self.candidates[self.joined_breaks(wrap)]] = _SPACE
        return joined.tobytes()


def plan_wrap(text: bytes) -> Wrap | None:
    """The record that restores `text`'s soft breaks after `join_lines`, or None where the filter
    does not pay: no soft breaks, or fewer joined ones than BREAKS_PER_RECORD_BYTE per record byte,
    each break left as an LF counted as a record byte."""
    return _Lines(text).plan()


def soft_breaks(text: bytes) -> int:
    """LFs between two non-blank bytes: the line breaks `join_lines` may code as spaces."""
    return int(np.count_nonzero(_Lines(text).breaks))


def wrap_for(text: bytes, width: int | None = None) -> Wrap | None:
    """The record of `text`'s soft breaks for a greedy wrap at `width` columns (None: at the width
    that costs least, kept breaks and exceptions weighed as measured, the narrowest of equals); None
    where the text has no soft break."""
    return _Lines(text).wrap(width)


def join_lines(text: bytes, wrap: Wrap) -> bytes:
    """The text the model codes: every soft break (an LF between two non-blank bytes) that `wrap`
    puts back, as a space. A soft break where its line would fit in the width stays an LF."""
    return _Lines(text).joined(wrap)


def rewrap(joined: bytes, wrap: Wrap | None) -> bytes:
    """The block's text from what `join_lines` made of it and its record (None: as decoded)."""
    if wrap is None:
        return joined
    lines = _Lines(joined)
    if wrap.exceptions and wrap.exceptions[-1] >= len(lines.candidates):
        raise FormatError("corrupted file: a block's line-wrap exceptions pass its text")
    # Everything in columns, per candidate: where it is, where its line starts after the last LF
    # of the joined text, and what the space and the next word take.
    out = bytearray(joined)
    exceptions = iter(wrap.exceptions)
    next_exception = next(exceptions, -1)
    line_start = 0  # in columns: after the last LF, hard or put back
    for k, (at, column, hard_start, space_and_word) in enumerate(zip(
            lines.candidates.tolist(), lines.columns[lines.candidates].tolist(),
            lines.columns[lines.line_starts()].tolist(), lines.space_and_word.tolist())):
        line_start = max(line_start, hard_start)
        breaks = column - line_start + space_and_word > wrap.width
        if k == next_exception:
            breaks, next_exception = not breaks, next(exceptions, -1)
        if breaks:
            out[at] = _LINE_FEED
            line_start = column + 1  # the candidate (a space, or an LF left as it was) is one column
    return bytes(out)


@dataclass(frozen=True)
class Filtered:
    """A block as the model codes it, and what gives the original back (`unfilter`)."""

    text: bytes
    line_ends: int = 0  # CRLF line ends coded as LF
    wrap: Wrap | None = None  # soft line breaks coded as spaces


def filter_block(data: bytes, *, line_ends: bool = True, reflow: bool = True) -> Filtered:
    """Both filters where they apply and are allowed: CRLF as LF first, then soft breaks as spaces."""
    crlf = crlf_line_ends(data) if line_ends else 0
    text = to_line_feeds(data) if crlf else data
    if not reflow:
        return Filtered(text, crlf)
    lines = _Lines(text)  # built once: planning and joining both read it
    wrap = lines.plan()
    return Filtered(lines.joined(wrap) if wrap else text, crlf, wrap)


def unfilter(text: bytes, line_ends: int, wrap: Wrap | None) -> bytes:
    """The original block from its decoded text: the line breaks back, then the CRs."""
    return restore_crlf(rewrap(text, wrap), line_ends)


__all__ = ["BREAKS_PER_RECORD_BYTE", "Filtered", "Wrap", "crlf_line_ends", "filter_block", "join_lines",
           "plan_wrap", "restore_crlf", "rewrap", "soft_breaks", "to_line_feeds", "unfilter", "wrap_for"]
