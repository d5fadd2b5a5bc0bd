"""The codec loop of the portable engine: whole windows in when compressing, one step at a time
when decompressing, the same integers either way.

Compression evaluates each window in one full-sequence forward (as many windows per call as
suit the machine) and turns each position's logits into the coded token's interval. Decompression
steps the windows of whole streams together over a KV cache, in batches the decoder picks for its
own memory, and decodes each step's tokens from the frequency tables. Because the engine's
numbers do not depend on the batch or on prefill versus stepping (see `llama`), both sides see
the same tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import schedule
from ..coder import StreamDecoder, StreamEncoder
from ..errors import FormatError
from ..quantize import frequencies_integer
from .llama import PortableLlama


@dataclass
class EncodedStreams:
    streams: list[bytes]
    quantized_bits: float  # -log2 of the coded probabilities
    cross_entropy_bits: float  # -log2 p under the engine's softmax before quantization: the estimate


def _window_tokens(ids: list[int], windows: list[schedule.Window], bos: int, device: torch.device) -> torch.Tensor:
    """Model inputs (rows, longest): BOS then each window's tokens but its last, BOS-padded at the
    end (padding comes after every real position, so causal attention never sees it)."""
    longest = max(w.length for w in windows)
    rows = torch.full((len(windows), longest), bos, dtype=torch.long)
    for i, w in enumerate(windows):
        rows[i, 1 : w.length] = torch.tensor(ids[w.start : w.start + w.length - 1], dtype=torch.long)
    return rows.to(device)


def encode(engine: PortableLlama, ids: list[int], bos: int, context: int, per_stream: int,
           windows_per_call: int, on_tokens: Callable[[int], None] | None = None) -> EncodedStreams:
    """Code a block's tokens into streams of `per_stream` windows with full-sequence forwards."""
    windows = schedule.windows(len(ids), context)
    targets_all = torch.tensor(ids, dtype=torch.long)
    result = EncodedStreams([], 0.0, 0.0)
    for group in schedule.stream_groups(len(windows), per_stream):
        members = [windows[i] for i in group]
        steps = members[0].length
        lows = np.zeros((steps, len(members)), dtype=np.int64)
        freqs = np.ones((steps, len(members)), dtype=np.int64)
        for first in range(0, len(members), windows_per_call):
            call = members[first : first + windows_per_call]
            inputs = _window_tokens(ids, call, bos, engine.device)
            targets = torch.zeros_like(inputs)  # positions past a window's end are not coded
            for row, w in enumerate(call):
                targets[row, : w.length] = targets_all[w.start : w.start + w.length]
            low, freq, nll_bits = (t.cpu() for t in engine.intervals(inputs, targets))
            for row, w in enumerate(call):
                lows[: w.length, first + row], freqs[: w.length, first + row] = low[row, : w.length].numpy(), freq[row, : w.length].numpy()
                result.cross_entropy_bits += float(nll_bits[row, : w.length].sum())
                if on_tokens is not None:
                    on_tokens(w.length)
        coded = np.arange(steps)[:, None] < np.array([w.length for w in members])[None, :]  # step-major order
        encoder = StreamEncoder()
        encoder.push(lows[coded], freqs[coded])
        result.streams.append(encoder.finish())
        result.quantized_bits += encoder.bits_ideal
    return result


def decode(engine: PortableLlama, streams: list[bytes], n_tokens: int, bos: int, context: int, per_stream: int,
           streams_per_call: int, on_tokens: Callable[[int], None] | None = None) -> list[int]:
    """The block's token ids from its streams, stepping `streams_per_call` streams' windows at once."""
    windows = schedule.windows(n_tokens, context)
    groups = schedule.stream_groups(len(windows), per_stream)
    if len(streams) != len(groups):
        raise FormatError(f"corrupted file: a block has {len(streams)} coded streams where its layout needs {len(groups)}")
    ids: list[int] = []
    for first in range(0, len(groups), streams_per_call):
        call = groups[first : first + streams_per_call]
        decoders = [StreamDecoder(streams[first + g]) for g in range(len(call))]
        members = [windows[i] for group in call for i in group]
        lengths = [w.length for w in members]
        offset = call[0].start  # window index of the call's first row
        cache = engine.new_cache(len(members), min(context, max(lengths)))
        feed = torch.full((len(members), 1), bos, dtype=torch.long, device=engine.device)
        decoded = np.zeros((max(lengths), len(members)), dtype=np.int64)
        for step, running in enumerate(schedule.running_counts(lengths)):
            logits = engine.forward(feed, cache)[:running, 0]
            freqs = frequencies_integer(logits)
            parts = []
            for decoder, group in zip(decoders, call):
                rows = slice(group.start - offset, min(group.stop - offset, running))
                if rows.start < rows.stop:
                    parts.append(decoder.decode(freqs[rows]))
            tokens = np.concatenate(parts)
            decoded[step, :running] = tokens
            feed = torch.full_like(feed, bos)
            feed[:running, 0] = torch.from_numpy(tokens).to(engine.device)
            if on_tokens is not None:
                on_tokens(running)
        for i, length in enumerate(lengths):
            ids.extend(decoded[:length, i].tolist())
    return ids
