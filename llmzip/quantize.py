"""Probabilities to exact integer frequencies: the one place where floats become the coder's integers.

Encoder and decoder must derive bit-identical frequency tables, so the mapping from logits to
integers is defined here once, precisely, and given an id that the file header records:

1. Logits are upcast to float32. NaN becomes -1e30; values are clamped to [-1e30, 1e30], so a row
   that is all -inf or NaN becomes uniform and a +inf logit takes (almost) all the mass.
2. p = softmax(x) in float32.
3. f = floor(p * (2**PRECISION - V)) + 1: every token keeps a frequency of at least 1, so any token
   can be coded whatever the model says.
4. The remainder 2**PRECISION - sum(f) (a small number, of either sign) goes to the most probable
   token (the first maximal logit), so each row sums to exactly 2**PRECISION.

Integer sums are exact in any order, so only steps 1-3 depend on float rounding; the Triton kernel
in `llmzip.kernels` implements the same definition with its own reduction order, and therefore has
its own id: a file is always decoded by the quantizer that encoded it.

The portable engine's logits are integers, and its quantizer ("int-v1", `frequencies_integer`)
is integer throughout, so its tables are the same on every machine:

1. w = 2^30 * 2^-(x_max - x) from a table (`portable.arith`), with logits x in bits, fixed point
   16, and the gap rounded to 2^-10: the most probable token gets exactly 2^30.
2. M = floor((2^24 - V) * 2^38 / sum(w)); f = floor(w * M / 2^38) + 1, never above the exact
   share, so sum(f) <= 2^24.
3. The remainder 2^24 - sum(f) (small, non-negative) goes to the first maximal logit.
"""
from __future__ import annotations

import torch

from .errors import UnsupportedParameterError

PRECISION = 24
TOTAL = 1 << PRECISION
LOGIT_LIMIT = 1e30

TORCH_QUANTIZER = "torch-v1"
TRITON_QUANTIZER = "triton-v1"
INTEGER_QUANTIZER = "int-v1"
QUANTIZERS = (TORCH_QUANTIZER, TRITON_QUANTIZER, INTEGER_QUANTIZER)
RECIPROCAL_BITS = 38  # (2^24 - V) * 2^38 < 2^62; w * M <= 2^30 * 2^32


def sanitize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Step 1 of the definition: float32, NaN to -LOGIT_LIMIT, clamped to +-LOGIT_LIMIT."""
    x = logits.float()
    x = torch.nan_to_num(x, nan=-LOGIT_LIMIT, posinf=LOGIT_LIMIT, neginf=-LOGIT_LIMIT)
    return x.clamp_(-LOGIT_LIMIT, LOGIT_LIMIT)


def _checked_vocab(logits: torch.Tensor) -> int:
    """V of logits shaped (rows, V), refusing a vocabulary the 2^24 total cannot give every token."""
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (rows, vocab), got {tuple(logits.shape)}")
    vocab = logits.shape[-1]
    if not 3 <= vocab < TOTAL // 2:
        raise UnsupportedParameterError(f"vocabulary size {vocab} is outside what the coder supports")
    return vocab


def frequencies_torch(logits: torch.Tensor) -> torch.Tensor:
    """Reference quantizer: int32 frequencies of shape (rows, V), each row summing to TOTAL."""
    vocab = _checked_vocab(logits)
    x = sanitize_logits(logits)
    probs = torch.softmax(x, dim=-1)
    freqs = torch.floor(probs * float(TOTAL - vocab)).to(torch.int32) + 1
    remainder = TOTAL - freqs.sum(dim=-1, dtype=torch.int64)
    top = torch.argmax(x, dim=-1, keepdim=True)
    freqs.scatter_add_(-1, top, remainder.to(torch.int32).unsqueeze(-1))
    if bool((freqs.gather(-1, top) < 1).any()):  # cannot happen for |remainder| << TOTAL / vocab
        raise ArithmeticError("quantizer produced a non-positive frequency")
    return freqs


_INTEGER_BLOCK_ROWS = 8  # rows per pass of the integer quantizer: its int64 rows stay in cache


def _integer_block(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-2 of int-v1 for a few rows: (floor(w * M / 2^38), the first maximal logit's index,
    sum(w)) per row, with w = 2^30 * 2^-(gap) and gap = min(round((x_max - x) / 2^6), table end)."""
    from .portable import arith
    from .portable.llama import FRACTION

    vocab = logits.shape[-1]
    top_index = torch.argmax(logits, dim=-1, keepdim=True)
    shift = FRACTION - arith.EXP_FRACTION_BITS
    gaps = torch.sub(logits.gather(-1, top_index) + (1 << (shift - 1)), logits)  # x_max - x, rounded up at halves ...
    gaps >>= shift  # ... and floored: round((x_max - x) / 2^6), as arith.shift_round
    weights = arith.gather(arith.exp_table(logits.device), gaps.clamp_(max=arith.EXP_TABLE_SIZE - 1))
    total = weights.sum(dim=-1, keepdim=True)
    shares = weights.mul_(torch.div((TOTAL - vocab) << RECIPROCAL_BITS, total, rounding_mode="floor"))
    shares >>= RECIPROCAL_BITS
    return shares, top_index, total


def frequencies_integer(logits: torch.Tensor) -> torch.Tensor:
    """The portable quantizer: int64 frequencies (rows, V) from int64 logits in bits, fixed point 16.
    On a GPU one Triton kernel computes the same integers (`llmzip.kernels.integer_quantize`)."""
    vocab = _checked_vocab(logits)
    if logits.is_cuda:
        from .kernels import integer_quantize

        return integer_quantize.frequencies(logits)
    return _integer_tables(logits, vocab)[0]


def _integer_tables(logits: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int-v1 in torch, a block of rows at a time: the tables (rows, V), and per row the first
    maximal logit's index and sum(w), (rows, 1) each (what -log2 p needs, `_nll_bits`)."""
    tables = torch.empty(logits.shape, dtype=torch.int64, device=logits.device)
    tops, totals = [], []
    for first in range(0, logits.shape[0], _INTEGER_BLOCK_ROWS):
        last = min(logits.shape[0], first + _INTEGER_BLOCK_ROWS)
        shares, top, total = _integer_block(logits[first:last])
        remainder = (TOTAL - vocab) - shares.sum(dim=-1, keepdim=True)
        torch.add(shares, 1, out=tables[first:last]).scatter_add_(-1, top, remainder)
        tops.append(top)
        totals.append(total)
    return tables, torch.cat(tops), torch.cat(totals)


def _nll_bits(logits: torch.Tensor, top: torch.Tensor, total: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """-log2 p of the tokens `index` under the engine's softmax before quantization (float64):
    log2(sum(w)) - 30 plus the token's gap below the top logit, in bits."""
    from .portable.llama import FRACTION

    gap_bits = (logits.gather(-1, top) - logits.gather(-1, index)).double() / (1 << FRACTION)
    return torch.log2(total.double()) - 30 + gap_bits


def intervals_integer(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(low, frequency) of each row's token under `frequencies_integer`, without its table, and
    -log2 p(token) under the engine's softmax before quantization (the estimate beside the real
    size, in float64). low = the shares below the token, plus one per token below it, plus the
    remainder if the top token is below it. `tokens` (rows,) gives one token per row; (rows, k)
    gives k, and every output is then (rows, k)."""
    vocab = _checked_vocab(logits)
    index = tokens.reshape(logits.shape[0], -1).long()  # one or more tokens per row
    on_cpu = logits.device.type == "cpu"
    parts = []
    for first in range(0, logits.shape[0], _INTEGER_BLOCK_ROWS if on_cpu else 128):
        last = min(logits.shape[0], first + (_INTEGER_BLOCK_ROWS if on_cpu else 128))
        shares, top, total = _integer_block(logits[first:last])
        token = index[first:last]
        share = shares.gather(-1, token)
        if on_cpu:  # a sum over each row's prefix: no cumulative table
            below = torch.tensor([[int(shares[i, :t].sum()) for t in row] for i, row in enumerate(token.tolist())],
                                 dtype=torch.int64).view(token.shape)
            shares_total = shares.sum(dim=-1, keepdim=True)
        else:  # no host round trip on a GPU
            cumulative = shares.cumsum_(dim=-1)
            below, shares_total = cumulative.gather(-1, token) - share, cumulative[:, -1:]
        parts.append((share, below, shares_total, top, total))
    share, below, shares_total, top, total = (torch.cat(column) for column in zip(*parts))
    remainder = (TOTAL - vocab) - shares_total
    nll_bits = _nll_bits(logits, top, total, index)
    low = below + index + torch.where(top < index, remainder, 0)
    freq = share + 1 + torch.where(top == index, remainder, 0)
    if tokens.dim() == 1:
        return low.squeeze(-1), freq.squeeze(-1), nll_bits.squeeze(-1)
    return low, freq, nll_bits


def tables_integer(logits: torch.Tensor, tokens: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`frequencies_integer`'s tables (rows, V) together with what `intervals_integer` gives for
    `tokens` (rows, k): (tables, low, frequency, -log2 p), from one pass of the quantizer. For
    coders that need the whole table as well as the coded intervals (`llmzip.adapt` learns from it)."""
    index = tokens.reshape(logits.shape[0], -1).long()
    tables, top, total = _integer_tables(logits, _checked_vocab(logits))
    freq = tables.gather(-1, index)
    low = tables.cumsum(dim=-1).gather(-1, index) - freq
    return tables, low, freq, _nll_bits(logits, top, total, index)


def quantizer_id(name: str, vocab: int) -> str:
    """The id a file header records: the quantizer plus, for a kernel, its launch configuration."""
    if name in (TORCH_QUANTIZER, INTEGER_QUANTIZER):
        return name
    if name == TRITON_QUANTIZER:
        from .kernels import quantize as triton_quantize

        return triton_quantize.config_id(vocab)
    raise UnsupportedParameterError(f"unknown quantizer {name!r}; this llmzip knows {', '.join(QUANTIZERS)}")


def check_quantizer_id(recorded: str, vocab: int) -> None:
    """Refuse a quantizer (or kernel configuration) this install would not reproduce exactly."""
    name = recorded.split(":", 1)[0]
    if name not in QUANTIZERS:
        raise UnsupportedParameterError(f"this file uses quantizer {recorded!r}, unknown to this llmzip")
    try:
        ours = quantizer_id(name, vocab)
    except ImportError:
        raise UnsupportedParameterError(
            f"this file was quantized by the Triton kernel ({recorded}); install triton and decode on a GPU") from None
    if ours != recorded:
        raise UnsupportedParameterError(
            f"this file's quantizer configuration {recorded!r} differs from this install's {ours!r}")


def frequencies(logits: torch.Tensor, quantizer: str) -> torch.Tensor:
    """Dispatch to the quantizer a file header names (an id from `quantizer_id`)."""
    name = quantizer.split(":", 1)[0]
    if name == TORCH_QUANTIZER:
        return frequencies_torch(logits)
    if name == INTEGER_QUANTIZER:
        return frequencies_integer(logits)
    if name == TRITON_QUANTIZER:
        from .kernels import quantize as triton_quantize

        return triton_quantize.frequencies(logits)
    raise UnsupportedParameterError(f"unknown quantizer {quantizer!r}; this llmzip knows {', '.join(QUANTIZERS)}")


def intervals(freqs: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, frequency) of each row's token in its row's cumulative table: what the encoder codes."""
    cdf = torch.cumsum(freqs, dim=-1, dtype=torch.int64)
    index = tokens.reshape(-1, 1).long()
    freq = freqs.gather(-1, index).squeeze(-1).long()
    low = cdf.gather(-1, index).squeeze(-1) - freq
    return low, freq


def fused_intervals(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, frequency) of each row's token straight from the logits, with the Triton quantizer's
    numbers (its kernel answers the query without writing a table)."""
    from .kernels import quantize as triton_quantize

    return triton_quantize.intervals(logits, tokens)


def fused_cumulative(logits: torch.Tensor) -> torch.Tensor:
    """The Triton quantizer's inclusive int32 cumulative table (rows, V), for the device decoder."""
    from .kernels import quantize as triton_quantize

    return triton_quantize.cumulative(logits)
