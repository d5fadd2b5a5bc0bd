"""The portable engine's element-wise chains as fused CPU loops (numba): the same integers, one pass.

On the CPU a full-sequence forward spends about half its time outside the int8 products, in
chains of element-wise torch operations (a linear layer's rescale is five passes over an
(R, N) int64 tensor, a row's quantization four, attention's table softmax ten), each reading and
writing memory. Here each chain is one loop that keeps an element in a register from the first
operation to the last.

Nothing here is a new definition. The torch code in `llama` and `arith` defines every value; each
kernel performs, element by element, the operations of the torch lines it replaces, on the same
int64 values: integer add, multiply, arithmetic right shift, comparison, min and max, a table
lookup, and one floor division of positive integers per attention row (`arith.reciprocal`). The
bounds that `llama` proves for those lines keep every intermediate below 2^63 here too, and an
exact integer operation has one result whatever the order, vector width or thread that computes
it: so each kernel gives the torch code's integers on any CPU, for any thread count.
tests/test_portable.py compares kernel and torch code on random and extreme inputs, and the
engine's forward with and without them.

The kernels are compiled on first use (about a second each, cached on disk under llmzip's cache
folder, $LLMZIP_CACHE/numba). Without numba, with LLMZIP_FUSED=0, or in a process forked from one
that ran them (numba's OpenMP pool does not survive a fork), the engine runs the torch code
instead: slower, the same integers. Where numba has neither OpenMP nor TBB for its threads, its
fallback pool must not be entered by two threads at once, so calls then take turns.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
import types

import numpy as np
import torch

ENV_SWITCH = "LLMZIP_FUSED"


@functools.lru_cache(maxsize=None)
def _numba():
    """numba, imported with its cache in llmzip's cache folder (unless the user chose one), or None."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    if not os.environ.get("NUMBA_CACHE_DIR"):
        from ..models import cache_root

        os.environ["NUMBA_CACHE_DIR"] = str(cache_root() / "numba")
    try:
        import numba
    except ImportError:
        return None
    return numba


_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def available() -> bool:
    """Whether the fused loops run (numba importable, not switched off, not a forked child)."""
    return not _forked and _numba() is not None


_thread_counts = threading.local()  # numba's thread count is per calling thread, like torch's


def threads() -> None:
    """Give the loops torch's thread count (what llmzip's `threads=` sets), within numba's pool."""
    wanted = torch.get_num_threads()
    if getattr(_thread_counts, "last", None) != wanted:  # (setting it costs more than a small loop)
        numba = _numba()
        numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
        _thread_counts.last = wanted


@functools.lru_cache(maxsize=None)
def kernels() -> types.SimpleNamespace:
    """The compiled loops (compiled, or loaded from the disk cache, on first call)."""
    numba = _numba()
    jit = functools.partial(numba.njit, parallel=True, cache=True, nogil=True)
    scalar = functools.partial(numba.njit, cache=True, nogil=True)  # a row's own numbers, inlined in the loops
    prange = numba.prange

    @jit
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

    @jit
    def largest_magnitudes(values, weight, has_weight):
        """max |v| per row (`llama.largest_magnitudes`), of v = values or values * weight."""
        rows, columns = values.shape
        out = np.empty(rows, np.int64)
        for i in prange(rows):
            top = np.int64(0)
            for j in range(columns):
                v = values[i, j] * weight[j] if has_weight else values[i, j]
                top = max(top, abs(v))
            out[i] = top
        return out

    @jit
    def square_sums(h, shift):
        """RMSNorm's sum of (h >> s)^2 per row."""
        rows, columns = h.shape
        out = np.empty(rows, np.int64)
        for i in prange(rows):
            s, total = shift[i], np.int64(0)
            for j in range(columns):
                x = h[i, j] >> s
                total += x * x
            out[i] = total
        return out

    @jit
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

    @jit
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
            bits, rest = 0, total
            while rest > 0:
                bits += 1
                rest >>= 1
            shift = bits + weight_bits - 1
            r = (np.int64(1) << shift) // total
            down = shift - attention_bits
            half = np.int64(1) << (down - 1)
            for j in range(keys):
                out[i, j] = (np.int64(out[i, j]) * r + half) >> down

    @scalar
    def bit_length(value):
        """int.bit_length of a non-negative value."""
        bits = 0
        while value > 0:
            bits += 1
            value >>= 1
        return bits

    @scalar
    def rounded_to_bits(value, bits):
        """`arith.normalize`: value (positive, below 2^62) ~= mantissa * 2^exponent, the mantissa
        rounded (halves up) to `bits` significant bits."""
        exponent = bit_length(value) - bits
        if exponent <= 0:
            return value << -exponent, exponent
        return (value + (np.int64(1) << (exponent - 1))) >> exponent, exponent

    @scalar
    def div_round(numerator, denominator):
        """`arith.div_round`: round(n / d), halves up, for d > 0."""
        return (2 * numerator + denominator) // (2 * denominator)

    @scalar
    def isqrt(value):
        """floor(sqrt(value)) of a non-negative value below 2^62 (float64's root, then corrected)."""
        root = np.int64(np.sqrt(np.float64(value)))
        while root * root > value:
            root -= 1
        while (root + 1) * (root + 1) <= value:
            root += 1
        return root

    @jit
    def quantize_rows(values, weight, has_weight, amax, has_amax, fraction, levels, down_bits, mantissa_bits,
                      halves, out, mantissa, exponent):
        """`llama.quantize_rows` whole: per row its largest magnitude (unless given), `llama.row_scales`
        (down = bit_length(max >> down_bits), r = floor(levels 2^s / max(max >> down, 1)) with s its
        bit length + 16, the Scale from round(2^55 / r)), then q = ((v >> down) r + 2^(s - 1)) >> s
        into int8 rows, or for 16 bits into the int8 halves of `arith.split_int16` (hi = (q + 128)
        >> 8 in rows 0..R-1, lo = q - 256 hi in rows R..2R-1)."""
        rows, columns = values.shape
        for i in prange(rows):
            if has_amax:
                top = amax[i]
            else:
                top = np.int64(0)
                for j in range(columns):
                    v = values[i, j] * weight[j] if has_weight else values[i, j]
                    top = max(top, abs(v))
            down = bit_length(top >> down_bits)
            largest = max(top >> down, np.int64(1))
            shift = bit_length(largest) + 16
            r = (np.int64(levels) << shift) // largest
            m, extra = rounded_to_bits(div_round(np.int64(1) << 55, r), mantissa_bits)
            mantissa[i] = m
            exponent[i] = extra + shift - 55 + down - fraction
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

    @jit
    def norm_scales(squares, s, eps_units, dim, fraction, mantissa_bits, row_mantissa, row_exponent,
                    weight_mantissa, weight_exponent, mantissa, exponent):
        """`llama.RMSNorm.__call__` after the sums of squares and the rows' quantization: the
        inverse root 2^(fraction - s) sqrt(D / total) as a dyadic number (total ~= m 2^e, e made
        even, root = isqrt(round(m 2^20 / D)), inverse round(2^60 / root)), then the rows' scales
        times it and times the norm's weight scale (`llama.Scale.times`, twice)."""
        for i in prange(squares.shape[0]):
            m, e = rounded_to_bits(squares[i] + eps_units[s[i]], 40)
            odd = e & 1
            m, e = m << odd, e - odd
            root = isqrt(div_round(m << 20, dim))
            inverse, extra = rounded_to_bits(div_round(np.int64(1) << 60, root), mantissa_bits)
            inverse_exponent = extra - 60 - ((e - 20) >> 1) + fraction - s[i]
            m, extra = rounded_to_bits(row_mantissa[i] * inverse, mantissa_bits)
            e = row_exponent[i] + inverse_exponent + extra
            m, extra = rounded_to_bits(m * weight_mantissa, mantissa_bits)
            mantissa[i] = m
            exponent[i] = e + weight_exponent + extra

    loops = (rescale, largest_magnitudes, square_sums, silu_product, table_softmax, quantize_rows,
             norm_scales)
    square_sums(np.zeros((1, 1), np.int64), np.zeros(1, np.int64))  # starts numba's pool: its kind is known after
    if numba.threading_layer() not in ("omp", "tbb"):  # the workqueue pool: one caller at a time, whichever loop
        lock = threading.Lock()
        loops = tuple(_taking_turns(loop, lock) for loop in loops)
    helpers = (bit_length, rounded_to_bits, div_round, isqrt)  # (no threads: callable from any; tested alone)
    return types.SimpleNamespace(**{function.__name__: function for function in loops + helpers})


def _taking_turns(loop, lock: contextlib.AbstractContextManager):
    @functools.wraps(loop)
    def call(*args):
        with lock:
            return loop(*args)
    return call
