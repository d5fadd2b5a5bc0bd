"""A logit bias learned while coding: the LLM's predictions adapted to the document at hand.

A model trained on everything underrates what one text says again and again: its names, its
spelling, its recurring words. One bias per vocabulary entry, added to the LLM's logits and
trained online by the gradient of each coded token's log-likelihood, moves mass onto those tokens
as the text shows them (an "adaptive head"; Nacrith, arXiv 2602.19626, uses one in float).
Measured ideally (float, top-64 approximation, whole alice29.txt at 2,048-token windows: 1.0929
bits per byte for the LLM alone), a learning rate of 0.2 nats gained 4.5%; an order-4 token n-gram
mixed in linearly gained 1.0% at the best fixed weight, so that part was not built.

Exactness: the bias is an int64 vector in the engine's logit units (bits, fixed point 16), and
both sides update it by integer operations from integers they share: after a step, every token v
loses floor(STEP * sum_l f_l(v) / 2^24) (f_l: lane l's frequency table before the match model's
mixing, summing to 2^24) and each coded token gains STEP. That is the gradient step
b += lr * (onehot(t) - p) with p = f / 2^24 in place of the softmax, for lr = STEP * 2^-16 bits
(0.2 nats). Updates happen in the coding order of `schedule.Layout` (the match model's): every
lane of a step is predicted with the bias before the step, so any decoder batch sees the same
vectors. Values stay within +-LIMIT (clamped after each step); STEP * 2^24 * lanes < 2^62.

adapt-v2 ("counted") gives each token its own rate, which falls as the token is seen: a token
coded n times before learns at RATE(n) = isqrt(floor(C^2 * 2^32 / (n + 1))) >> 16, about
C / sqrt(n + 1) with C = 0.5 nats (n stops counting at COUNT_LIMIT). A word the text has just
introduced moves fast; one it has used a hundred times has found its place. The step is the same
with RATE(n_v) in place of STEP for each v, the rates as they were before the step; then the
step's tokens are counted. Measured ideally (bench/ideal_adaptation.py's float model, whole
alice29.txt at 2,048/1,536): 1.0365 bits per byte against adapt-v1's 1.0445 (the LLM alone 1.0901).
RATE(n) <= C < 2^16, so RATE * 2^24 * lanes < 2^62 as well.
"""
from __future__ import annotations

import functools
import math

import torch

from .quantize import PRECISION

STEP = 18_910  # round(0.2 / ln 2 * 2^16): 0.2 nats in the engine's logit units
LIMIT = 1 << 26  # |bias| <= 1,024 bits: far beyond any useful correction, far inside int64
COUNTED_RATE = 47_274  # C of adapt-v2: floor(0.5 / ln 2 * 2^16), 0.5 nats
COUNT_LIMIT = (1 << 16) - 1  # adapt-v2 counts a token's occurrences up to this


@functools.lru_cache(maxsize=None)
def counted_rates() -> tuple[int, ...]:
    """adapt-v2's RATE(n) for n = 0 ... COUNT_LIMIT, from Python's integers (the same everywhere)."""
    square = COUNTED_RATE * COUNTED_RATE << 32
    return tuple(math.isqrt(square // (n + 1)) >> 16 for n in range(COUNT_LIMIT + 1))


@functools.lru_cache(maxsize=None)
def _rate_table(device: torch.device) -> torch.Tensor:
    return torch.tensor(counted_rates(), dtype=torch.int64, device=device)


class LogitBias:
    """One coded stream's bias, applied to its lanes' logits and trained on their tokens: at adapt-v1's
    fixed rate, or (`counted`) at adapt-v2's rate per token."""

    def __init__(self, vocab: int, device: torch.device | str = "cpu", counted: bool = False) -> None:
        self.bias = torch.zeros(vocab, dtype=torch.int64, device=device)
        self.counted = counted
        if counted:
            self._rates = _rate_table(self.bias.device)
            self.count = torch.zeros(vocab, dtype=torch.int64, device=device)
            self.rate = torch.full((vocab,), COUNTED_RATE, dtype=torch.int64, device=device)  # RATE(count)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (rows, V) plus the bias: the logits the quantizer turns into this step's tables."""
        return logits + self.bias.to(logits.device)

    def update(self, tables: torch.Tensor, tokens: torch.Tensor) -> None:
        """Learn from a step: `tables` (rows, V) are the frequencies the step's lanes were coded
        with (before mixing), `tokens` (rows,) the tokens they coded, in lane order."""
        tables = tables.to(self.bias.device)
        tokens = tokens.to(self.bias.device).long()
        spent = tables.sum(dim=0).mul_(self.rate if self.counted else STEP)
        spent >>= PRECISION
        self.bias -= spent
        gains = self.rate[tokens] if self.counted else torch.full((tokens.numel(),), STEP, dtype=torch.int64,
                                                                    device=self.bias.device)
        self.bias.index_add_(0, tokens, gains)
        self.bias.clamp_(-LIMIT, LIMIT)
        if self.counted:
            self.count.index_add_(0, tokens, torch.ones_like(tokens)).clamp_(max=COUNT_LIMIT)
            self.rate[tokens] = self._rates[self.count[tokens]]


__all__ = ["COUNT_LIMIT", "COUNTED_RATE", "LIMIT", "STEP", "LogitBias", "counted_rates"]
