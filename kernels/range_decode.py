"""A range decoder on the device, bit for bit the decoder of constriction's queue range coder.

Decoding cannot take constriction's shortcut that encoding takes (a 3-entry row per token): only
the coder's state says where the next target falls, so constriction needs each token's whole
V-wide row on the host, O(V) per token (about 10k tokens/s at V = 50k), which would leave a GPU
idle. This kernel decodes where the frequency tables already are: the model step's cumulative
table stays on the device, and only the decoded tokens (which the next model step needs there
anyway) are produced, with no host round trip per step.

The arithmetic is constriction 0.5's `RangeDecoder<u32, u64>` at 24-bit precision, transcribed
from its definition (src/stream/queue.rs), not from its code:

    start:   lower = 0, range = 2**64 - 1, point = the first two words (big-endian order;
             missing words count as zero)
    decode:  scale = range >> 24; q = (point - lower) mod 2**64 // scale  (q >= 2**24: invalid)
             the token t with cdf[t-1] <= q < cdf[t]; lower += scale * cdf[t-1]; range = scale * f_t
             if range < 2**32: lower <<= 32, range <<= 32, point = point << 32 | the next word
             (arithmetic mod 2**64; a word past the end of the stream reads as zero)

Streams are independent, so one program decodes one stream: `rows_per_stream` consecutive rows of
the step's table, in order (the order the encoder coded them). tests/test_range_decode.py checks
it against constriction as the oracle on random and extreme distributions.

The search for t reads two vectors per token: the cdf at the end of every CHUNK-wide chunk, which
names the chunk, then that chunk. The result is an exact integer search, so the chunking does not
enter the numbers and is not recorded in files.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from llmzip.quantize import PRECISION, TOTAL

from .quantize import interpreted

_PRECISION = tl.constexpr(PRECISION)
_TOTAL = tl.constexpr(TOTAL)

# Per-stream state, one int64 row each (the bits are those of constriction's u64 state).
LOWER, RANGE, POINT, POSITION, ERROR = range(5)
STATE_FIELDS = 5


@triton.jit
def _decode_kernel(
    cdf_ptr,  # int32 (rows, V): inclusive cumulative frequencies, last column 2**24
    cdf_stride,
    words_ptr,  # int32 (streams, max_words): each stream's u32 words (same bits), zero-padded
    words_stride,
    lengths_ptr,  # int64 (streams,): each stream's number of words
    state_ptr,  # int64 (streams, STATE_FIELDS), read and written
    token_ptr,  # int64 (rows,): the decoded tokens
    rows,  # rows of the table to decode (a prefix of it: windows still running)
    rows_per_stream,
    vocab,
    CHUNK: tl.constexpr,
    CHUNKS: tl.constexpr,
):
    stream = tl.program_id(0).to(tl.int64)
    state = state_ptr + stream * 5
    lower = tl.load(state + 0).to(tl.uint64, bitcast=True)
    rng = tl.load(state + 1).to(tl.uint64, bitcast=True)
    point = tl.load(state + 2).to(tl.uint64, bitcast=True)
    position = tl.load(state + 3)
    error = tl.load(state + 4)
    n_words = tl.load(lengths_ptr + stream)
    words = words_ptr + stream * words_stride

    chunk_ids = tl.arange(0, CHUNKS)
    chunk_ends = tl.minimum((chunk_ids + 1) * CHUNK, vocab) - 1
    cols = tl.arange(0, CHUNK)
    first = stream * rows_per_stream
    last = tl.minimum(first + rows_per_stream, rows)
    for row in range(first, last):
        table = cdf_ptr + row * cdf_stride
        scale = rng >> _PRECISION
        quantile = (point - lower) // scale
        invalid = quantile >= _TOTAL
        error = tl.where(invalid, 1, error)
        target = tl.where(invalid, 0, quantile).to(tl.int32)  # keep going, harmlessly, once invalid

        # Chunk: the number of chunks whose last cdf is <= target. Token: that chunk's first
        # index plus the number of its entries <= target. Low / high: the neighbours around it.
        ends = tl.load(table + chunk_ends, mask=chunk_ids * CHUNK < vocab, other=_TOTAL)
        chunk = tl.sum((ends <= target).to(tl.int32), axis=0)
        low_before = tl.max(tl.where(ends <= target, ends, 0), axis=0)
        idx = chunk * CHUNK + cols
        entries = tl.load(table + idx, mask=idx < vocab, other=_TOTAL)
        token = chunk * CHUNK + tl.sum((entries <= target).to(tl.int32), axis=0)
        low = tl.maximum(low_before, tl.max(tl.where(entries <= target, entries, 0), axis=0))
        high = tl.min(tl.where(entries > target, entries, _TOTAL), axis=0)
        tl.store(token_ptr + row, token.to(tl.int64))

        lower = lower + scale * low.to(tl.uint64)
        rng = scale * (high - low).to(tl.uint64)
        if rng < 4294967296:  # 2**32: shift in the next word
            lower = lower << 32
            rng = rng << 32
            word = tl.load(words + position, mask=position < n_words, other=0)
            word = word.to(tl.uint32, bitcast=True).to(tl.uint64)
            point = (point << 32) | word
            position += 1

    tl.store(state + 0, lower.to(tl.int64, bitcast=True))
    tl.store(state + 1, rng.to(tl.int64, bitcast=True))
    tl.store(state + 2, point.to(tl.int64, bitcast=True))
    tl.store(state + 3, position)
    tl.store(state + 4, error)


def search_config(vocab: int) -> tuple[int, int]:
    """(CHUNK, CHUNKS) with CHUNK * CHUNKS >= V and both about sqrt(V): two short vector reads per token."""
    chunk = max(16, triton.next_power_of_2(int(vocab**0.5)))
    return chunk, max(2, triton.next_power_of_2(triton.cdiv(vocab, chunk)))


class RangeDecoders:
    """Several independent constriction range-coder streams, decoded on one device in lockstep.

    `decode(cdf, rows)` decodes one token for each of the first `rows` rows of `cdf`; stream s
    owns rows [s * rows_per_stream, (s + 1) * rows_per_stream). Invalid data (a target outside the
    table, which constriction reports as an error) sets a flag that `failed()` reads: checking it
    costs a device sync, so a caller checks once per batch, not per step.
    """

    def __init__(self, streams: list[bytes], rows_per_stream: int, device: torch.device | str):
        device = torch.device(device)
        if device.type != "cuda" and not interpreted():
            raise ValueError("the device range decoder needs a CUDA device (or TRITON_INTERPRET=1 for testing)")
        if rows_per_stream < 1:
            raise ValueError("rows_per_stream must be positive")
        count = len(streams)
        width = max(1, max((len(s) // 4 for s in streams), default=1))
        padded = bytearray(count * width * 4)
        for i, stream in enumerate(streams):
            if len(stream) % 4:
                raise ValueError("a stream must be a whole number of 32-bit words")
            padded[i * width * 4 : i * width * 4 + len(stream)] = stream
        # Little-endian u32 words; int32 storage with the same bits, widened inside the kernel.
        host = torch.frombuffer(padded, dtype=torch.int32).reshape(count, width) if count else \
            torch.zeros((0, width), dtype=torch.int32)
        self.words = host.to(device)
        self.lengths = torch.tensor([len(s) // 4 for s in streams], dtype=torch.int64, device=device)
        state = torch.zeros((count, STATE_FIELDS), dtype=torch.int64)
        for i, stream in enumerate(streams):
            w = [int.from_bytes(stream[j : j + 4], "little") for j in range(0, min(len(stream), 8), 4)]
            point = 0
            for word in w:
                point = (point << 32) | word
            point <<= 32 * (2 - len(w))
            state[i, LOWER] = 0
            state[i, RANGE] = -1  # 2**64 - 1
            state[i, POINT] = point - (1 << 64) if point >= 1 << 63 else point
            state[i, POSITION] = len(w)
        self.state = state.to(device)
        self.rows_per_stream = rows_per_stream
        self.device = device

    def decode(self, cdf: torch.Tensor, rows: int) -> torch.Tensor:
        """int64 tokens (rows,) on the device, one per row of the first `rows` rows of `cdf`."""
        if cdf.dim() != 2 or cdf.dtype != torch.int32 or cdf.stride(1) != 1:
            raise ValueError("expected a contiguous int32 cumulative table of shape (rows, vocab)")
        streams_used = triton.cdiv(rows, self.rows_per_stream)
        if streams_used > self.state.shape[0] or rows > cdf.shape[0]:
            raise ValueError(f"{rows} rows need {streams_used} streams; this decoder has {self.state.shape[0]}")
        tokens = torch.empty(rows, dtype=torch.int64, device=self.device)
        if rows == 0:
            return tokens
        vocab = cdf.shape[1]
        chunk, chunks = search_config(vocab)
        with torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext():
            _decode_kernel[(streams_used,)](
                cdf, cdf.stride(0), self.words, self.words.stride(0), self.lengths, self.state, tokens,
                rows, self.rows_per_stream, vocab, CHUNK=chunk, CHUNKS=chunks, num_warps=4,
            )
        return tokens

    def failed(self) -> bool:
        """True if any stream met data no encoder could have produced (a device sync)."""
        return bool(self.state[:, ERROR].any())
