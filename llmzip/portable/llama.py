"""A Llama-architecture forward in exact integer arithmetic: the same logits on every machine.

What each value is (int64 tensors unless said, "fixed point F" meaning real = integer * 2^-F):
- the residual stream, projections' outputs, q, k, v: fixed point 16 (`FRACTION`);
- inputs of every linear layer: 16-bit integers per row with a per-row scale (`Scale`, a dyadic
  number), multiplied as two int8 halves (`ACTIVATION_LEVELS` says why 16 bits);
- weights: int8 per output channel with a per-channel scale, requantized from the float32
  weights by exact operations (`Linear.from_float`);
- attention weights: softmax numerators 2^30 * 2^-x from a table, normalized to about 2^20;
- the SiLU's sigmoid: a table in steps of 2^-12; RMSNorm's 1/rms: an exact integer square root;
- rotary cos/sin: tables computed in Python's integers and `decimal` (`arith.rotary_tables`);
- logits: fixed point 16, in bits (log2(e) is folded into the output layer's scales).

Why the result is the same on any CPU or GPU, for any batch and for prefill as for stepping:
1. Every operation is an integer operation whose result is defined by its operands alone (add,
   multiply, shift, floor division, comparison, max, gather), or a float matrix product whose
   operands and partial sums are integers within float's exact range (`arith.int_matmul`,
   the float64 products of attention), or an elementary IEEE float operation whose exact result
   is representable, which IEEE arithmetic then returns exactly: int64 to float64 and back for
   values below 2^53, scaling by a power of two, adding 1/2, floor and ceil, frexp (the bit
   lengths and `arith.normalize_small`), max, sums of integers whose every partial sum stays
   below 2^53 (attention's weights), an IEEE division of integers below 2^53 (correctly rounded
   everywhere; weight requantization only), or a float first guess that integer steps correct
   (`arith.isqrt`). None of these depends on summation order, vector width, thread count or
   fused multiply-adds. The few per-row numbers of each step (scales, shifts) are computed in
   numpy on the CPU and in torch elsewhere: the same int64 and float64 operations.
2. Every operation works row by row (per token), except attention, which reads the rows of the
   keys and values of the positions it may see: a token's numbers depend on its own row and the
   earlier tokens of its window, never on which other windows or positions share the call. A
   masked position contributes an exact 0 and does not enter the row's max.
3. So stepping one token over a KV cache computes, for that token, exactly the operations a
   full-sequence forward computes for it, on the same integers.
4. Where a value is computed in more than one way for speed (16-bit halves summed in int32 where
   a measured bound allows it or else in int64, a float64 or float32 KV cache, attention in
   query blocks, the output layer and the quantizer a block of rows at a time, a decoding step
   of a few windows on the CPU in numpy, `host`, the element-wise chains as fused numba loops on
   the CPU, `fused`, the linear layers and the quantizer as Triton kernels on GPUs, whose int8
   `tl.dot` sums in int32 exactly), every way is exact, so each gives
   the same integers (tests/test_portable.py and tests/test_kernels.py compare them).
Bounds that keep every int64 and every float product exact are stated where they are relied on.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import torch

from ..errors import UnsupportedParameterError
from . import arith, fused, host

FRACTION = 16  # fixed-point bits of activations and logits
ROTARY_BITS = 16  # fixed-point bits of the cos/sin tables
ATTENTION_BITS = 20  # attention weights are normalized to sum to about 2^20
_RECIPROCAL_BITS = 18  # bits of the reciprocal of a row's total weight (`arith.reciprocal`)
MANTISSA_BITS = 12  # significant bits of a per-row or per-channel scale
INT8_LEVELS = 127
INT16_LEVELS = arith.INT16_LEVELS  # 16-bit activations, multiplied as two int8 halves
# Levels of each linear layer's input. Measured with the default model on 1,022 tokens of
# alice29.txt (float32 engine: 1.2044 bits/byte): int8 everywhere 1.2219 (+1.5%), 16 bits into
# down_proj 1.2151, and the output layer too 1.2126, 16 bits everywhere 1.2069 (+0.2%), for
# twice the integer products' time.
ACTIVATION_LEVELS = {"qkv": INT16_LEVELS, "o": INT16_LEVELS, "gate_up": INT16_LEVELS, "down": INT16_LEVELS,
                     "lm_head": INT16_LEVELS}
QUERY_BLOCK = 64  # queries per attention block in a full-sequence forward (64: least work on this CPU)
_QK_LIMIT = (1 << 22) - 1  # |q|, |k|, |v| clamp: q.k over head_dim <= 256 stays below 2^52
_ACTIVATION_LIMIT = (1 << 40) - 1  # residual stream clamp (real values below 2^24)
_MLP_LIMIT = (1 << 31) - 1  # gate and up clamp (real values below 2^15): silu * up < 2^62

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
_ROPE_TYPES = ("default", "linear")


HOST_SCALARS = True  # per-row numbers in numpy on the CPU (see `arith`'s rounding functions)
FUSED = True  # element-wise chains as fused loops on the CPU where numba is installed (`fused`)


def fused_on_cpu() -> bool:
    """Whether element-wise chains on the CPU run as `fused` loops (with per-row numbers in numpy,
    where numba is installed). The same integers either way."""
    if FUSED and HOST_SCALARS and fused.available():
        fused.threads()
        return True
    return False


def _fused(t: torch.Tensor) -> bool:
    """`fused_on_cpu`, for a tensor's chain."""
    return t.device.type == "cpu" and fused_on_cpu()


def _host(t: torch.Tensor):
    """A per-row quantity where the scalar arithmetic runs: numpy on the CPU (sharing memory), the
    tensor itself elsewhere. Either way the same int64 values."""
    return t.numpy() if HOST_SCALARS and t.device.type == "cpu" else t


def linear_by_kernel(device: torch.device) -> bool:
    """Whether linear layers run as one Triton kernel (`llmzip.kernels.integer_linear`): on GPUs,
    where it replaces an int8 GEMM, the halves' recombination and five element-wise passes. It
    computes the same integers as the torch path (the tests force it on the CPU under Triton's
    interpreter)."""
    return device.type == "cuda"


def _tensor(a, device: torch.device) -> torch.Tensor:
    """A per-row quantity back as a tensor, for the element-wise operations on the rows."""
    return torch.from_numpy(a) if isinstance(a, np.ndarray) else a  # numpy only on the CPU


def _columns(*per_row) -> tuple[torch.Tensor, ...]:
    """Per-row int64 quantities of one shape (R,) as (R, 1) tensors, to broadcast along the rows;
    from numpy in one conversion."""
    if isinstance(per_row[0], np.ndarray):
        return torch.from_numpy(np.array(per_row)[..., None]).unbind(0)
    return tuple(a[:, None] for a in per_row)


class Scale(NamedTuple):
    """A positive dyadic number mantissa * 2^exponent per row (or channel), as int64 arrays:
    numpy on the CPU, tensors elsewhere (`_host`)."""

    mantissa: torch.Tensor
    exponent: torch.Tensor

    def times(self, other: "Scale") -> "Scale":
        # Mantissas have at most 13 bits, so the product (below 2^26) is exact in float64.
        mantissa, shift = arith.normalize_small(self.mantissa * other.mantissa, MANTISSA_BITS)
        return Scale(mantissa, self.exponent + other.exponent + shift)


class Activations(NamedTuple):
    """A linear layer's input: the integer rows of `quantize_rows` flattened to (R, K) as int8, or
    for 16-bit levels as their int8 halves stacked (2R, K) (`arith.split_int16`); the leading
    shape of the R rows; and each row's scale, flattened to (R,)."""

    rows: torch.Tensor
    halves: bool
    shape: tuple[int, ...]
    scale: Scale


def join_rows(parts: list[Activations]) -> Activations:
    """Flat layer inputs one after another, as one flat input (int8 halves stay stacked high
    rows first)."""
    counts = [p.scale.mantissa.shape[0] for p in parts]
    if parts[0].halves:
        rows = torch.cat([p.rows[:n] for p, n in zip(parts, counts)] + [p.rows[n:] for p, n in zip(parts, counts)])
    else:
        rows = torch.cat([p.rows for p in parts])
    cat = np.concatenate if isinstance(parts[0].scale.mantissa, np.ndarray) else torch.cat
    return Activations(rows, parts[0].halves, (sum(counts),), Scale(cat([p.scale.mantissa for p in parts]),
                                                                     cat([p.scale.exponent for p in parts])))


def quantize_rows(values: torch.Tensor, fraction: int, levels: int = INT8_LEVELS,
                  weight: torch.Tensor | None = None, amax: np.ndarray | None = None) -> Activations:
    """Integers in [-levels, levels] per row (int8 for 127 levels, 16-bit up to 32,639) of
    `values` (times `weight` along the rows, if given), and each row's scale. `values` (a
    temporary of the caller's) may be overwritten. `amax`: the rows' largest magnitudes, if the
    caller has them.

    Rows are first shifted down to at most 46 - log2(levels + 1) bits (far beyond the result's
    precision). Then q = round(v * r / 2^s) with r = floor(levels * 2^s / max|v|) and
    s = bit_length(max|v|) + 16: one division per row, not per element, and |q| <= levels because
    r * max|v| <= levels * 2^s. One step of q is 2^s / r units of v, kept as a dyadic scale.
    (With m = max|v| and k = 46 - log2(levels + 1): the shift max(bit_length(max(m, 1)) - k, 0)
    is bit_length(m >> k), and max(m, 1) >> shift is max(m >> shift, 1).)
    """
    shape = values.shape[:-1]
    values = values.reshape(-1, values.shape[-1])
    if _fused(values):
        rows, halves, scale = quantize_rows_fused(values.numpy(), fraction, levels,
                                                  None if weight is None else weight.numpy(), amax)
        return Activations(rows, halves, shape, scale)
    if weight is not None:
        values = values * weight
    down, r, shift, scale = row_scales(_host(largest_magnitudes(values)) if amax is None else amax, fraction, levels)
    # q = round((v >> down) * r / 2^s): below levels * 2^s < 2^62.
    down, r, half, shift = _columns(down, r, arith.half_of(shift), shift)
    values >>= down  # in place: every caller hands over a fresh tensor
    q = values.mul_(r).add_(half)
    q >>= shift
    if levels <= INT8_LEVELS:
        return Activations(q.to(torch.int8), False, shape, scale)
    return Activations(arith.split_int16(q), True, shape, scale)


_NO_WEIGHT = np.zeros(1, dtype=np.int64)  # what a fused loop reads for an absent weight or bias
_NO_MASK = np.zeros((1, 1), dtype=np.bool_)  # ... or an absent attention mask


def quantize_rows_fused(rows: np.ndarray, fraction: int, levels: int, weight: np.ndarray | None = None,
                        amax: np.ndarray | None = None,
                        whole: bool = False) -> tuple[torch.Tensor | np.ndarray, bool, Scale]:
    """`quantize_rows` of (R, K) int64 rows (numpy, on the CPU) in one fused loop, the largest
    magnitudes (unless given), `row_scales` and the integers: the int8 rows (halves stacked for 16
    bits), whether they are halves, and the rows' Scale as arrays; or (`whole`, for
    `linear_rows_fused`) the 16-bit rows themselves as an int16 array. The decoding step (`host`)
    calls it too."""
    out, halves, scale = _quantized_rows(*rows.shape, levels, whole)
    fused.kernels().quantize_rows(rows, _NO_WEIGHT if weight is None else weight, weight is not None,
                                  _NO_WEIGHT if amax is None else amax, amax is not None, fraction, levels,
                                  46 - levels.bit_length(), MANTISSA_BITS, halves, out, *scale)
    return (out if whole else torch.from_numpy(out)), halves, scale


def rescale_fused(products: np.ndarray, halves: bool, column_mantissa: np.ndarray, row_mantissa: np.ndarray,
                  shift: np.ndarray, bias: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """`Linear.__call__` after its int8 product, in one fused loop into `out` (R, N) int64."""
    fused.kernels().rescale(products, halves, column_mantissa, row_mantissa, arith.half_of(shift), shift,
                            _NO_WEIGHT if bias is None else bias, bias is not None, out)
    return out


def norm_rows_fused(rows: np.ndarray, weight: np.ndarray, eps_units: np.ndarray, weight_scale: Scale,
                    levels: int, whole: bool = False) -> tuple[torch.Tensor | np.ndarray, bool, Scale]:
    """`RMSNorm.__call__` of (R, D) int64 rows (numpy, on the CPU) in one fused loop: the shifts
    s = bit_length(max|h| >> square_bits) and sums of (h >> s)^2, the rows of h * g quantized
    (as `quantize_rows_fused` with `whole`), and their scales times the inverse root and g's scale.
    The decoding step (`host`) calls it too."""
    quantized, halves, out = _quantized_rows(*rows.shape, levels, whole)
    fused.kernels().norm_rows(rows, weight, eps_units, (60 - (rows.shape[1] - 1).bit_length()) // 2, FRACTION, levels,
                              46 - levels.bit_length(), MANTISSA_BITS, int(weight_scale.mantissa[0]),
                              int(weight_scale.exponent[0]), halves, quantized, *out)
    return (quantized if whole else torch.from_numpy(quantized)), halves, out


def _quantized_rows(count: int, columns: int, levels: int, whole: bool) -> tuple[np.ndarray, bool, Scale]:
    """Room for a fused loop's quantized rows (int8, halves stacked for 16 bits; or `whole` int16
    rows), whether they are halves, and room for their Scale."""
    halves = levels > INT8_LEVELS and not whole
    rows = np.empty(((2 if halves else 1) * count, columns), dtype=np.int16 if whole else np.int8)
    return rows, halves, Scale(np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64))


DOT_TERMS = 256  # terms per int32 partial sum in `linear_rows_fused`: INT16_LEVELS * 127 * 256 < 2^31
assert INT16_LEVELS * 127 * DOT_TERMS < 1 << 31


class HostLinear(NamedTuple):
    """A Linear's numbers as numpy arrays for `linear_rows_fused` (shared memory, made once)."""
    weights: np.ndarray  # (out, in) int8 rows: contiguous in the CPU's layout (`arith.stored_weights`)
    column_mantissa: np.ndarray
    shift_offset: int  # -(exponent + FRACTION): a row's shift is this minus its scale's exponent
    bias: np.ndarray | None

    @classmethod
    def of(cls, linear: "Linear") -> "HostLinear":
        return cls(linear.weight_t.t().numpy(), linear.mantissa.numpy(), -(linear.exponent + FRACTION),
                   None if linear.bias is None else linear.bias.numpy())


def linear_rows_fused(linear: HostLinear, x: np.ndarray, scale: Scale, out: np.ndarray) -> np.ndarray:
    """`Linear.__call__` of a few (R, K) int16 rows (numpy, on the CPU; `quantize_rows_fused`'s
    `whole` rows) in one fused loop into `out` (R, N) int64: the exact products x . w with each
    output's weights read once for all rows, not as two int8 halves through torch._int_mm (whose
    products of two rows read the weights at two thirds of the speed of this loop's). The same
    integers. The decoding step (`host`) calls it."""
    fused.kernels().linear_rows(x, linear.weights, DOT_TERMS, linear.column_mantissa, linear.shift_offset,
                                scale.mantissa, scale.exponent, _NO_WEIGHT if linear.bias is None else linear.bias,
                                linear.bias is not None, out)
    return out


def silu_product_fused(gate_up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SiLU(gate) * up for (R, 2N) int64 rows of gate and up (numpy, on the CPU), each clamped to
    +-_MLP_LIMIT as `PortableLlama._mlp_middle` does, in one fused loop; and each row's largest
    magnitude. The decoding step (`host`) calls it too."""
    table = arith._sigmoid_table("cpu", None).numpy()
    index_shift = FRACTION - arith.SIGMOID_FRACTION_BITS  # arith.silu_fixed_'s rounding shift (>= 1 here)
    return fused.kernels().silu_product(gate_up, _MLP_LIMIT, table, index_shift, table.shape[0] - 1, arith.EXP_ONE_BITS)


def largest_magnitudes(values: torch.Tensor) -> torch.Tensor:
    """max |v| along the last dimension of int64 values (above -2^63), from one min-max pass: no
    temporary of |v|."""
    low, high = torch.aminmax(values, dim=-1)
    return torch.maximum(high, low.neg_())


def row_scales(amax, fraction: int, levels: int):
    """For rows whose largest magnitudes are `amax` (int64, a tensor or a numpy array), what
    `quantize_rows` needs per row: the shift down, the multiplier r, the shift s and the Scale.
    One definition for the torch forward and the numpy step (`host`), so both give the same integers."""
    xp = arith._ops(amax)
    down = arith.bit_length_small(amax >> (46 - levels.bit_length()))
    amax = xp.at_least(amax >> down, 1)
    shift = arith.bit_length_small(amax) + 16
    r = xp.floordiv(levels << shift, amax)
    mantissa, extra = arith.normalize_small(arith.div_round(1 << 55, r), MANTISSA_BITS)
    return down, r, shift, Scale(mantissa, extra + shift - 55 + down - fraction)


def _fixed(tensor: torch.Tensor, fraction: int) -> torch.Tensor:
    """round(t * 2^fraction) (halves to even) of a float tensor, as int64. Scaling a float32 by a
    power of two is exact, so is rounding a representable value: no rounding error anywhere."""
    return torch.round(tensor.detach().to("cpu", torch.float32) * float(1 << fraction)).long()


_HEAD_ROWS = 64  # rows per output-layer block: its (2 x 64) x 49,152 int32 products and 64 x 49,152 int32
                 # sums stay below glibc's 32 MiB mmap threshold, so blocks reuse memory instead of page-faulting
_HEAD_ROWS_GPU = 1024  # on a GPU, fewer and larger launches (1024 x 49,152 int64 logits: 400 MB)


def head_rows(device: torch.device) -> int:
    """Rows per block of the output layer and the quantizer (each row is computed alone, so the
    block size changes no number)."""
    return _HEAD_ROWS if device.type == "cpu" else _HEAD_ROWS_GPU


def _int32_sum_fits(high: torch.Tensor, terms: int) -> bool:
    """Whether 256 hi + lo fits int32 for these int32 products of the high halves (CPU only, where
    the check costs one read of `high` and no device sync). The low halves' products are at most
    128 * 127 * K in size whatever the data; the high halves' are measured."""
    if high.dtype != torch.int32 or high.device.type != "cpu" or high.numel() < (1 << 16):
        return False  # (small products: the int64 sum costs no more than the check)
    low, top = torch.aminmax(high)
    return 256 * max(-int(low), int(top)) <= (1 << 31) - 1 - 128 * 127 * terms


@dataclass
class Linear:
    """int8 weights (transposed) and per-channel scales mantissa * 2^exponent with one exponent for
    the matrix (so the rescaling shift is per row)."""

    weight_t: torch.Tensor  # (in, out), int8
    mantissa: torch.Tensor  # (out,), at most 16 bits
    exponent: int
    bias: torch.Tensor | None  # fixed point FRACTION
    _weight_float: torch.Tensor | None = None

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None, device: torch.device,
                   base2: bool = False) -> "Linear":
        """Requantize in integers: w = round(W * 2^40), then round(127 w / max|w|) per row; a
        channel's scale is max|w| / 127, to 16 bits for the largest channel of the matrix.
        `base2` folds log2(e) into the scales, so the outputs (logits) come out in bits."""
        fixed = _fixed(weight, 40)
        amax = fixed.abs().amax(dim=1).clamp(min=1)
        # round(127 w / max|w|), halves to even: 127 w and max|w| are integers below 2^53, so both
        # convert to float64 exactly, and IEEE division is correctly rounded on every machine.
        q = torch.round((fixed * 127).double() / amax[:, None].double()).long()
        shift = int(arith.bit_length(amax.max().reshape(1))) - 7 - MANTISSA_BITS  # amax / 127 < 2^12 * 2^shift
        mantissa = arith.div_round(amax, 127 << shift) if shift >= 0 else arith.div_round(amax << -shift, 127)
        if base2:  # about 1.44 * 2^12 at most
            mantissa = arith.div_round(mantissa * arith.LOG2E, 1 << arith.LOG2E_BITS)
        return cls(arith.stored_weights(q.to(device, torch.int8)), mantissa.to(device), shift - 40,
                   None if bias is None else _fixed(bias, FRACTION).to(device))

    def weight_float(self) -> torch.Tensor:
        """The weights as float32, made on first use: only where torch._int_mm cannot be trusted."""
        if self._weight_float is None:
            self._weight_float = self.weight_t.float()
        return self._weight_float

    def __call__(self, x: Activations, out: torch.Tensor | None = None) -> torch.Tensor:
        """x @ W^T in fixed point FRACTION, rounded: acc * row scale * column mantissa *
        2^exponent with acc = x @ W^T exact (for 16-bit rows 256 hi + lo, from the halves'
        products). |acc| < 2^33 (16-bit activations, int8 weights, K <= 2048) and 12-bit
        mantissas (13 with log2 e folded in) keep the product below 2^59; the shift is per row
        only. `out` (R, N) int64 receives the result if given."""
        shift = arith._ops(x.scale.exponent).clip(-(self.exponent + FRACTION) - x.scale.exponent, 0, 62)
        if linear_by_kernel(self.weight_t.device):
            from ..kernels import integer_linear

            y = integer_linear.linear(x.rows, x.halves, self.weight_t, self.mantissa,
                                      *(_tensor(a, x.rows.device) for a in (x.scale.mantissa, arith.half_of(shift), shift)),
                                      self.bias, out)
            return y.view(*x.shape, y.shape[-1])
        acc = arith.int8_products(x.rows, self.weight_t, self.weight_float)
        count = x.scale.mantissa.shape[0]
        if _fused(acc):
            y = torch.empty((count, acc.shape[1]), dtype=torch.int64) if out is None else out
            rescale_fused(acc.numpy(), x.halves, self.mantissa.numpy(), x.scale.mantissa, shift,
                          None if self.bias is None else self.bias.numpy(), y.numpy())
            return y.view(*x.shape, y.shape[-1])
        if x.halves and _int32_sum_fits(acc[:count], self.weight_t.shape[0]):
            acc = torch.add(acc[count:], acc[:count], alpha=256, out=acc[count:])  # int32, exact: see _int32_sum_fits
        elif x.halves:
            wide = acc.long()  # one conversion: mixed int32/int64 operations would convert twice
            acc = torch.add(wide[count:], wide[:count], alpha=256)
        y = acc.long() if out is None else out.copy_(acc)
        mantissa, half, shift = _columns(x.scale.mantissa, arith.half_of(shift), shift)
        y.mul_(self.mantissa).mul_(mantissa).add_(half)
        y >>= shift
        if self.bias is not None:
            y += self.bias
        return y.view(*x.shape, y.shape[-1])

    def blocked(self, x: Activations, block: int = _HEAD_ROWS) -> torch.Tensor:
        """`__call__` a block of rows at a time into one output (every row is computed alone)."""
        count = x.scale.mantissa.shape[0]
        if count <= block:
            return self(x)
        out = torch.empty((count, self.weight_t.shape[1]), dtype=torch.int64, device=self.weight_t.device)
        for first in range(0, count, block):
            last = min(count, first + block)
            self(self.rows(x, first, last), out=out[first:last])
        return out.view(*x.shape, out.shape[-1])

    @staticmethod
    def take(x: Activations, index: torch.Tensor) -> Activations:
        """The rows `index` (int64, on the CPU) of a flat layer input, as a flat input of their own."""
        count = x.scale.mantissa.shape[0]
        device_index = index.to(x.rows.device)
        rows = torch.cat([x.rows[device_index], x.rows[device_index + count]]) if x.halves else x.rows[device_index]
        scale_index = index.numpy() if isinstance(x.scale.mantissa, np.ndarray) else device_index
        return Activations(rows, x.halves, (index.numel(),), Scale(x.scale.mantissa[scale_index], x.scale.exponent[scale_index]))

    @staticmethod
    def rows(x: Activations, first: int, last: int) -> Activations:
        """Rows first to last of a layer input, as a flat input of their own."""
        count = x.scale.mantissa.shape[0]
        rows = torch.cat([x.rows[first:last], x.rows[count + first : count + last]]) if x.halves else x.rows[first:last]
        return Activations(rows, x.halves, (last - first,), Scale(x.scale.mantissa[first:last], x.scale.exponent[first:last]))


@dataclass
class RMSNorm:
    """RMSNorm folded into the next layer's input quantization.

    Quantizing a row to int8 by its own max is scale-invariant, so the normalized row
    h * g / rms(h) quantizes to the same integers as h * g; the 1/rms factor only enters the
    row's scale, computed with an exact integer square root.
    """

    weight: torch.Tensor  # round(g / max|g| * 2^20)
    weight_scale: Scale  # g = weight * weight_scale
    eps_units: torch.Tensor  # round(D * eps * 4^(FRACTION - s)) for each square-sum shift s
    dim: int

    @classmethod
    def from_float(cls, weight: torch.Tensor, eps: float, device: torch.device) -> "RMSNorm":
        fixed = _fixed(weight, 40)
        amax = fixed.abs().amax().clamp(min=1)
        q = arith.div_round(fixed * (1 << 20), amax)
        mantissa, shift = arith.normalize(amax.reshape(1), MANTISSA_BITS)
        dim = weight.numel()
        eps_exact = Fraction(eps)
        eps_units = [round(dim * eps_exact * Fraction(4) ** (FRACTION - s)) for s in range(64)]
        return cls(q.to(device), Scale(mantissa.to(device), (shift - 40 - 20).to(device)),
                   torch.tensor(eps_units, dtype=torch.int64, device=device), dim)

    def __call__(self, h: torch.Tensor, levels: int) -> Activations:
        """Integer rows (see `quantize_rows`) of norm(h) * g and their scales, for h in fixed point
        FRACTION (|h| < 2^41)."""
        if _fused(h):  # the lines below in fused loops
            rows, halves, scale = norm_rows_fused(h.reshape(-1, self.dim).numpy(), self.weight.numpy(), self._eps_host,
                                                  self._weight_scale_host, levels)
            return Activations(rows, halves, h.shape[:-1], scale)
        # Sum of squares on h >> s, s chosen so each square and the row's sum stay below 2^61:
        # s = max(bit_length(max|h|) - square_bits, 0) = bit_length(max|h| >> square_bits).
        square_bits = (60 - (self.dim - 1).bit_length()) // 2
        s = arith.bit_length_small(_host(largest_magnitudes(h)) >> square_bits)
        hs = h >> _tensor(s, h.device)[..., None]
        squares = _host((hs * hs).sum(dim=-1))
        eps_units = self._eps_host if isinstance(squares, np.ndarray) else self.eps_units
        total = squares + eps_units[s]  # = D * (mean(h^2) + eps) / 4^s, in h's units
        # inv_rms = 2^(FRACTION - s) * sqrt(D / total), as a dyadic number: total ~= m * 2^e with
        # e even, so sqrt(total / D) = sqrt(m * 2^20 / D) * 2^((e - 20) / 2).
        m, e = arith.normalize(total, 40)
        odd = e & 1
        m, e = m << odd, e - odd
        root = arith.isqrt(arith.div_round(m << 20, self.dim))  # about 2^25 / sqrt(D) * 2^5
        inv = Scale(*arith.normalize_small(arith.div_round(1 << 60, root), MANTISSA_BITS))
        inv = Scale(inv.mantissa.reshape(-1), (inv.exponent - 60 - ((e - 20) >> 1) + FRACTION - s).reshape(-1))
        # Rows of h * g (|h| < 2^41 and |g| <= 2^20: below 2^61); real h * g = u * 2^-FRACTION * weight_scale.
        x = quantize_rows(h, FRACTION, levels, weight=self.weight)
        weight_scale = self._weight_scale_host if isinstance(squares, np.ndarray) else self.weight_scale
        return x._replace(scale=x.scale.times(inv).times(weight_scale))

    @property
    def _eps_host(self) -> np.ndarray:
        return self.eps_units.cpu().numpy()

    @property
    def _weight_scale_host(self) -> Scale:
        return Scale(self.weight_scale.mantissa.cpu().numpy(), self.weight_scale.exponent.cpu().numpy())


def _table_softmax(scores: torch.Tensor, hidden: torch.Tensor | None, start: int, table: torch.Tensor) -> torch.Tensor:
    """Attention's weights p (float64 integers, about 2^ATTENTION_BITS per row in total) from
    base-2 scores (..., queries, keys), overwriting them; keys from `start` on are hidden where
    `hidden` (queries, keys - start) says so. `PortableLlama._attend` proves each step exact."""
    if hidden is not None:  # weight 0, not in the max; causally only the block's own positions
        scores[..., start:].masked_fill_(hidden, float("-inf"))
    top = torch.floor_(scores.amax(dim=-1, keepdim=True).add_(0.5)).sub_(0.5)
    gaps = torch.ceil_(torch.sub(top, scores, out=scores)).clamp_(max=arith.EXP_TABLE_SIZE - 1)
    weights = arith.gather(table, gaps.int())
    total = _host(weights.sum(dim=-1, keepdim=True))
    xp = arith._ops(total)
    r, shift = arith.reciprocal(xp.i64(total), _RECIPROCAL_BITS)
    factor = _tensor(xp.f64(r) * arith.pow2_float(ATTENTION_BITS - shift), scores.device)  # r * 2^-k, exact
    return torch.floor_(weights.mul_(factor).add_(0.5))


def _table_softmax_fused(scores: torch.Tensor, hidden: torch.Tensor | None, start: int) -> torch.Tensor:
    """`_table_softmax` as one fused loop: the same weights."""
    keys = scores.shape[-1]
    p = table_softmax_fused(scores.view(-1, keys).numpy(), scores.shape[-2], None if hidden is None else hidden.numpy(), start)
    return torch.from_numpy(p).view(scores.shape)


def table_softmax_fused(scores: np.ndarray, queries: int, hidden: np.ndarray | None = None, start: int = 0) -> np.ndarray:
    """`_table_softmax` of (rows, keys) float64 scores whose rows are (head, query) pairs, query =
    row % queries (`fused.table_softmax`); the decoding step (`host`) calls it too."""
    p = np.empty_like(scores)
    fused.kernels().table_softmax(scores, queries, _NO_MASK if hidden is None else hidden, start, hidden is not None,
                                  arith.exp_table(torch.device("cpu")).numpy(), _RECIPROCAL_BITS, ATTENTION_BITS, p)
    return p


_KV_FLOAT64_BYTES = 1 << 30  # a CPU cache up to this size holds float64: attention reads it as is


class KVCache:
    """Keys and values of `rows` windows, up to `context` positions. They are integers below 2^22,
    held as float32 (exact below 2^24) and converted to float64 where read; except on the CPU
    without the fused loops, where numpy's step attention would convert the whole cache at every
    step: there as float64 when the cache takes at most 1 GiB that way. (The fused step reads
    float32 as it goes: half the memory traffic, which is what a long context's step costs.)
    Either holds the same integers."""

    def __init__(self, layers: int, rows: int, kv_heads: int, context: int, head_dim: int, device: torch.device):
        shape = (layers, rows, kv_heads, context, head_dim)
        wide = (torch.device(device).type == "cpu" and not (FUSED and HOST_SCALARS and fused.available())
                and 2 * 8 * layers * rows * kv_heads * context * head_dim <= _KV_FLOAT64_BYTES)
        dtype = torch.float64 if wide else torch.float32
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0
        self.context = context


def portable_problem(config) -> str | None:
    """Why the portable engine cannot run a model with this config exactly (None: it can)."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_TYPES:
        return f"the portable engine runs Llama-type models ({', '.join(SUPPORTED_TYPES)}), not {model_type!r}"
    if getattr(config, "mlp_bias", False):
        return "the portable engine does not implement MLP biases"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"the portable engine implements SiLU, not {config.hidden_act!r}"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in _ROPE_TYPES:
        return f"the portable engine does not implement {rope_type!r} rotary embeddings"
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim > 256 or head_dim % 2:
        return f"the portable engine supports even head sizes up to 256, not {head_dim}"
    return None


def _rope_settings(config) -> tuple[str, str]:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    theta = (rope.get("rope_theta") if isinstance(rope, dict) else None) or getattr(config, "rope_theta", 10000.0)
    factor = rope.get("factor", 1.0) if isinstance(rope, dict) and rope.get("rope_type", rope.get("type")) == "linear" else 1.0
    return repr(float(theta)), repr(float(factor))


class PortableLlama:
    """The integer model: built once from a float transformers model, then `forward` as needed."""

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "cpu"):
        config = model.config
        problem = portable_problem(config)
        if problem:
            raise UnsupportedParameterError(problem)
        self.device = torch.device(device)
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.max_positions = int(getattr(config, "max_position_embeddings", 1 << 20))
        sliding = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
        self.sliding_window = int(sliding) if sliding else None
        eps = float(config.rms_norm_eps)
        inner = model.model
        self.embed = _fixed(inner.embed_tokens.weight, FRACTION).to(self.device, torch.int32)  # |e| < 2^15
        self.layers = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            biases = [getattr(attn, name).bias for name in ("q_proj", "k_proj", "v_proj")]
            qkv_bias = None if all(b is None for b in biases) else torch.cat([
                b if b is not None else torch.zeros(getattr(attn, n).weight.shape[0])
                for b, n in zip(biases, ("q_proj", "k_proj", "v_proj"))])
            self.layers.append((
                RMSNorm.from_float(layer.input_layernorm.weight, eps, self.device),
                Linear.from_float(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
                                  qkv_bias, self.device),
                Linear.from_float(attn.o_proj.weight, getattr(attn.o_proj, "bias", None), self.device),
                RMSNorm.from_float(layer.post_attention_layernorm.weight, eps, self.device),
                Linear.from_float(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), None, self.device),
                Linear.from_float(mlp.down_proj.weight, None, self.device),
            ))
        self.final_norm = RMSNorm.from_float(inner.norm.weight, eps, self.device)
        self.lm_head = Linear.from_float(model.get_output_embeddings().weight, None, self.device, base2=True)
        self.theta, self.position_scale = _rope_settings(config)
        self.score_multiplier = arith.log2e_multiplier(self.head_dim)
        self._rotary: tuple[torch.Tensor, torch.Tensor] | None = None
        # Probe the int8 product once per matrix shape now, with the build, not in the first call.
        linears = [self.lm_head] + [m for layer in self.layers for m in layer if isinstance(m, Linear)]
        for terms, columns in {tuple(m.weight_t.shape) for m in linears}:
            arith.int_mm_is_exact(self.device.type, self.device.index, terms, columns)
        if self.device.type == "cpu" and fused.available():
            fused.kernels()  # compiled (or loaded from the disk cache) with the build, not in the first call

    def new_cache(self, rows: int, context: int) -> KVCache:
        return KVCache(len(self.layers), rows, self.kv_heads, context, self.head_dim, self.device)

    def _rotary_tables(self, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables; sin with its first half negated, so that a rotation is
        x * cos + roll(x, half) * sin (Llama's rotate_half is (-x2, x1) = roll(x, half) with the
        first half negated). They grow by doubling: a decoder asks for one more position at each
        step, and a table is computed from position 0 on (row p is the same in any size)."""
        held = 0 if self._rotary is None else self._rotary[0].shape[0]
        if held < positions:
            size = max(positions, min(max(512, 2 * held), self.max_positions))
            cos, sin = arith.rotary_tables(size, self.head_dim, self.theta, self.position_scale, ROTARY_BITS)
            half = self.head_dim // 2
            sin = torch.cat([-sin[:, :half], sin[:, half:]], dim=1)
            self._rotary = (cos.to(self.device), sin.to(self.device))
        return self._rotary

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
        """Rotary embedding of x (..., T, heads, dim) with tables (T, dim): x * cos + rotate_half(x)
        * sin, rounded to the activations' fixed point and clamped."""
        half = x.shape[-1] // 2
        rotated = torch.roll(x, half, dims=-1).mul_(signed_sin[:, None]).addcmul_(x, cos[:, None])
        rotated += 1 << (ROTARY_BITS - 1)
        rotated >>= ROTARY_BITS  # round(x * cos + rotate_half(x) * sin) / 2^16, halves up
        return rotated.clamp_(-_QK_LIMIT, _QK_LIMIT)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, logits_from: int = 0) -> torch.Tensor:
        """Logits (rows, T - logits_from, V) in bits, fixed point FRACTION, for `tokens` (rows, T).

        Without a cache the T tokens are a window's first T positions (a full-sequence forward);
        with one they continue the cached windows at position `cache.length`, and their keys and
        values are appended. Positions before `logits_from` only feed attention: the output layer
        over the whole vocabulary skips them. Every position's row is computed on its own, so
        skipping some changes no other.
        """
        with torch.inference_mode():
            if (cache is not None and tokens.shape[1] == 1 and logits_from == 0 and self.device.type == "cpu"
                    and HOST_SCALARS and tokens.shape[0] <= host.STEP_ROWS and self._position_check(cache.length + 1, cache)):
                return host.step_logits(self, tokens, cache)  # the same step in numpy: a fraction of the overhead
            h = self._hidden(tokens, cache)[:, logits_from:]
            return self.lm_head.blocked(self.final_norm(h, ACTIVATION_LEVELS["lm_head"]), head_rows(self.device))

    def _position_check(self, end: int, cache: KVCache | None) -> bool:
        if end > self.max_positions:
            raise UnsupportedParameterError(f"position {end} exceeds this model's {self.max_positions} positions")
        if cache is not None and end > cache.context:
            raise ValueError(f"the cache holds {cache.context} positions, not {end}")
        return True

    def intervals(self, tokens: torch.Tensor, targets: torch.Tensor, logits_from: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the encoder codes after a full-sequence forward of `tokens` (rows, T): for each
        position from `logits_from` on, `quantize.intervals_integer` of its logits and its target
        (`targets`, rows x (T - logits_from), or rows x (T - logits_from) x k for k tokens asked per
        position), as (low, frequency, -log2 p), each shaped like `targets`. The same numbers as
        from `forward`'s logits; the output layer and the quantizer go a block of rows at a time,
        so the whole (rows, T, V) logits never exist at once."""
        return self.head_intervals(self.head_inputs(tokens, logits_from), targets)

    def head_inputs(self, tokens: torch.Tensor, logits_from: int = 0) -> Activations:
        """The output layer's input rows for positions `logits_from` on of a full-sequence forward
        of `tokens` (rows, T), flattened row-major: the model's work but the output layer's."""
        with torch.inference_mode():
            return self.final_norm(self._hidden(tokens, None)[:, logits_from:], ACTIVATION_LEVELS["lm_head"])

    def head_intervals(self, x: Activations, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`intervals` from the output layer's inputs (`head_inputs`) on."""
        from ..quantize import intervals_integer

        with torch.inference_mode():
            count = x.scale.mantissa.shape[0]
            flat_targets = targets.reshape(count, -1)  # one or more tokens asked per position
            parts = []
            block = head_rows(self.device)
            for first in range(0, count, block):
                last = min(count, first + block)
                logits = self.lm_head(self.lm_head.rows(x, first, last))
                parts.append(intervals_integer(logits, flat_targets[first:last]))
            return tuple(torch.cat(column).view(targets.shape) for column in zip(*parts))

    def head_logits(self, x: Activations, index: torch.Tensor) -> torch.Tensor:
        """Logits (len(index), V) of the rows `index` of the output layer's inputs: the same
        numbers as `forward` gives for those positions (every row is computed alone)."""
        with torch.inference_mode():
            return self.lm_head(Linear.take(x, index))

    def _hidden(self, tokens: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        """The residual stream after the last layer (rows, T, D), fixed point FRACTION."""
        rows, count = tokens.shape
        start = cache.length if cache is not None else 0
        end = start + count
        self._position_check(end, cache)
        cos_all, sin_all = self._rotary_tables(end)
        cos, sin = cos_all[start:end], sin_all[start:end]
        key_positions = torch.arange(end, device=self.device)
        query_positions = torch.arange(start, end, device=self.device)
        hidden = key_positions[None, :] > query_positions[:, None]  # (T, keys): what each query may not see
        if self.sliding_window is not None:
            hidden |= key_positions[None, :] <= query_positions[:, None] - self.sliding_window
        # A step without a sliding window sees every cached key: no mask at all (the same numbers).
        masked = hidden if count > 1 or self.sliding_window is not None else None
        h = self.embed[tokens].long()  # (rows, T, D)
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        for index, (norm1, qkv, out, norm2, gate_up, down) in enumerate(self.layers):
            projected = qkv(norm1(h, ACTIVATION_LEVELS["qkv"]))
            qk = self._rotate(projected[..., : (heads + kv_heads) * dim].view(rows, count, heads + kv_heads, dim), cos, sin)
            q = qk[:, :, :heads].transpose(1, 2)
            k = qk[:, :, heads:].transpose(1, 2)
            v = projected[..., (heads + kv_heads) * dim :].view(rows, count, kv_heads, dim).transpose(1, 2)
            v = v.clamp(-_QK_LIMIT, _QK_LIMIT)
            if cache is not None:
                cache.keys[index, :, :, start:end] = k
                cache.values[index, :, :, start:end] = v
                k, v = cache.keys[index, :, :, :end], cache.values[index, :, :, :end]
            attended = self._attend(q, k, v, masked, self.sliding_window is None)  # (rows, T, heads * dim)
            h.add_(out(quantize_rows(attended, FRACTION, ACTIVATION_LEVELS["o"]))).clamp_(-_ACTIVATION_LIMIT, _ACTIVATION_LIMIT)
            h.add_(down(self._mlp_middle(gate_up(norm2(h, ACTIVATION_LEVELS["gate_up"]))))).clamp_(-_ACTIVATION_LIMIT, _ACTIVATION_LIMIT)
        if cache is not None:
            cache.length = end
        return h

    @staticmethod
    def _mlp_middle(gate_up: torch.Tensor) -> Activations:
        """SiLU(gate) * up, quantized as down_proj's input: gate and up (the halves of each row)
        clamped to +-2^31 (real values below 2^15), so that the product (fixed point 2 *
        FRACTION) stays below 2^62."""
        if _fused(gate_up):
            mixed, tops = silu_product_fused(gate_up.reshape(-1, gate_up.shape[-1]).numpy())
            return quantize_rows(torch.from_numpy(mixed).view(*gate_up.shape[:-1], -1), 2 * FRACTION,
                                 ACTIVATION_LEVELS["down"], amax=tops)
        gate, up = gate_up.clamp_(-_MLP_LIMIT, _MLP_LIMIT).chunk(2, dim=-1)
        mixed = arith.silu_fixed_(gate, FRACTION).mul_(up)
        return quantize_rows(mixed, 2 * FRACTION, ACTIVATION_LEVELS["down"])

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hidden: torch.Tensor | None,
                causal: bool) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v per head, in integers, as (rows, T, heads * dim); k and v may
        have fewer heads (GQA). `hidden` (T, keys) marks the keys each query may not see (None:
        none); `causal` says they are only the later positions.

        q is first scaled by log2(e) / sqrt(d), so q.k comes out as a base-2 exponent (fixed
        point 2 * FRACTION). |q|, |k| < 2^22 over at most 256 terms stays below 2^52: exact in
        float64, and so is s = q.k * 2^-22 computed from q * 2^-22 (a power-of-two scaling changes
        no significand: every partial sum is a multiple of 2^-22 below 2^30). The scores are
        round(q.k / 2^22) = floor(s + 1/2) and their gaps to the row's max are a - floor(s + 1/2)
        = ceil(a - 1/2 - s) with a = floor(max s + 1/2) (rounding is monotone, so a is the max of
        the scores): a - 1/2 - s is a multiple of 2^-22 below 2^31, exact in float64 too. So is
        everything else up to the second product, all on integers: the table's weights (below
        2^31) and their sum (at most 2^30 per key, below 2^50 for up to 2^20 keys), the normalized
        weights round(w * r / 2^k) = floor(w * (r * 2^-k) + 1/2) with w * r < 2^48. The weights p
        (about 2^20 in total) times |v| < 2^22 stay below 2^43, and round(p.v / 2^20) = floor(p.v *
        2^-20 + 1/2) is exact as well. Queries go in blocks that read only the keys they may see,
        which halves a prefill's work and changes no number (each query's row is computed alone).
        """
        rows, heads, count, dim = q.shape
        kv_heads, keys = k.shape[1], k.shape[2]
        group = heads // kv_heads
        q = arith.shift_round(q * self.score_multiplier, arith.LOG2E_BITS).clamp_(-_QK_LIMIT, _QK_LIMIT).double()
        q *= 2.0 ** -(2 * FRACTION - arith.EXP_FRACTION_BITS)
        # Grouped-query attention without copying keys and values: the `group` query heads that
        # share a key/value head are stacked along the query axis.
        q = q.view(rows, kv_heads, group, count, dim)
        k_t, v = k.transpose(-1, -2).double(), v.double()
        table = arith.exp_table(q.device, torch.float64)
        out = torch.empty((rows, count, heads, dim), dtype=torch.int64, device=q.device)
        for first in range(0, count, QUERY_BLOCK):
            last = min(count, first + QUERY_BLOCK)
            seen = keys - count + last  # keys up to the block's last query position
            block = q[:, :, :, first:last].reshape(rows, kv_heads, group * (last - first), dim)
            scores = torch.matmul(block, k_t[..., :seen]).view(rows, heads, last - first, seen)
            start = seen - (last - first) if causal else 0
            mask = None if hidden is None else hidden[first:last, start:seen]
            p = _table_softmax_fused(scores, mask, start) if _fused(scores) else _table_softmax(scores, mask, start, table)
            attended = torch.matmul(p.view(rows, kv_heads, group * (last - first), seen), v[:, :, :seen])
            attended = torch.floor_(attended.view(rows, heads, last - first, dim).mul_(2.0 ** -ATTENTION_BITS).add_(0.5))
            out[:, first:last] = attended.transpose(1, 2)
        return out.view(rows, count, heads * dim)
