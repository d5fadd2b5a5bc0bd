"""One decoding step of a few windows on the CPU, in numpy: the same integers as `llama`'s forward.

A step computes one token per window, so its tensors are tiny (a few rows of a few thousand
values) and a torch operation's fixed cost (a few microseconds of dispatch) outweighs its work;
numpy's is a fraction of that. This module is the step of `PortableLlama._hidden` and its output
layer written with numpy arrays: each line is the operation of the torch code it mirrors, on the
same int64 and float64 values (Python's operators mean the same exact operations on both), and
the int8 products still run through `arith.int8_products`; where `llama` runs its element-wise
chains as fused loops (`fused`), so does the step, through the same functions, and two loops of
its own take the rest: a layer's attention from the rotary embedding to its rounded output
(`fused_loops.step_attention`), and the linear layers on whole 16-bit rows, each output's weights
read once (`llama.linear_rows_fused`). With them, and RMSNorm as one loop, a step of the default
model at the default level went from 35 to 10 ms (2 threads, ad hoc), half of it now the linear
layers reading their 135 MB of weights. Nothing here is a new definition: the exactness argument
of `llama` covers it line for line, and tests/test_portable.py checks that stepping (this module)
and full-sequence forwards (torch) give the same logits, and each loop against the code it
replaces at the bounds.

One difference of form, no difference of value: a step of a sliding-window model reads only the
keys inside its window, where the torch code masks the others; a masked key contributes an exact
0 to every sum and does not enter the max.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from . import arith, fused, llama  # (llama imports this module too: names are looked up at call time)

if TYPE_CHECKING:  # pragma: no cover
    from .llama import KVCache, Linear, PortableLlama, RMSNorm

STEP_ROWS = 64  # windows per step up to which the step runs here (faster at 1 to 32 here, 1 or 2 threads)


class _Host:
    """numpy views of what a step reads from the engine (shared memory, made once per engine)."""

    def __init__(self, engine: "PortableLlama"):
        self.embed = engine.embed.numpy()
        self.norms = {id(n): (n.weight.numpy(), n.eps_units.numpy(), n.weight_scale.mantissa.numpy(),
                              n.weight_scale.exponent.numpy())
                      for layer in engine.layers for n in (layer[0], layer[3])}
        self.norms[id(engine.final_norm)] = (engine.final_norm.weight.numpy(), engine.final_norm.eps_units.numpy(),
                                             engine.final_norm.weight_scale.mantissa.numpy(),
                                             engine.final_norm.weight_scale.exponent.numpy())
        linears = [engine.lm_head] + [m for layer in engine.layers for m in (layer[1], layer[2], layer[4], layer[5])]
        self.linears = {id(m): llama.HostLinear.of(m) for m in linears}
        self.sigmoid = arith._sigmoid_table("cpu", None).numpy()
        self.exp = arith.exp_table(torch.device("cpu"), torch.float64).numpy()
        self.exp_int = arith.exp_table(torch.device("cpu")).numpy()


def _host(engine: "PortableLlama") -> _Host:
    views = getattr(engine, "_host_views", None)
    if views is None:
        views = engine._host_views = _Host(engine)
    return views


def _quantize_rows(fused_now: bool, values: np.ndarray, fraction: int, levels: int, weight: np.ndarray | None = None,
                   amax: np.ndarray | None = None):
    """llama.quantize_rows of (R, K) int64 rows (times `weight`, if given; may be overwritten):
    the int8 rows for the product (halves stacked for 16 bits) as a tensor, whether they are
    halves, and the rows' Scale as arrays; with the fused loops, the rows whole as int16 (numpy)."""
    if fused_now:
        return llama.quantize_rows_fused(values, fraction, levels, weight, amax, whole=True)
    if weight is not None:
        values = values * weight
    down, r, shift, scale = llama.row_scales(np.abs(values).max(axis=-1), fraction, levels)
    values >>= down[:, None]
    values *= r[:, None]
    values += arith.half_of(shift)[:, None]
    values >>= shift[:, None]
    if levels <= llama.INT8_LEVELS:
        return torch.from_numpy(values.astype(np.int8)), False, scale
    # arith.split_int16 in int16: hi = (x + 128) >> 8, lo = x - 256 hi, both in [-128, 127].
    q = values.astype(np.int16)
    high = (q + np.int16(128)) >> 8
    low = q - high * np.int16(256)
    return torch.from_numpy(np.concatenate([high, low]).astype(np.int8)), True, scale


def _norm(fused_now: bool, host: _Host, norm: "RMSNorm", h: np.ndarray, levels: int):
    """llama.RMSNorm.__call__ of (R, D) rows."""
    from .llama import FRACTION, MANTISSA_BITS, Scale

    weight, eps_units, weight_mantissa, weight_exponent = host.norms[id(norm)]
    if fused_now:
        return llama.norm_rows_fused(h, weight, eps_units, Scale(weight_mantissa, weight_exponent), levels, whole=True)
    square_bits = (60 - (norm.dim - 1).bit_length()) // 2
    s = arith.bit_length_small(np.abs(h).max(axis=-1) >> square_bits)
    hs = h >> s[:, None]
    squares = (hs * hs).sum(axis=-1)
    total = squares + eps_units[s]
    m, e = arith.normalize(total, 40)
    odd = e & 1
    m, e = m << odd, e - odd
    root = arith.isqrt(arith.div_round(m << 20, norm.dim))
    inv = Scale(*arith.normalize_small(arith.div_round(1 << 60, root), MANTISSA_BITS))
    inv = Scale(inv.mantissa, inv.exponent - 60 - ((e - 20) >> 1) + FRACTION - s)
    rows, halves, scale = _quantize_rows(False, h, FRACTION, levels, weight=weight)
    return rows, halves, scale.times(inv).times(Scale(weight_mantissa, weight_exponent))


def _linear(fused_now: bool, host: _Host, linear: "Linear", rows: torch.Tensor | np.ndarray, halves: bool,
            scale) -> np.ndarray:
    """llama.Linear.__call__: (R, N) int64 (from `_quantize_rows`' rows, int16 with the fused loops)."""
    count, arrays = scale.mantissa.shape[0], host.linears[id(linear)]
    if fused_now:
        return llama.linear_rows_fused(arrays, rows, scale, np.empty((count, arrays.weights.shape[0]), dtype=np.int64))
    column_mantissa, bias = arrays.column_mantissa, arrays.bias
    acc = arith.int8_products(rows, linear.weight_t, linear.weight_float).numpy()
    shift = np.minimum(np.maximum(arrays.shift_offset - scale.exponent, 0), 62)
    if halves:
        y = acc[:count].astype(np.int64)
        y *= 256
        y += acc[count:]
    else:
        y = acc.astype(np.int64)
    y *= column_mantissa
    y *= scale.mantissa[:, None]
    y += arith.half_of(shift)[:, None]
    y >>= shift[:, None]
    if bias is not None:
        y += bias
    return y


def _clip(x: np.ndarray, limit: int) -> np.ndarray:
    np.minimum(x, limit, out=x)
    return np.maximum(x, -limit, out=x)


def step_logits(engine: "PortableLlama", tokens: torch.Tensor, cache: "KVCache") -> torch.Tensor:
    """`PortableLlama.forward(tokens, cache)` for tokens (rows, 1) on the CPU: logits (rows, 1, V)."""
    levels, fraction, limit = llama.ACTIVATION_LEVELS, llama.FRACTION, llama._ACTIVATION_LIMIT
    fused_now = llama.fused_on_cpu()  # (once per step: the same integers either way)
    attend = _attention_fused if fused_now else _attention
    host = _host(engine)
    start = cache.length
    end = start + 1
    first_key = max(0, end - engine.sliding_window) if engine.sliding_window is not None else 0
    cos_all, sin_all = engine._rotary_tables(end)
    cos, sin = cos_all[start].numpy(), sin_all[start].numpy()
    keys, values = cache.keys.numpy(), cache.values.numpy()
    h = host.embed[tokens[:, 0].numpy()].astype(np.int64)  # (rows, D)
    for index, (norm1, qkv, out, norm2, gate_up, down) in enumerate(engine.layers):
        projected = _linear(fused_now, host, qkv, *_norm(fused_now, host, norm1, h, levels["qkv"]))
        attended = attend(engine, host, projected, cos, sin, keys[index], values[index], start, first_key)
        h += _linear(fused_now, host, out, *_quantize_rows(fused_now, attended, fraction, levels["o"]))
        _clip(h, limit)
        y = _linear(fused_now, host, gate_up, *_norm(fused_now, host, norm2, h, levels["gate_up"]))
        if fused_now:  # clamps gate and up itself
            mixed, tops = llama.silu_product_fused(y)
        else:
            mixed, tops = _silu_product(host, _clip(y, llama._MLP_LIMIT)), None
        h += _linear(fused_now, host, down, *_quantize_rows(fused_now, mixed, 2 * fraction, levels["down"], amax=tops))
        _clip(h, limit)
    cache.length = end
    logits = _linear(fused_now, host, engine.lm_head, *_norm(fused_now, host, engine.final_norm, h, levels["lm_head"]))
    return torch.from_numpy(logits).view(tokens.shape[0], 1, -1)


def _attention(engine: "PortableLlama", host: _Host, projected: np.ndarray, cos: np.ndarray, sin: np.ndarray,
               keys: np.ndarray, values: np.ndarray, start: int, first_key: int) -> np.ndarray:
    """One layer's attention in a step, from the qkv layer's output (R, (H + 2 KV) * D) to the heads'
    outputs (R, H * D) int64; writes the step's key and value into the layer's cache (R, KV, T, D)."""
    from .llama import _QK_LIMIT, ATTENTION_BITS, FRACTION, ROTARY_BITS

    heads, kv_heads, dim = engine.heads, engine.kv_heads, engine.head_dim
    rows, group, half, end = projected.shape[0], heads // kv_heads, dim // 2, start + 1
    # Rotary embedding of q and k together (llama.PortableLlama._rotate).
    x = projected[:, : (heads + kv_heads) * dim].reshape(rows, heads + kv_heads, dim)
    qk = np.roll(x, half, axis=-1)
    qk *= sin
    qk += x * cos
    qk += 1 << (ROTARY_BITS - 1)
    qk >>= ROTARY_BITS
    _clip(qk, _QK_LIMIT)
    v = _clip(projected[:, (heads + kv_heads) * dim :].reshape(rows, kv_heads, dim), _QK_LIMIT)
    keys[:, :, start] = qk[:, heads:]
    values[:, :, start] = v
    # Attention (llama.PortableLlama._attend) for one query per row, over the keys it sees.
    q = qk[:, :heads] * engine.score_multiplier
    q += 1 << (arith.LOG2E_BITS - 1)
    q >>= arith.LOG2E_BITS
    q = _clip(q, _QK_LIMIT).astype(np.float64)
    q *= 2.0 ** -(2 * FRACTION - arith.EXP_FRACTION_BITS)
    k = keys[:, :, first_key:end]  # (rows, kv, seen, dim)
    vv = values[:, :, first_key:end]
    if k.dtype != np.float64:
        k, vv = k.astype(np.float64), vv.astype(np.float64)
    scores = np.matmul(q.reshape(rows, kv_heads, group, dim), np.swapaxes(k, -1, -2))  # (rows, kv, group, seen)
    attended = np.matmul(_table_softmax(host, scores), vv)  # (rows, kv, group, dim)
    attended *= 2.0 ** -ATTENTION_BITS
    attended += 0.5
    return np.floor(attended, out=attended).astype(np.int64).reshape(rows, heads * dim)


def _attention_fused(engine: "PortableLlama", host: _Host, projected: np.ndarray, cos: np.ndarray, sin: np.ndarray,
                     keys: np.ndarray, values: np.ndarray, start: int, first_key: int) -> np.ndarray:
    """`_attention` as one fused loop (`fused_loops.step_attention`): the same integers."""
    rows, heads = projected.shape[0], engine.heads
    out = np.empty((rows, heads * engine.head_dim), dtype=np.int64)
    scores = np.empty((rows * heads, start + 1 - first_key), dtype=np.float64)
    fused.kernels().step_attention(projected, cos, sin, keys, values, start, first_key, heads, engine.score_multiplier,
                                   arith.LOG2E_BITS, llama._QK_LIMIT, llama.ROTARY_BITS,
                                   2.0 ** -(2 * llama.FRACTION - arith.EXP_FRACTION_BITS), host.exp_int,
                                   llama._RECIPROCAL_BITS, llama.ATTENTION_BITS, scores, out)
    return out


def _table_softmax(host: _Host, scores: np.ndarray) -> np.ndarray:
    """llama._table_softmax of a step's scores (no key hidden: a step reads only the keys it sees)."""
    from .llama import _RECIPROCAL_BITS, ATTENTION_BITS

    top = np.floor(scores.max(axis=-1, keepdims=True) + 0.5) - 0.5
    gaps = np.ceil(top - scores)
    np.minimum(gaps, arith.EXP_TABLE_SIZE - 1, out=gaps)
    weights = host.exp[gaps.astype(np.intp)]
    total = weights.sum(axis=-1, keepdims=True)
    r, shift = arith.reciprocal(total.astype(np.int64), _RECIPROCAL_BITS)
    weights *= r.astype(np.float64) * arith.pow2_float(ATTENTION_BITS - shift)
    weights += 0.5
    return np.floor(weights, out=weights)


def _silu_product(host: _Host, y: np.ndarray) -> np.ndarray:
    """arith.silu_fixed_(gate) * up for the halves gate, up of each (clamped) row."""
    from .llama import FRACTION

    inner = y.shape[-1] // 2
    gate, up = y[:, :inner], y[:, inner:]
    # arith.silu_fixed_: round(|x| * p / 2^30) + min(x, 0), then times up.
    size = np.abs(gate)
    index_ = size + (1 << (FRACTION - arith.SIGMOID_FRACTION_BITS - 1))
    index_ >>= FRACTION - arith.SIGMOID_FRACTION_BITS
    np.minimum(index_, host.sigmoid.shape[0] - 1, out=index_)
    mixed = host.sigmoid[index_]
    mixed *= size
    mixed += 1 << (arith.EXP_ONE_BITS - 1)
    mixed >>= arith.EXP_ONE_BITS
    mixed += np.minimum(gate, 0)
    mixed *= up
    return mixed
