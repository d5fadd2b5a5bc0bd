"""The fused loops themselves, compiled by numba; `fused` imports this module only where numba is
installed, after pointing numba's disk cache at llmzip's cache folder.

Every function is at module level: numba keys a cached function by its code and its closure's
contents, and a closure holding another compiled function would never match its cache entry
(a compiled function pickles with an identity of its process), so it would be compiled again in
every process. See `fused` for what each loop must equal and why it does.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
from numba import prange

_parallel = functools.partial(numba.njit, parallel=True, cache=True, nogil=True)
_scalar = functools.partial(numba.njit, cache=True, nogil=True)  # a row's own numbers, inlined in the loops
# Sums of exact float64 terms (integers times a power of two, every partial sum exact) are the
# same in any order, so their loops may be reordered into vector lanes ("reassoc") and use fused
# multiply-adds ("contract": an exact product plus an exact sum rounds to itself).
_exact_sums = functools.partial(numba.njit, cache=True, nogil=True, fastmath={"reassoc", "contract"})


@_parallel
def rescale(products, halves, colm, rowm, half, shift, bias, has_bias, out):
    """Linear.__call__ after the int8 product: acc = 256 hi + lo (or the product itself),
    then (acc * column mantissa * row mantissa + half) >> shift, plus the bias."""
    rows, columns = out.shape
    for i in prange(rows):
        m, h, s = rowm[i], half[i], shift[i]
        for j in range(columns):
            if halves:
                acc = np.int64(products[i, j]) * 256 + np.int64(products[rows + i, j])
            else:
                acc = np.int64(products[i, j])
            y = (acc * colm[j] * m + h) >> s
            if has_bias:
                y += bias[j]
            out[i, j] = y


@_scalar
def int32_dot(x, w):
    """sum x[k] w[k] in int32 arithmetic: exact where the caller bounds every partial sum below
    2^31 (`linear_rows`: at most DOT_TERMS terms). (numba computes int32 operands in int64; the
    cast back to int32 lets the compiler keep 16 lanes to a vector, not 8: 1.7 times as fast.)"""
    total = np.int32(0)
    for k in range(x.shape[0]):
        total = np.int32(total + np.int32(x[k]) * np.int32(w[k]))
    return total


@_parallel
def linear_rows(x, weights, dot_terms, colm, shift_offset, rowm, rowe, bias, has_bias, out):
    """Linear.__call__ whole for a few rows of 16-bit integers x (R, K) and int8 weights (N, K),
    one output's weights read once for every row: acc = x . w exact (int32 partial sums of
    `dot_terms` terms, each below 2^31, added in int64), then `rescale`'s
    (acc * column mantissa * row mantissa + half) >> shift, plus the bias, with each row's shift
    min(max(shift_offset - its exponent, 0), 62) and half = 2^(shift - 1) (0 for no shift)."""
    rows, terms = x.shape
    shift = np.empty(rows, np.int64)
    half = np.empty(rows, np.int64)
    for i in range(rows):
        shift[i] = min(max(shift_offset - rowe[i], 0), 62)
        half[i] = (np.int64(1) << shift[i]) >> 1
    for j in prange(weights.shape[0]):
        w = weights[j]
        for i in range(rows):
            acc = np.int64(0)
            for start in range(0, terms, dot_terms):
                stop = min(terms, start + dot_terms)
                acc += int32_dot(x[i, start:stop], w[start:stop])
            y = (acc * colm[j] * rowm[i] + half[i]) >> shift[i]
            if has_bias:
                y += bias[j]
            out[i, j] = y


@_parallel
def silu_product(gate_up, limit, table, index_shift, index_limit, one_bits):
    """The MLP's middle: gate and up (the two halves of each row) clamped to +-limit, then
    `arith.silu_fixed_`(gate) * up; and max |result| per row for its quantization."""
    rows, width = gate_up.shape
    columns = width // 2
    out = np.empty((rows, columns), np.int64)
    tops = np.empty(rows, np.int64)
    round_half = np.int64(1) << (index_shift - 1)
    product_half = np.int64(1) << (one_bits - 1)
    for i in prange(rows):
        top = np.int64(0)
        for j in range(columns):
            x = min(max(gate_up[i, j], -limit), limit)
            up = min(max(gate_up[i, columns + j], -limit), limit)
            size = abs(x)
            index = min((size + round_half) >> index_shift, index_limit)
            silu = ((table[index] * size + product_half) >> one_bits) + min(x, 0)
            y = silu * up
            out[i, j] = y
            top = max(top, abs(y))
        tops[i] = top
    return out, tops


@_parallel
def table_softmax(scores, queries, hidden, start, has_hidden, table, weight_bits, attention_bits, out):
    """Attention's weights for one block of queries (`llama.PortableLlama._attend`, from the
    scores to p, whose total is about 2^attention_bits): rows of `scores` are (head, query)
    pairs, query = row % queries; keys from `start` on are hidden where
    `hidden[query, key - start]`. Per row: a = floor(max + 1/2) - 1/2
    over the visible scores, w = table[min(ceil(a - s), last)] (0 for a hidden key), the
    total of w and `arith.reciprocal`'s r = floor(2^k / total), k = bit_length(total) +
    weight_bits - 1, then with d = k - attention_bits, p = (w r + 2^(d - 1)) >> d: the torch
    code's floor(w * (r * 2^-d) + 1/2), whose product is exact (w r < 2^49). The total is at
    least 2^30 (the top score's weight), so d >= 28."""
    rows, keys = scores.shape
    last = table.shape[0] - 1
    for i in prange(rows):
        query = i % queries
        top = -np.inf
        for j in range(keys):
            if not (has_hidden and j >= start and hidden[query, j - start]):
                top = max(top, scores[i, j])
        a = np.floor(top + 0.5) - 0.5
        total = np.int64(0)
        for j in range(keys):
            if has_hidden and j >= start and hidden[query, j - start]:
                w = np.int64(0)
            else:
                w = table[np.int64(min(np.ceil(a - scores[i, j]), last))]
            out[i, j] = w
            total += w
        normalize_weights(out[i], total, weight_bits, attention_bits)


@_scalar
def normalize_weights(weights, total, weight_bits, attention_bits):
    """A row of attention weights (their total given) scaled to sum to about 2^attention_bits, in
    place: `arith.reciprocal`'s r = floor(2^k / total), k = bit_length(total) + weight_bits - 1,
    then with d = k - attention_bits, p = (w r + 2^(d - 1)) >> d."""
    shift = bit_length(total) + weight_bits - 1
    r = (np.int64(1) << shift) // total
    down = shift - attention_bits
    half = np.int64(1) << (down - 1)
    for j in range(weights.shape[0]):
        weights[j] = (np.int64(weights[j]) * r + half) >> down


@_exact_sums
def exact_dot(x, y):
    """The dot product of float64 x and y (any float type) whose products and partial sums are exact."""
    total = np.float64(0.0)
    for j in range(x.shape[0]):
        total += x[j] * np.float64(y[j])
    return total


@_exact_sums
def add_multiple(total, factor, x):
    """total += factor * x, element-wise, for float64 total and factor, x of any float type, exact."""
    for j in range(x.shape[0]):
        total[j] += factor * np.float64(x[j])


@_scalar
def rotated(row, offset, j, half, dim, cos, sin, rotary_bits, limit):
    """Element j of the head at `offset` of a row after the rotary embedding (`llama._rotate`):
    round((x_j cos_j + x_(j - half mod dim) sin_j) / 2^rotary_bits), clamped to +-limit."""
    y = row[offset + j] * cos[j] + row[offset + (j + dim - half) % dim] * sin[j]
    y = (y + (np.int64(1) << (rotary_bits - 1))) >> rotary_bits
    return min(max(y, -limit), limit)


@_parallel
def step_attention(projected, cos, sin, keys, values, start, first_key, heads, multiplier, multiplier_bits,
                   limit, rotary_bits, score_scale, table, weight_bits, attention_bits, scores, out):
    """One decoding step's attention of one layer (`host.step_logits`, the lines from the rotary
    embedding to the rounded output), for rows of q, k and v heads side by side (`projected`, the
    qkv layer's output): the rotary embedding of k and the clamped v written into the layer's
    cache (rows, key heads, positions, dim) at position `start`; then per (row, query head) the
    rotated q, times `multiplier` rounded by `multiplier_bits` and clamped, scaled by
    `score_scale` (a power of two) to float64, its scores against the keys `first_key` ...
    `start` of its key head (float64 sums of exact products: the same numbers in any order), the
    table softmax of `table_softmax` and out = floor(p.v * 2^-attention_bits + 1/2). `scores` is
    (rows * heads, keys) scratch."""
    rows = projected.shape[0]
    kv_heads, dim = keys.shape[1], keys.shape[3]
    half, group, end = dim // 2, heads // kv_heads, start + 1
    for row in prange(rows):
        for head in range(kv_heads):
            for j in range(dim):
                keys[row, head, start, j] = rotated(projected[row], (heads + head) * dim, j, half, dim, cos,
                                                           sin, rotary_bits, limit)
                v = projected[row, (heads + kv_heads + head) * dim + j]
                values[row, head, start, j] = min(max(v, -limit), limit)
    last = table.shape[0] - 1
    multiplier_half = np.int64(1) << (multiplier_bits - 1)
    for pair in prange(rows * heads):
        row, head = pair // heads, pair % heads
        key_head = head // group
        q = np.empty(dim, np.float64)
        for j in range(dim):
            x = rotated(projected[row], head * dim, j, half, dim, cos, sin, rotary_bits, limit)
            x = (x * multiplier + multiplier_half) >> multiplier_bits
            q[j] = np.float64(min(max(x, -limit), limit)) * score_scale
        weights = scores[pair, : end - first_key]
        top = -np.inf
        for t in range(first_key, end):
            s = exact_dot(q, keys[row, key_head, t])
            weights[t - first_key] = s
            top = max(top, s)
        a = np.floor(top + 0.5) - 0.5
        total = np.int64(0)
        for t in range(end - first_key):
            w = table[np.int64(min(np.ceil(a - weights[t]), last))]
            weights[t] = w
            total += w
        normalize_weights(weights, total, weight_bits, attention_bits)
        attended = np.zeros(dim, np.float64)
        for t in range(first_key, end):
            add_multiple(attended, weights[t - first_key], values[row, key_head, t])
        scale = np.float64(2.0) ** -attention_bits
        for j in range(dim):
            out[row, head * dim + j] = np.int64(np.floor(attended[j] * scale + 0.5))


@_scalar
def bit_length(value):
    """int.bit_length of a non-negative value."""
    bits = 0
    while value > 0:
        bits += 1
        value >>= 1
    return bits


@_scalar
def rounded_to_bits(value, bits):
    """`arith.normalize`: value (positive, below 2^62) ~= mantissa * 2^exponent, the mantissa
    rounded (halves up) to `bits` significant bits."""
    exponent = bit_length(value) - bits
    if exponent <= 0:
        return value << -exponent, exponent
    return (value + (np.int64(1) << (exponent - 1))) >> exponent, exponent


@_scalar
def div_round(numerator, denominator):
    """`arith.div_round`: round(n / d), halves up, for d > 0."""
    return (2 * numerator + denominator) // (2 * denominator)


@_scalar
def isqrt(value):
    """floor(sqrt(value)) of a non-negative value below 2^62 (float64's root, then corrected)."""
    root = np.int64(np.sqrt(np.float64(value)))
    while root * root > value:
        root -= 1
    while (root + 1) * (root + 1) <= value:
        root += 1
    return root


@_scalar
def quantize_row(values, i, weight, has_weight, top, fraction, levels, down_bits, mantissa_bits, halves, out):
    """Row i of `quantize_rows`, given its largest magnitude: writes the row's integers into `out`
    and returns its Scale (mantissa, exponent)."""
    rows, columns = values.shape
    down = bit_length(top >> down_bits)
    largest = max(top >> down, np.int64(1))
    shift = bit_length(largest) + 16
    r = (np.int64(levels) << shift) // largest
    m, extra = rounded_to_bits(div_round(np.int64(1) << 55, r), mantissa_bits)
    half = (np.int64(1) << shift) >> 1
    for j in range(columns):
        v = values[i, j] * weight[j] if has_weight else values[i, j]
        q = ((v >> down) * r + half) >> shift
        if halves:
            high = (q + 128) >> 8
            out[i, j] = high
            out[rows + i, j] = q - 256 * high
        else:
            out[i, j] = q
    return m, extra + shift - 55 + down - fraction


@_scalar
def largest_magnitude(values, i, weight, has_weight):
    """max |v| over row i of values (times weight)."""
    top = np.int64(0)
    for j in range(values.shape[1]):
        v = values[i, j] * weight[j] if has_weight else values[i, j]
        top = max(top, abs(v))
    return top


@_parallel
def quantize_rows(values, weight, has_weight, amax, has_amax, fraction, levels, down_bits, mantissa_bits,
                  halves, out, mantissa, exponent):
    """`llama.quantize_rows` whole: per row its largest magnitude (unless given), `llama.row_scales`
    (down = bit_length(max >> down_bits), r = floor(levels 2^s / max(max >> down, 1)) with s its
    bit length + 16, the Scale from round(2^55 / r)), then q = ((v >> down) r + 2^(s - 1)) >> s
    into int8 rows (or int16 ones, `out`'s type), or for 16 bits into the int8 halves of
    `arith.split_int16` (hi = (q + 128) >> 8 in rows 0..R-1, lo = q - 256 hi in rows R..2R-1)."""
    for i in prange(values.shape[0]):
        top = amax[i] if has_amax else largest_magnitude(values, i, weight, has_weight)
        mantissa[i], exponent[i] = quantize_row(values, i, weight, has_weight, top, fraction, levels, down_bits,
                                                mantissa_bits, halves, out)


@_parallel
def norm_rows(h, weight, eps_units, square_bits, fraction, levels, down_bits, mantissa_bits, weight_mantissa,
              weight_exponent, halves, out, mantissa, exponent):
    """`llama.RMSNorm.__call__` whole, per row: the shift s = bit_length(max|h| >> square_bits),
    the sum of (h >> s)^2, the row of h * g quantized (`quantize_rows`), and its scale times the
    inverse root 2^(fraction - s) sqrt(D / total) as a dyadic number (total ~= m 2^e, e made
    even, root = isqrt(round(m 2^20 / D)), inverse round(2^60 / root)) and times the norm's
    weight scale (`llama.Scale.times`, twice)."""
    rows, dim = h.shape
    for i in prange(rows):
        s = bit_length(largest_magnitude(h, i, weight, False) >> square_bits)
        squares = np.int64(0)
        for j in range(dim):
            x = h[i, j] >> s
            squares += x * x
        row_mantissa, row_exponent = quantize_row(h, i, weight, True, largest_magnitude(h, i, weight, True), fraction,
                                                  levels, down_bits, mantissa_bits, halves, out)
        m, e = rounded_to_bits(squares + eps_units[s], 40)
        odd = e & 1
        m, e = m << odd, e - odd
        root = isqrt(div_round(m << 20, dim))
        inverse, extra = rounded_to_bits(div_round(np.int64(1) << 60, root), mantissa_bits)
        inverse_exponent = extra - 60 - ((e - 20) >> 1) + fraction - s
        m, extra = rounded_to_bits(row_mantissa * inverse, mantissa_bits)
        e = row_exponent + inverse_exponent + extra
        m, extra = rounded_to_bits(m * weight_mantissa, mantissa_bits)
        mantissa[i] = m
        exponent[i] = e + weight_exponent + extra
