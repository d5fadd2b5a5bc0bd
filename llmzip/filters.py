"""The line-end filter: CRLF line ends coded as LF, and restored after decoding.

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
"""
from __future__ import annotations

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


__all__ = ["crlf_line_ends", "restore_crlf", "to_line_feeds"]
