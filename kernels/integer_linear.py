"""The portable engine's linear layer as one Triton kernel: int8 products, exact, and their rescaling.

It computes exactly what `llmzip.portable.llama.Linear.__call__` computes with torch, in one pass:
for each output element, acc = x @ W^T over int8 operands (for 16-bit activations, whose int8
halves arrive stacked as rows [0, R) high and [R, 2R) low, acc = 256 hi + lo), then
(acc * column mantissa * row mantissa + half) >> shift, plus the bias. On a GPU this replaces an
int8 GEMM, the halves' recombination and five element-wise int64 passes over (R, N) (conversion,
two multiplies, the rounding add and the shift).

Why it is exact, whatever the tile sizes, the GPU or the interpreter:
- `tl.dot` on int8 operands accumulates in int32, an integer sum: exact in any order as long as no
  partial sum overflows. |x| <= 128 and |w| <= 127 bound each partial sum by 128 * 127 * K, below
  2^31 for K < 132,104 (`MAX_TERMS`; the default model has K <= 1,536).
- The rest is int64 integer arithmetic (multiplies, an add, an arithmetic right shift, an add)
  on values the torch definition bounds below 2^59 (see `Linear.__call__`), in the torch
  definition's order; integer products and sums do not depend on order anyway.
Masked loads give 0 past the matrix edges, and a 0 adds nothing to a sum.
tests/test_kernels.py checks it bit for bit against the torch path under TRITON_INTERPRET=1;
tests/aot_compile_kernels.py compiles it for sm_90.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_TERMS = ((1 << 31) - 1) // (128 * 127)  # inner sizes whose int32 partial sums cannot overflow


@triton.jit
def _int_linear_kernel(x_ptr, x_stride, w_ptr, w_stride, row_mantissa_ptr, row_half_ptr, row_shift_ptr,
                       column_mantissa_ptr, bias_ptr, out_ptr, out_stride, rows, columns, terms,
                       HALVES: tl.constexpr, HAS_BIAS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    row_ids = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    column_ids = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_inside = row_ids < rows
    column_inside = column_ids < columns
    high = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    low = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for start in range(0, terms, BLOCK_K):
        term_ids = start + tl.arange(0, BLOCK_K)
        term_inside = term_ids < terms
        w = tl.load(w_ptr + term_ids[:, None] * w_stride + column_ids[None, :],
                    mask=term_inside[:, None] & column_inside[None, :], other=0)
        x_mask = row_inside[:, None] & term_inside[None, :]
        x = tl.load(x_ptr + row_ids[:, None] * x_stride + term_ids[None, :], mask=x_mask, other=0)
        high = tl.dot(x, w, high, out_dtype=tl.int32)
        if HALVES:
            x = tl.load(x_ptr + (row_ids + rows)[:, None] * x_stride + term_ids[None, :], mask=x_mask, other=0)
            low = tl.dot(x, w, low, out_dtype=tl.int32)
    y = high.to(tl.int64)
    if HALVES:
        y = y * 256 + low.to(tl.int64)
    column_mantissa = tl.load(column_mantissa_ptr + column_ids, mask=column_inside, other=0)
    row_mantissa = tl.load(row_mantissa_ptr + row_ids, mask=row_inside, other=0)
    row_half = tl.load(row_half_ptr + row_ids, mask=row_inside, other=0)
    row_shift = tl.load(row_shift_ptr + row_ids, mask=row_inside, other=0)
    y = (y * column_mantissa[None, :] * row_mantissa[:, None] + row_half[:, None]) >> row_shift[:, None]
    if HAS_BIAS:
        y += tl.load(bias_ptr + column_ids, mask=column_inside, other=0)[None, :]
    tl.store(out_ptr + row_ids[:, None] * out_stride + column_ids[None, :], y,
             mask=row_inside[:, None] & column_inside[None, :])


def block_config(rows: int) -> dict[str, int]:
    """Tile sizes: int8 `tl.dot` wants every side >= 16 (32 along K); thin inputs (decoding steps)
    get thin row tiles. The result does not depend on them."""
    return {"BLOCK_M": 16 if rows <= 16 else 64, "BLOCK_N": 128, "BLOCK_K": 64}


def linear(x_rows: torch.Tensor, halves: bool, weight_t: torch.Tensor, column_mantissa: torch.Tensor,
           row_mantissa: torch.Tensor, row_half: torch.Tensor, row_shift: torch.Tensor,
           bias: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """(acc * column_mantissa * row_mantissa + row_half) >> row_shift (+ bias) as int64 (R, N), for
    int8 rows (R, K) (or stacked halves (2R, K) when `halves`) and int8 weights (K, N); the
    per-row and per-column quantities are int64 vectors. `out` (R, N) int64 receives it if given."""
    terms, columns = weight_t.shape
    if terms > MAX_TERMS:
        raise ValueError(f"inner size {terms} exceeds {MAX_TERMS}: the int32 sums could overflow")
    rows = x_rows.shape[0] // (2 if halves else 1)
    x_rows = x_rows.contiguous()
    weight_t = weight_t.contiguous()
    if out is None:
        out = torch.empty((rows, columns), dtype=torch.int64, device=x_rows.device)
    config = block_config(rows)
    grid = (triton.cdiv(rows, config["BLOCK_M"]), triton.cdiv(columns, config["BLOCK_N"]))
    _int_linear_kernel[grid](x_rows, x_rows.stride(0), weight_t, weight_t.stride(0),
                             row_mantissa.contiguous(), row_half.contiguous(), row_shift.contiguous(),
                             column_mantissa.contiguous(), bias if bias is not None else column_mantissa,
                             out, out.stride(0), rows, columns, terms,
                             HALVES=halves, HAS_BIAS=bias is not None, num_warps=4, **config)
    return out
