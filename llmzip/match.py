"""The second model: a token match model and an adaptive integer mixer, mixed into the LLM's
integer frequencies.

An LLM sees only its window; text repeats far beyond it (markup, logs, code, tables, binary
records). The match model finds the most recent earlier place in the block where the last
`MATCH_ORDER` tokens of a lane occurred and predicts the token that followed there, then keeps
following that place while it predicts right. The mixer learns how often such a prediction is
right, per match length and per how likely the LLM already found the predicted token, and moves
the coded distribution's mass onto the predicted token accordingly: where the match is no better
than the LLM it moves nothing.

Exactness: both sides must compute the same frequencies. Everything here is integer arithmetic
on Python ints and int64 numpy arrays with values far below 2^63 (no float, no hash with a seed),
and each stream's state is updated in the coding order that `schedule.Layout` fixes: round by
round, step by step; every lane of a step is predicted from the state before the step, and the
step's tokens update it afterwards in lane order. The decoder decodes in exactly that order,
whatever batch of streams it runs, so it sees the same state.

The mixing keeps one count per symbol: frequencies f (each >= 1, summing to TOTAL) are written as
1 + an excess e; the excess cumulative sum is scaled by K / 2^16 (floored) and the mass freed is
added to the predicted token, so every symbol keeps a frequency of at least 1 and the total stays
TOTAL.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .quantize import TOTAL

MATCH_ORDER = 4  # tokens of a lane's recent text that must recur to start a match
_SCALE_BITS = 16  # K, the share the other tokens keep, is a fraction of 2^16
_LENGTH_BUCKETS = 6  # match lengths by bit length: 1, 2-3, 4-7, 8-15, 16-31, 32+ tokens past the order
_ODDS_BUCKETS = 25  # the LLM's odds for the predicted token, f : (TOTAL - f), in steps of 2 bits
_COUNT_LIMIT = 1 << 10  # counts halve past this, so the mixer follows changes in the data


def _half_bit_log(x: int) -> int:
    """floor(2 log2 x), near enough: twice the bit length plus the bit below the leading one."""
    n = x.bit_length()
    return 2 * n + (x >> (n - 2) & 1 if n >= 2 else 0)


def _odds_bucket(freq: int) -> int:
    """Which 2-bit step of log-odds the LLM's frequency of the predicted token falls in: the
    mixer learns separately how often a match is right where the LLM already expects it and
    where it does not (a coarser split loses on prose, where the LLM often knows better)."""
    step = (_half_bit_log(freq) - _half_bit_log(TOTAL - freq)) >> 2  # floor division by 4
    return max(0, min(_ODDS_BUCKETS - 1, step + _ODDS_BUCKETS // 2))


class MatchModel:
    """Predictions for one coded stream. `lane_starts` are the block positions where its lanes
    begin (a lane's text before its start belongs to another lane and may not be decoded yet)."""

    def __init__(self, lane_starts: Sequence[int], n_tokens: int) -> None:
        self.lane_starts = list(lane_starts)
        self.tokens = np.zeros(n_tokens, dtype=np.int64)
        self.known = np.zeros(n_tokens, dtype=bool)
        self.recent: dict[tuple[int, ...], int] = {}  # last MATCH_ORDER tokens -> the position after them
        self.pointer = [-1] * len(self.lane_starts)  # per lane: the earlier position being followed
        self.length = [0] * len(self.lane_starts)  # per lane: tokens predicted right in a row

    def predict(self, lanes: Sequence[int], positions: Sequence[int]) -> list[tuple[int, int]]:
        """(predicted token, match length) for each lane's next position; (-1, 0) for none."""
        out = []
        for lane, position in zip(lanes, positions):
            pointer = self.pointer[lane]
            if pointer < 0 or not self.known[pointer]:
                pointer, self.length[lane] = -1, 0
                if position - MATCH_ORDER >= self.lane_starts[lane]:
                    key = tuple(self.tokens[position - MATCH_ORDER : position].tolist())
                    pointer = self.recent.get(key, -1)
                self.pointer[lane] = pointer
            out.append((int(self.tokens[pointer]), self.length[lane]) if pointer >= 0 else (-1, 0))
        return out

    def update(self, lanes: Sequence[int], positions: Sequence[int], tokens: Sequence[int]) -> None:
        """Record a step's coded tokens, in lane order."""
        for lane, position, token in zip(lanes, positions, tokens):
            self.tokens[position], self.known[position] = token, True
            pointer = self.pointer[lane]
            if pointer >= 0 and self.tokens[pointer] == token and pointer + 1 < len(self.tokens):
                self.pointer[lane], self.length[lane] = pointer + 1, self.length[lane] + 1
            else:
                self.pointer[lane], self.length[lane] = -1, 0
            if position - MATCH_ORDER >= self.lane_starts[lane]:
                self.recent[tuple(self.tokens[position - MATCH_ORDER : position].tolist())] = position


class Mixer:
    """How much of the coded distribution goes to the match model's prediction, learned from
    counts of its hits in each (match length, LLM probability) bucket."""

    def __init__(self) -> None:
        self.hits = np.zeros((_LENGTH_BUCKETS, _ODDS_BUCKETS), dtype=np.int64)
        self.seen = np.zeros((_LENGTH_BUCKETS, _ODDS_BUCKETS), dtype=np.int64)

    @staticmethod
    def _bucket(length: int, predicted_freq: int) -> tuple[int, int]:
        return min(_LENGTH_BUCKETS - 1, (length + 1).bit_length() - 1), _odds_bucket(predicted_freq)

    def keep(self, length: int, predicted_freq: int) -> int:
        """K: the other tokens keep K / 2^16 of their excess mass; 2^16 moves nothing.

        The bucket's hit rate q = (2 hits + 1) / (2 seen + 2) is what the predicted token's
        probability should become; the LLM gave it p = f / TOTAL, so the others scale by
        (1 - q) / (1 - p) when q > p."""
        row, col = self._bucket(length, predicted_freq)
        num, den = 2 * int(self.seen[row, col]) - 2 * int(self.hits[row, col]) + 1, 2 * int(self.seen[row, col]) + 2
        keep = (num * TOTAL << _SCALE_BITS) // (den * (TOTAL - predicted_freq)) if predicted_freq < TOTAL else 1 << _SCALE_BITS
        return min(keep, 1 << _SCALE_BITS)

    def update(self, length: int, predicted_freq: int, hit: bool) -> None:
        row, col = self._bucket(length, predicted_freq)
        self.hits[row, col] += hit
        self.seen[row, col] += 1
        if self.seen[row, col] >= _COUNT_LIMIT:
            self.hits[row, col] >>= 1
            self.seen[row, col] >>= 1


def _scaled(cumulative: np.ndarray | int, index: np.ndarray | int, keep: np.ndarray | int) -> np.ndarray | int:
    """The mixed cumulative frequency below symbol `index`, before the predicted token's gain:
    index ones plus the excess below it scaled by keep / 2^16 (floored)."""
    return index + (((cumulative - index) * keep) >> _SCALE_BITS)


def mix_interval(low: int, freq: int, token: int, predicted: int, predicted_low: int, predicted_freq: int,
                 vocab: int, keep: int) -> tuple[int, int]:
    """The coded token's (low, freq) after mixing, from its own and the predicted token's LLM
    intervals: what `mix_table` gives for it, without the table."""
    if keep >= 1 << _SCALE_BITS:
        return low, freq
    gain = TOTAL - _scaled(TOTAL, vocab, keep)  # the excess the others gave up
    new_low = _scaled(low, token, keep) + (gain if token > predicted else 0)
    new_high = _scaled(low + freq, token + 1, keep) + (gain if token >= predicted else 0)
    return new_low, new_high - new_low


def mix_table(freqs: np.ndarray, predicted: int, keep: int) -> np.ndarray:
    """One row of frequencies (int64, each >= 1, summing to TOTAL) after mixing."""
    if keep >= 1 << _SCALE_BITS:
        return freqs
    vocab = freqs.shape[0]
    cumulative = np.concatenate(([0], np.cumsum(freqs)))
    scaled = _scaled(cumulative, np.arange(vocab + 1, dtype=np.int64), keep)
    scaled[predicted + 1 :] += TOTAL - int(scaled[-1])
    return np.diff(scaled)


__all__ = ["MATCH_ORDER", "MatchModel", "Mixer", "mix_interval", "mix_table"]
