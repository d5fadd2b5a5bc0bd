"""The portable engine's element-wise chains as fused CPU loops (numba): the same integers, one pass.

On the CPU a full-sequence forward spends about half its time outside the int8 products, in
chains of element-wise torch operations (a linear layer's rescale is five passes over an
(R, N) int64 tensor, a row's quantization four, attention's table softmax ten), each reading and
writing memory. Here each chain is one loop that keeps an element in a register from the first
operation to the last.

Nothing here is a new definition. The torch code in `llama` and `arith` defines every value; each
kernel performs, element by element, the operations of the torch lines it replaces, on the same
int64 values: integer add, multiply, arithmetic right shift, comparison, min and max, a table
lookup, and per row a few floor divisions of positive integers (`arith.reciprocal`, the row
scales) and an integer square root (float64's root corrected to the exact one, as `arith.isqrt`). The
bounds that `llama` proves for those lines keep every intermediate below 2^63 here too, and an
exact integer operation has one result whatever the order, vector width or thread that computes
it: so each kernel gives the torch code's integers on any CPU, for any thread count.
tests/test_portable.py compares kernel and torch code on random and extreme inputs, and the
engine's forward with and without them.

The kernels (`fused_loops`, imported only where numba is) are compiled on first use (about a
second each, cached on disk under llmzip's cache folder, $LLMZIP_CACHE/numba, and loaded from
there by later processes). Without numba, with LLMZIP_FUSED=0, or in a process forked from one
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


_EMPTY_QUANTIZATION = (np.zeros((0, 1), np.int64), np.zeros(1, np.int64), False, np.zeros(1, np.int64), False, 0, 127,
                       0, 12, False, np.zeros((0, 1), np.int8), np.zeros(0, np.int64), np.zeros(0, np.int64))


@functools.lru_cache(maxsize=None)
def kernels() -> types.SimpleNamespace:
    """The compiled loops (compiled, or loaded from the disk cache, on first call)."""
    numba = _numba()
    from . import fused_loops as f

    loops = (f.rescale, f.silu_product, f.table_softmax, f.quantize_rows, f.norm_rows, f.step_attention, f.linear_rows)
    f.quantize_rows(*_EMPTY_QUANTIZATION)  # starts numba's pool: its kind is known after
    if numba.threading_layer() not in ("omp", "tbb"):  # the workqueue pool: one caller at a time, whichever loop
        lock = threading.Lock()
        loops = tuple(_taking_turns(loop, lock) for loop in loops)
    helpers = (f.bit_length, f.rounded_to_bits, f.div_round, f.isqrt)  # (no threads: callable from any; tested alone)
    return types.SimpleNamespace(**{function.__name__: function for function in loops + helpers})


def _taking_turns(loop, lock: contextlib.AbstractContextManager):
    @functools.wraps(loop)
    def call(*args):
        with lock:
            return loop(*args)
    return call
