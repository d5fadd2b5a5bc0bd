"""The range coder: constriction's queue (FIFO) range coder fed exact integer frequencies.

constriction quantizes float probabilities itself; if the floats are `f - 1` for integer
frequencies f >= 1 that sum to exactly 2**24, its scale factor is exactly 1 and its table equals
ours bit for bit. Encoding needs only each symbol's interval, so it codes a 3-entry row
(below, the symbol, above) per token: O(1) per token instead of O(vocabulary). Decoding needs the
full row, because only the coder knows where the target falls: on a GPU that is done where the
table is, by the device decoder in `llmzip.kernels.range_decode` (the same arithmetic, checked
against constriction), which `device_decoders` returns.
"""
from __future__ import annotations

import numpy as np
import torch

import constriction

from .errors import FormatError
from .quantize import PRECISION, TOTAL

CODER_ID = f"constriction-{getattr(constriction, '__version__', '0.5')}-range-u32/{PRECISION}"
_FAMILY = constriction.stream.model.Categorical(perfect=False)


def _three_entry_rows(low: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (f - 1) whose chosen symbol has exactly the interval [low, low + freq)."""
    rest = TOTAL - low - freq
    rows = np.empty((len(low), 3), dtype=np.float32)
    symbols = np.ones(len(low), dtype=np.int32)
    rows[:, 0], rows[:, 1], rows[:, 2] = low - 1, freq - 1, rest - 1
    at_start = low == 0  # no room below: [freq, rest - 1, 1], symbol 0
    rows[at_start, 0], rows[at_start, 1], rows[at_start, 2] = freq[at_start] - 1, rest[at_start] - 2, 0
    symbols[at_start] = 0
    at_end = rest == 0  # no room above: [1, low - 1, freq], symbol 2
    rows[at_end, 0], rows[at_end, 1], rows[at_end, 2] = 0, low[at_end] - 2, freq[at_end] - 1
    symbols[at_end] = 2
    return np.ascontiguousarray(rows), symbols


class StreamEncoder:
    """Collects (low, freq) intervals in coding order and encodes them in one vectorised call."""

    def __init__(self) -> None:
        self._lows: list[np.ndarray] = []
        self._freqs: list[np.ndarray] = []
        self.bits_ideal = 0.0  # -log2 of the coded probabilities: the quantized model's cost

    def push(self, low: torch.Tensor | np.ndarray, freq: torch.Tensor | np.ndarray) -> None:
        low_np = low.to("cpu", torch.int64).numpy() if isinstance(low, torch.Tensor) else low.astype(np.int64)
        freq_np = freq.to("cpu", torch.int64).numpy() if isinstance(freq, torch.Tensor) else freq.astype(np.int64)
        self._lows.append(low_np)
        self._freqs.append(freq_np)
        self.bits_ideal += float(PRECISION * len(freq_np) - np.log2(freq_np).sum())

    def finish(self) -> bytes:
        if not self._lows:
            return b""
        rows, symbols = _three_entry_rows(np.concatenate(self._lows), np.concatenate(self._freqs))
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(symbols, _FAMILY, rows)
        return encoder.get_compressed().astype("<u4").tobytes()


class StreamDecoder:
    """Decodes symbols from one stream, one full frequency row per symbol."""

    def __init__(self, stream: bytes):
        if len(stream) % 4:
            raise FormatError("corrupted file: a coded stream is not a whole number of words")
        if not stream:
            raise FormatError("corrupted file: a coded stream is empty")
        words = np.frombuffer(stream, dtype="<u4").astype(np.uint32)
        self._decoder = constriction.stream.queue.RangeDecoder(words)

    def decode(self, freqs: torch.Tensor) -> np.ndarray:
        rows = np.ascontiguousarray((freqs - 1).to("cpu", torch.float32).numpy())
        try:
            symbols = self._decoder.decode(_FAMILY, rows)
        except (AssertionError, ValueError, RuntimeError, OverflowError):
            # constriction reports compressed data that no sequence of symbols could have produced
            # as an AssertionError ("Tried to decode from compressed data that is invalid").
            raise FormatError("corrupted file: a coded stream is invalid") from None
        return np.asarray(symbols, dtype=np.int64)


def device_decoders(streams: list[bytes], rows_per_stream: int, device: torch.device):
    """Decoders for several streams that run on the device next to the tables (see the module doc)."""
    from .kernels.range_decode import RangeDecoders

    return RangeDecoders(streams, rows_per_stream, device)
