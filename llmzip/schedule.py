"""What each model call sees: a block's tokens cut into windows, and windows grouped into streams.

A block of n tokens is cut into consecutive windows of `context` tokens (the last one shorter),
each evaluated from BOS on its own. Windows are grouped, in order, into coded streams of
`per_stream` windows; inside a stream the tokens are coded step-major (token t of every window of
the stream, then token t + 1), so a decoder must step a stream's windows together, and may step
any number of whole streams together. Both directions derive the layout from these functions.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    start: int  # index of the window's first token in the block
    length: int  # tokens the window codes


def windows(n_tokens: int, context: int) -> list[Window]:
    """The windows of a block: all `context` long except the last (lengths never increase)."""
    return [Window(start, min(context, n_tokens - start)) for start in range(0, n_tokens, context)]


def stream_groups(n_windows: int, per_stream: int) -> list[range]:
    """The windows (indices) that share each coded stream."""
    return [range(first, min(first + per_stream, n_windows)) for first in range(0, n_windows, per_stream)]


def running_counts(lengths: list[int]) -> list[int]:
    """For each step t, how many windows still have a token (a prefix, since lengths never increase)."""
    steps = max(lengths, default=0)
    return [sum(1 for length in lengths if length > t) for t in range(steps)]
