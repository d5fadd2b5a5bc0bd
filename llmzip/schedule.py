"""What each model call sees: a block's tokens cut into lanes, lanes into windows, lanes grouped
into coded streams.

A `Layout` fixes it, and the file header records the layout, so both directions derive the
same windows from the block's token count alone:

- A block of n tokens is cut into consecutive *lanes* of `lane_tokens` tokens (the last one
  shorter). Lanes are independent of each other: a decoder may step any number of them together.
- A lane is coded by consecutive *windows*. Its first window starts from BOS and codes up to
  `context` tokens; every later one first re-reads the `carry` tokens before it (carried context,
  known to the decoder from earlier windows of the same lane) and codes up to `context - carry`
  new ones. No coded token after a lane's first window sees fewer than `carry` tokens of context.
- Lanes are grouped, in order, into coded streams of `per_stream` lanes. A stream's tokens are
  coded round by round (the first windows of its lanes, then the second ones...) and, inside a
  round, step-major (token t of every lane's window, then token t + 1), so a decoder steps a
  stream's lanes together and may step any number of whole streams together.

`carry = 0` with `lane_tokens = context` is the layout of files before carried context: every
window its own lane, starting from BOS.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    start: int  # index in the block of the first token the window codes
    length: int  # tokens the window codes
    prefix: int = 0  # tokens before `start` the model reads first: carried context


@dataclass(frozen=True)
class Layout:
    context: int  # tokens one window's model call sees: carried context plus coded tokens
    carry: int = 0  # carried context of every window after a lane's first
    lane_tokens: int = 0  # tokens per lane; 0 means `context` (each window its own lane)

    def __post_init__(self) -> None:
        if self.context < 1 or not 0 <= self.carry < self.context:
            raise ValueError(f"carried context {self.carry} must be below the context {self.context}")
        if self.lane_tokens and self.lane_tokens < self.context:
            raise ValueError(f"lanes of {self.lane_tokens} tokens are shorter than the context {self.context}")
        if not self.lane_tokens:  # one canonical form, so that equal layouts compare equal
            object.__setattr__(self, "lane_tokens", self.context)

    @property
    def lane_size(self) -> int:
        return self.lane_tokens or self.context

    @property
    def stride(self) -> int:
        """New tokens per window after a lane's first."""
        return self.context - self.carry

    def lanes(self, n_tokens: int) -> list[range]:
        """The lanes of a block (token index ranges): all `lane_size` long except the last."""
        return [range(start, min(start + self.lane_size, n_tokens)) for start in range(0, n_tokens, self.lane_size)]

    def lane_windows(self, lane: range) -> list[Window]:
        first = Window(lane.start, min(self.context, len(lane)))
        windows = [first]
        for start in range(first.start + first.length, lane.stop, self.stride):
            windows.append(Window(start, min(self.stride, lane.stop - start), self.carry))
        return windows

    def streams(self, n_tokens: int, per_stream: int) -> list[list[list[Window]]]:
        """Per coded stream, its rounds; per round, the windows of the stream's lanes that have one.

        Lane lengths never increase, so in every round the lanes that take part are a prefix of
        the stream's lanes and their window lengths never increase either.
        """
        lanes = [self.lane_windows(lane) for lane in self.lanes(n_tokens)]
        streams = []
        for first in range(0, len(lanes), per_stream):
            members = lanes[first : first + per_stream]
            rounds = len(members[0])
            streams.append([[windows[r] for windows in members if len(windows) > r] for r in range(rounds)])
        return streams


def windows(n_tokens: int, context: int) -> list[Window]:
    """The windows of the layout without carried context, each from BOS (the float engines' layout)."""
    return [Window(start, min(context, n_tokens - start)) for start in range(0, n_tokens, context)]


def stream_groups(n_windows: int, per_stream: int) -> list[range]:
    """The windows (indices) that share each coded stream."""
    return [range(first, min(first + per_stream, n_windows)) for first in range(0, n_windows, per_stream)]


def running_counts(lengths: list[int]) -> list[int]:
    """For each step t, how many windows still have a token (a prefix, since lengths never increase)."""
    steps = max(lengths, default=0)
    return [sum(1 for length in lengths if length > t) for t in range(steps)]
