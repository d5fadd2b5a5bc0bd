"""Exact integer arithmetic on tensors: the only operations the portable engine computes with.

Every function here maps integer tensors to integer tensors by a rule that names one result:
int64 addition, multiplication, comparison, shifts and floor division are exact on every CPU and
GPU, in any order and at any batch shape. Where a float operation appears, it either works on
integers small enough that IEEE arithmetic is exact (the matrix products, see `int_matmul`;
frexp of a value that converts to float64 exactly, see `bit_length` and `normalize_small`), or
only proposes a first guess that integer steps then correct to the one right answer (`isqrt`).
Tables of transcendental values (2^-x, cos, sin) are computed once in Python's
arbitrary-precision integers and `decimal`, never by a platform's libm.

Bounds are part of each function's contract (stated in its docstring): callers keep operands
inside them, so no int64 ever overflows and no float ever rounds.
"""
from __future__ import annotations

import decimal
import functools
from typing import Callable

import numpy as np
import torch


def _fixed_from_decimal(value: decimal.Decimal, context: decimal.Context, bits: int) -> int:
    """round(value * 2^bits), halves to even, as a Python int."""
    return int(context.multiply(value, 1 << bits).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


# --------------------------------------------------------------------------------------------
# Rounding
#
# These work on int64 torch tensors and, with the same code, on int64 numpy arrays: the engine
# keeps its per-row numbers (scales, shifts, bit lengths: a few values per row) in numpy on the
# CPU, where a tiny array operation costs a fraction of a torch operation's overhead. Python's
# operators (+ - * & << >>) mean the same exact int64 operations on both; the few functions that
# differ in name come from `_ops`. Shift counts stay in [0, 62] and values inside the stated
# bounds, so nothing here depends on how a library treats overflow or oversized shifts.


class _TorchOps:
    where = staticmethod(torch.where)
    frexp = staticmethod(torch.frexp)
    floor = staticmethod(torch.floor)
    sqrt = staticmethod(torch.sqrt)

    @staticmethod
    def f64(x):
        return x.double()

    @staticmethod
    def i64(x):
        return x.long()

    @staticmethod
    def at_least(x, low):
        return x.clamp(min=low)

    @staticmethod
    def clip(x, low, high):
        return x.clamp(low, high)

    @staticmethod
    def floordiv(a, b):
        return torch.div(a, b, rounding_mode="floor")

    @staticmethod
    def pow2(shift):
        return torch.bitwise_left_shift(1, shift)


class _NumpyOps:
    where = staticmethod(np.where)
    frexp = staticmethod(np.frexp)
    floor = staticmethod(np.floor)
    sqrt = staticmethod(np.sqrt)
    at_least = staticmethod(np.maximum)

    @staticmethod
    def clip(x, low, high):
        return np.minimum(np.maximum(x, low), high)  # np.clip's overhead is many times a ufunc's
    floordiv = staticmethod(np.floor_divide)

    @staticmethod
    def f64(x):
        return x.astype(np.float64)

    @staticmethod
    def i64(x):
        return x.astype(np.int64)

    @staticmethod
    def pow2(shift):
        return np.left_shift(np.int64(1), shift)


def _ops(x):
    return _NumpyOps if isinstance(x, np.ndarray) else _TorchOps


def div_round(numerator, denominator):
    """round(numerator / denominator), halves rounded up, for a positive denominator.

    floor((2n + d) / 2d) in int64: exact while |2n + d| < 2^63.
    """
    xp = _ops(denominator) if isinstance(numerator, int) else _ops(numerator)
    return xp.floordiv(2 * numerator + denominator, 2 * denominator)


def shift_round(value, shift):
    """round(value / 2^shift), halves rounded up, for 0 <= shift <= 62 (an int, or an int64 tensor)."""
    if isinstance(shift, int):
        return value if shift == 0 else (value + (1 << (shift - 1))) >> shift
    return (value + half_of(shift)) >> shift


def half_of(shift):
    """2^(shift - 1), and 0 where shift is 0: what `shift_round` adds before shifting."""
    return _ops(shift).pow2(shift) >> 1


def shift_round_(value: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`shift_round` in place, for large tensors (an int64 shift tensor broadcast against them)."""
    value += half_of(shift)
    value >>= shift
    return value


def bit_length(value):
    """The number of bits of each non-negative value below 2^62 (0 for 0), like int.bit_length, as int64.

    float64's exponent (frexp, an exact operation) gives it for any value that converts to float64
    exactly. Clearing the 10 lowest bits of a value of at least 2^10 leaves its bit length alone
    and at most 52 significant bits (bits 10 to 61), so the conversion is exact: no rounding up to
    the next power of two.
    """
    xp = _ops(value)
    exact = xp.where(value >= 1024, value & -1024, value)
    return xp.i64(xp.frexp(xp.f64(exact))[1])


def bit_length_small(value):
    """`bit_length` of non-negative values up to 2^53, which convert to float64 exactly: frexp alone."""
    xp = _ops(value)
    return xp.i64(xp.frexp(xp.f64(value))[1])


def isqrt(value):
    """floor(sqrt(v)) of each non-negative v below 2^62, exactly.

    float64's square root proposes r0. Converting v to float64 and taking the root each err by at
    most a relative 2^-52 (a correctly rounded sqrt errs by 2^-53; an error of many more units in
    the last place would do too), so |r0 - sqrt(v)| < sqrt(v) * 2^-51 < 2^-20: with r the answer
    (r <= sqrt(v) < r + 1), floor(r0) is r - 1, r or r + 1. One step down where r0^2 > v, then
    one step up where (r0 + 1)^2 <= v, give the one r with r^2 <= v < (r + 1)^2.
    """
    xp = _ops(value)
    root = xp.i64(xp.sqrt(xp.f64(value)))  # truncation is floor here: the root is >= 0
    root = xp.where(root * root > value, root - 1, root)
    above = root + 1
    return xp.where(above * above <= value, above, root)


def normalize(value, bits: int):
    """(mantissa, exponent) with mantissa * 2^exponent ~= value and bits-1 <= log2(mantissa) < bits.

    The mantissa is value rounded to `bits` significant bits (a value rounding up to 2^bits gives
    2^bits); values must be positive and below 2^62. With e = bit_length - bits: for e > 0 the
    mantissa is round(v / 2^e) = ((2v >> e) + 1) >> 1 (floor((v + 2^(e-1)) / 2^e) taken in two
    floors), for e <= 0 it is v << -e = ((2v << -e) + 1) >> 1; 2v < 2^63.
    """
    xp = _ops(value)
    exponent = bit_length(value) - bits
    up = xp.at_least(-exponent, 0)
    down = xp.at_least(exponent, 0)
    mantissa = (((value << (up + 1)) >> down) + 1) >> 1
    return mantissa, exponent


def normalize_small(value, bits: int):
    """`normalize` of positive values up to 2^53, in float64 where that is exact (bits <= 50).

    v = f * 2^E exactly (frexp, 1/2 <= f < 1, E = bit_length(v)); f * 2^bits = v / 2^(E - bits)
    is exact (a power-of-two scaling), and adding 1/2 is exact because the sum needs at most E
    <= 53 significant bits; floor then gives round(v / 2^(E - bits)), halves up, as `normalize`.
    """
    xp = _ops(value)
    fraction, exponent = xp.frexp(xp.f64(value))
    return xp.i64(xp.floor(fraction * float(1 << bits) + 0.5)), xp.i64(exponent) - bits


def pow2_float(exponent):
    """2.0^exponent as float64 for int64 exponents in [-1022, 1023], from the bit pattern of an
    IEEE-754 double (exact: no pow or exp2 of a math library)."""
    pattern = (exponent + 1023) << 52
    return pattern.view(np.float64) if isinstance(pattern, np.ndarray) else pattern.view(torch.float64)


# --------------------------------------------------------------------------------------------
# Exact matrix products


# A float32 product of integers is exact when every partial sum stays below 2^24: int8 x int8
# operands (|x| <= 128, |w| <= 127 so |x * w| <= 16,256) over at most this many terms.
FLOAT32_EXACT_TERMS = (1 << 24) // (128 * 127)  # 1,032
INT16_LEVELS = 127 * 256 + 127  # 16-bit values whose high byte (x + 128) >> 8 stays within int8


def float32_int8_matmul(x: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """x @ weight_t for int8-valued float32 operands, exact, as int64.

    The inner dimension is cut into chunks of at most FLOAT32_EXACT_TERMS, so each chunk's sum
    of products is an integer below 2^24 in magnitude: every partial sum, in whatever order the
    BLAS or GPU library adds them, with or without fused multiply-adds, is exactly representable,
    so each chunk's float32 result is the exact integer. The chunks are added in int64.
    The reduced-precision float32 modes (TF32 on GPUs, bf16 in oneDNN) keep this exact: they
    round the operands to 10 or 8 mantissa bits, which hold any int8 value, and accumulate in
    float32 (tested with oneDNN's bf16 mode).
    """
    terms = x.shape[-1]
    if terms <= FLOAT32_EXACT_TERMS:
        return torch.matmul(x, weight_t).long()
    total = None
    for start in range(0, terms, FLOAT32_EXACT_TERMS):
        part = torch.matmul(x[..., start : start + FLOAT32_EXACT_TERMS],
                            weight_t[start : start + FLOAT32_EXACT_TERMS]).long()
        total = part if total is None else total + part
    return total


_INT_MM_MIN_ROWS = 17  # CUDA's int8 product needs more than 16 rows (and K, N multiples of 8)


@functools.lru_cache(maxsize=None)
def int_mm_is_exact(device_type: str, device_index: int | None, terms: int, columns: int) -> bool:
    """Whether torch._int_mm gives exact int32 products here, for this inner size and width.

    It is an int8 x int8 -> int32 product, exact by definition, but not always in practice: oneDNN's
    AVX2 kernels (ONEDNN_MAX_CPU_ISA=AVX2, or CPUs without AVX-512 VNNI before PyTorch #136942)
    add pairs of products in saturating 16-bit arithmetic. Operands at +-127 everywhere give the
    largest pair sums, so a saturating kernel fails this probe; a few row counts cover the
    kernels chosen for thin and tall inputs. Failing or missing, the float32 path takes over: it
    gives the same integers, so a file never depends on which path ran.
    """
    if not hasattr(torch, "_int_mm"):
        return False
    device = torch.device(device_type, device_index) if device_index is not None else torch.device(device_type)
    if device.type == "cuda" and (terms % 8 or columns % 8):
        return False
    generator = torch.Generator().manual_seed(terms * 131 + columns)
    random_columns = torch.randint(-127, 128, (len(range(1, columns, 3)), terms), generator=generator, dtype=torch.int8)
    w = torch.full((terms, columns), 127, dtype=torch.int8)
    w[:, 1::3] = random_columns.t()
    # Every row of x below is +127 or -127 throughout, so each row of x @ w is +-127 times w's
    # column sums: the expected products without a float64 product the size of the real one.
    column_sums = torch.full((columns,), 127 * terms, dtype=torch.int64)
    column_sums[1::3] = random_columns.sum(dim=1, dtype=torch.int64)
    column_sums *= 127
    if 127 * 127 * terms < (1 << 31):  # the products are int32: compare in int32
        column_sums = column_sums.int()
    w = stored_weights(w.t().contiguous().to(device))  # in the layout the engine's weights have
    for rows in (1, 7, 64, 512):
        x = torch.full((rows, terms), 127, dtype=torch.int8)
        x[1::2] = -127
        try:
            got = _int_mm_rows(x.to(device), w).cpu()
        except RuntimeError:
            return False
        if not (bool((got[0::2] == column_sums).all()) and bool((got[1::2] == -column_sums).all())):
            return False
    return True


def stored_weights(weight: torch.Tensor) -> torch.Tensor:
    """The int8 matrix (out, in) of a linear layer as its engine keeps it, returned as weight_t
    (in, out): on the CPU a transposed view of the (out, in) rows, which the decoding step's
    dot products read contiguously (`llama.linear_rows_fused`; torch._int_mm runs as fast on
    either layout); elsewhere contiguous (in, out) rows, which the kernels read."""
    return weight.t() if weight.device.type == "cpu" else weight.t().contiguous()


def _int_mm_rows(x: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """torch._int_mm (int32 results) for any number of rows."""
    rows = x.shape[0]
    if x.device.type == "cuda" and rows < _INT_MM_MIN_ROWS:
        x = torch.cat([x, x.new_zeros((_INT_MM_MIN_ROWS - rows, x.shape[1]))])
        return torch._int_mm(x, weight_t)[:rows]
    return torch._int_mm(x, weight_t)


def split_int16(x: torch.Tensor) -> torch.Tensor:
    """Integer rows (R, K) with |x| <= INT16_LEVELS as int8 halves stacked (2R, K): x = 256 hi + lo
    with hi = (x + 128) >> 8 in [-128, 127] and lo = x - 256 hi in [-128, 127]. Computed in int16,
    which holds x + 128 and 256 hi."""
    x = x.to(torch.int16, copy=True)  # a copy of its own even from int16: it is overwritten below
    high = x + 128
    high >>= 8
    rows = torch.empty((2 * x.shape[0], x.shape[1]), dtype=torch.int8, device=x.device)
    rows[: x.shape[0]] = high
    rows[x.shape[0] :] = x.sub_(high, alpha=256)
    return rows


def int8_products(rows: torch.Tensor, weight_t: torch.Tensor, weight_float: Callable[[], torch.Tensor]) -> torch.Tensor:
    """rows @ weight_t for int8 rows (R, K) and int8 weights, exact: int32 from torch._int_mm where
    `int_mm_is_exact` vouches for it, else int64 from `float32_int8_matmul` on the float32
    weights that `weight_float` returns (the same integers)."""
    terms, columns = weight_t.shape
    if int_mm_is_exact(rows.device.type, rows.device.index, terms, columns):
        return _int_mm_rows(rows, weight_t)
    return float32_int8_matmul(rows.float(), weight_float())


def int_matmul(x: torch.Tensor, weight_t: torch.Tensor, weight_float: Callable[[], torch.Tensor]) -> torch.Tensor:
    """x @ weight_t, exact, as int64, for int8 weights (|w| <= 127) and int8 or int16 x.

    int16 x (|x| <= INT16_LEVELS) is split into int8 halves (`split_int16`), both multiplied in
    one product of twice the rows (`int8_products`), and recombined as 256 hi + lo in int64.
    """
    terms, columns = weight_t.shape
    flat = x.reshape(-1, terms)
    rows = flat.shape[0]
    if flat.dtype == torch.int16:
        flat = split_int16(flat)
    acc = int8_products(flat, weight_t, weight_float)
    if acc.shape[0] != rows:  # the two halves of 16-bit rows
        acc = torch.add(acc[rows:].long(), acc[:rows], alpha=256)
    return acc.long().reshape(*x.shape[:-1], columns)


# --------------------------------------------------------------------------------------------
# Exponentials and the sigmoid from tables

EXP_FRACTION_BITS = 10  # exponents are base 2 in steps of 2^-10
EXP_ONE_BITS = 30  # 2^-x and sigmoid values are scaled by 2^30
EXP_TABLE_SIZE = 63 << EXP_FRACTION_BITS  # 2^30 * 2^-x is 0 from x = 31 on; the last entries are 0
SIGMOID_FRACTION_BITS = 12  # the sigmoid table steps through x in 2^-12
SIGMOID_RANGE_BITS = 4  # ... over [0, 16); beyond, sigmoid is 1 (off by under 2^-23)


def _device_key(device: torch.device) -> tuple[str, int | None]:
    return device.type, device.index


@functools.lru_cache(maxsize=None)
def _exp_table(device_type: str, device_index: int | None) -> torch.Tensor:
    """T[i] = floor(round(2^30 * 2^(-(i mod 1024) / 1024)) / 2^(i // 1024)) for i < 63 * 1024.

    The 1024 fractional powers come from `decimal` (correctly rounded exp and ln: the same digits
    on every platform); the rest are exact shifts of them.
    """
    context = decimal.Context(prec=40)
    ln2 = context.ln(decimal.Decimal(2))
    steps = 1 << EXP_FRACTION_BITS
    fractions = torch.tensor([
        _fixed_from_decimal(context.exp(context.divide(context.multiply(ln2, -i), steps)), context, EXP_ONE_BITS)
        for i in range(steps)], dtype=torch.int64)
    whole = torch.arange(EXP_TABLE_SIZE) >> EXP_FRACTION_BITS
    table = fractions[torch.arange(EXP_TABLE_SIZE) & (steps - 1)] >> whole
    return table.to(torch.device(device_type, device_index) if device_index is not None else device_type)


def exp_table(device: torch.device, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """The table of 2^30 * 2^(-i / 1024) on `device` (see `_exp_table`), for kernels that gather
    from it; its entries are integers below 2^31, so int32 and float64 copies hold them exactly."""
    return _exp_table_as(*_device_key(device), dtype)


@functools.lru_cache(maxsize=None)
def _exp_table_as(device_type: str, device_index: int | None, dtype: torch.dtype) -> torch.Tensor:
    table = _exp_table(device_type, device_index)
    return table if dtype == torch.int64 else table.to(dtype)


def gather(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 1-D table and integer indices in range: index_select on the flattened
    indices (the same entries as advanced indexing, several times faster on the CPU)."""
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def pow2_neg(x: torch.Tensor) -> torch.Tensor:
    """2^30 * 2^(-x / 1024) for int64 x >= 0 from the table (one gather; 0 once x / 1024 > 31).
    Relative error below 2^-10 * ln 2 / 2, from the table's step."""
    return gather(_exp_table(*_device_key(x.device)), x.clamp(max=EXP_TABLE_SIZE - 1))


LOG2E_BITS = 24


def log2e_multiplier(divisor: int = 1) -> int:
    """round(2^24 * log2(e) / sqrt(divisor)), from `decimal`: turns natural-log units into base 2,
    with attention's 1/sqrt(head_dim) folded in."""
    context = decimal.Context(prec=50)
    value = context.divide(1, context.multiply(context.ln(decimal.Decimal(2)), context.sqrt(decimal.Decimal(divisor))))
    return _fixed_from_decimal(value, context, LOG2E_BITS)


LOG2E = log2e_multiplier()  # 24,204,406
_GAP_LIMIT = (1 << 37) - 1  # keeps gap * multiplier (< 2^25) below 2^62


def to_base2(nats: torch.Tensor, fraction_bits: int, multiplier: int = LOG2E) -> torch.Tensor:
    """Non-negative x = nats * 2^-fraction_bits in base-2 exponent units of 2^-10 (x * log2 e,
    or x * log2 e / sqrt(d) with attention's multiplier); clamped at 2^37 - 1 first, far beyond
    where 2^-x is 0."""
    return shift_round(nats.clamp(max=_GAP_LIMIT) * multiplier, LOG2E_BITS + fraction_bits - EXP_FRACTION_BITS)


@functools.lru_cache(maxsize=None)
def _sigmoid_table(device_type: str, device_index: int | None) -> torch.Tensor:
    """S[i] = round(2^60 / (2^30 + E)), E = 2^30 * exp(-i / 4096) from the exp table: sigmoid(i /
    4096) scaled by 2^30, for i in [0, 16 * 4096]. Built by the integer rules of this module."""
    i = torch.arange((1 << (SIGMOID_RANGE_BITS + SIGMOID_FRACTION_BITS)) + 1, dtype=torch.int64)
    e = pow2_neg(to_base2(i, SIGMOID_FRACTION_BITS))
    one = 1 << EXP_ONE_BITS
    table = div_round(torch.full_like(e, one * one), one + e)
    table[-1] = one  # sigmoid at and beyond 16
    return table.to(torch.device(device_type, device_index) if device_index is not None else device_type)


def silu_fixed(x: torch.Tensor, fraction_bits: int) -> torch.Tensor:
    """x * sigmoid(x) in the same fixed point as x (|x| < 2^31), with sigmoid(|x|) from a table in
    steps of 2^-12 and sigmoid(-|x|) = 1 - sigmoid(|x|), rounded once: round(x * s / 2^30) with
    s = sigmoid(x) * 2^30.

    For x < 0, x * (2^30 - p) = x * 2^30 + |x| * p, and x * 2^30 leaves the rounding unchanged, so
    both signs are round(|x| * p / 2^30) + min(x, 0) (|x| * p < 2^61), p the table's sigmoid(|x|).
    """
    return silu_fixed_(x.clone(), fraction_bits)


def silu_fixed_(x: torch.Tensor, fraction_bits: int) -> torch.Tensor:
    """`silu_fixed`, overwriting x (with min(x, 0)) to save a temporary."""
    table = _sigmoid_table(*_device_key(x.device))
    size = x.abs()
    index = shift_round(size, fraction_bits - SIGMOID_FRACTION_BITS).clamp_(max=table.numel() - 1)
    product = gather(table, index).mul_(size)
    product += 1 << (EXP_ONE_BITS - 1)
    product >>= EXP_ONE_BITS
    return product.add_(x.clamp_(max=0))


def reciprocal(total, bits: int):
    """(r, s) with r = floor(2^s / total) of `bits` bits, for positive totals of at most 63 - bits
    bits (2^s must fit in int64; the totals then convert to float64 exactly), so that
    (x * r) >> s ~= x / total with a relative error below 2^(1 - bits) and never above x / total.
    One division per row instead of one per element."""
    xp = _ops(total)
    shift = bit_length_small(total) + (bits - 1)
    return xp.floordiv(xp.pow2(shift), total), shift


def softmax_weights(scores: torch.Tensor, visible: torch.Tensor | None) -> torch.Tensor:
    """Unnormalized softmax weights 2^30 * 2^(score - max) along the last dimension (int64), for
    scores already in base-2 units of 2^-10 (see `to_base2`).

    Entries where `visible` is False get weight 0 and do not enter the max. The max is exact, so
    every weight is a function of its own score and its row's max alone: the same in any batch
    and with any number of masked entries.
    """
    if visible is not None:
        scores = torch.where(visible, scores, torch.full_like(scores, -(1 << 62)))
    return pow2_neg(scores.amax(dim=-1, keepdim=True) - scores)


# --------------------------------------------------------------------------------------------
# Trigonometric tables for rotary embeddings


_TRIG_BITS = 96  # working precision of the table computation (fixed point, Python ints)


def _cos_sin_fixed(angle: int) -> tuple[int, int]:
    """cos and sin of angle * 2^-96 (|angle| <= 2^96, i.e. at most 1 radian) by Taylor series in
    integers; the truncation error is below 2^-90."""
    one = 1 << _TRIG_BITS
    cos_sum, sin_sum = one, 0
    term = one  # angle^n / n!, fixed point
    n = 0
    while True:
        n += 1
        term = term * angle // one // n
        if term == 0:
            break
        if n % 4 == 1:
            sin_sum += term
        elif n % 4 == 2:
            cos_sum -= term
        elif n % 4 == 3:
            sin_sum -= term
        else:
            cos_sum += term
    return cos_sum, sin_sum


@functools.lru_cache(maxsize=8)
def rotary_tables(positions: int, head_dim: int, theta: str, position_scale: str, fraction_bits: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """round(2^fraction_bits * cos(p * f_i)) and sin, shaped (positions, head_dim) in the layout
    Llama uses (the half-dimension table repeated), as int64.

    f_i = theta^(-2i / head_dim) / position_scale comes from `decimal` (correctly rounded exp and
    ln, the same digits everywhere); angles p * f_i are then advanced by exact integer complex
    multiplication at 96-bit precision, whose error over 2^20 positions stays below 2^-70.
    `theta` and `position_scale` are decimal strings so the cache key is exact.
    """
    context = decimal.Context(prec=50)
    half = head_dim // 2
    ln_theta = context.ln(decimal.Decimal(theta))
    scale = decimal.Decimal(position_scale)
    cos_table = torch.empty((positions, half), dtype=torch.int64)
    sin_table = torch.empty((positions, half), dtype=torch.int64)
    one = 1 << _TRIG_BITS
    out_shift = _TRIG_BITS - fraction_bits
    for i in range(half):
        frequency = context.divide(context.exp(context.divide(context.multiply(ln_theta, -2 * i), head_dim)), scale)
        step_cos, step_sin = _cos_sin_fixed(_fixed_from_decimal(frequency, context, _TRIG_BITS))
        c, s = one, 0
        column_cos, column_sin = [], []
        for _ in range(positions):
            column_cos.append((c + (1 << (out_shift - 1))) >> out_shift)
            column_sin.append((s + (1 << (out_shift - 1))) >> out_shift)
            c, s = (c * step_cos - s * step_sin) >> _TRIG_BITS, (s * step_cos + c * step_sin) >> _TRIG_BITS
        cos_table[:, i] = torch.tensor(column_cos, dtype=torch.int64)
        sin_table[:, i] = torch.tensor(column_sin, dtype=torch.int64)
    return torch.cat([cos_table, cos_table], dim=1), torch.cat([sin_table, sin_table], dim=1)
