"""The portable quantizer "int-v1" as one Triton kernel: integer logits to integer frequencies.

It computes exactly `llmzip.quantize.frequencies_integer` (see its definition there), in the
structure of Triton's fused-softmax tutorial: one program per row, a BLOCK-wide loop over the
vocabulary, four passes over the row (max and first argmax; sum of the table weights; shares and
their sum; the remainder to the argmax). Every operation is on integers (int64 max, adds,
multiplies, shifts, one division per row, a gather from the 2^-x table), so the result does not
depend on BLOCK, num_warps, the order of the sums, the GPU or the interpreter: it is the torch
definition's integers, bit for bit (tests/test_kernels.py checks it).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from llmzip.portable import arith
from llmzip.portable.llama import FRACTION
from llmzip.quantize import RECIPROCAL_BITS, TOTAL

_TOTAL = tl.constexpr(TOTAL)
_RECIPROCAL = tl.constexpr(RECIPROCAL_BITS)
_GAP_SHIFT = tl.constexpr(FRACTION - arith.EXP_FRACTION_BITS)  # logits' 2^-16 bits to the table's 2^-10
_GAP_HALF = tl.constexpr(1 << (FRACTION - arith.EXP_FRACTION_BITS - 1))
_TABLE_LAST = tl.constexpr(arith.EXP_TABLE_SIZE - 1)
BLOCK = 1024


@triton.jit
def _weights(logits_row, table_ptr, offsets, vocab, top):
    """2^30 * 2^-(top - x) of a block of the row from the table (the gap rounded to 2^-10 bits,
    clamped to the table), 0 past the row's end."""
    inside = offsets < vocab
    x = tl.load(logits_row + offsets, mask=inside, other=0)
    gap = tl.minimum((top - x + _GAP_HALF) >> _GAP_SHIFT, _TABLE_LAST)
    return tl.load(table_ptr + gap, mask=inside, other=0), inside


@triton.jit
def _int_quantize_kernel(logits_ptr, logits_stride, table_ptr, freqs_ptr, freqs_stride, vocab,
                         BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    logits_row = logits_ptr + row * logits_stride
    freqs_row = freqs_ptr + row * freqs_stride
    lanes = tl.arange(0, BLOCK)
    # Pass 1: the max and the first index reaching it (a later block must be strictly larger).
    top = tl.full((), -(1 << 62), tl.int64)
    top_index = tl.full((), 0, tl.int64)
    for start in range(0, vocab, BLOCK):
        offsets = start + lanes
        x = tl.load(logits_row + offsets, mask=offsets < vocab, other=-(1 << 62))
        block_top = tl.max(x, axis=0)
        block_index = tl.argmax(x, axis=0, tie_break_left=True).to(tl.int64) + start
        better = block_top > top
        top_index = tl.where(better, block_index, top_index)
        top = tl.where(better, block_top, top)
    # Pass 2: the sum of the weights 2^30 * 2^-(top - x).
    total = tl.full((), 0, tl.int64)
    for start in range(0, vocab, BLOCK):
        w, _ = _weights(logits_row, table_ptr, start + lanes, vocab, top)
        total += tl.sum(w, axis=0)
    scale = ((tl.full((), _TOTAL, tl.int64) - vocab) << _RECIPROCAL) // total
    # Pass 3: shares floor(w * scale / 2^38); frequencies are shares + 1.
    shares_total = tl.full((), 0, tl.int64)
    for start in range(0, vocab, BLOCK):
        offsets = start + lanes
        w, inside = _weights(logits_row, table_ptr, offsets, vocab, top)
        shares = (w * scale) >> _RECIPROCAL
        shares_total += tl.sum(shares, axis=0)  # 0 past the row's end, where w is 0
        tl.store(freqs_row + offsets, shares + 1, mask=inside)
    # Pass 4: the remainder goes to the first maximal logit.
    remainder = _TOTAL - vocab - shares_total
    at_top = freqs_row + top_index
    tl.store(at_top, tl.load(at_top) + remainder)


def frequencies(logits: torch.Tensor) -> torch.Tensor:
    """`llmzip.quantize.frequencies_integer` of int64 logits (rows, V), by the kernel."""
    rows, vocab = logits.shape
    logits = logits.contiguous()
    freqs = torch.empty((rows, vocab), dtype=torch.int64, device=logits.device)
    table = arith.exp_table(logits.device)
    _int_quantize_kernel[(rows,)](logits, logits.stride(0), table, freqs, freqs.stride(0), vocab,
                                  BLOCK=BLOCK, num_warps=4)
    return freqs
