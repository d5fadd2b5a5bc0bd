"""The codec loop of the portable engine: whole windows in when compressing, one step at a time
when decompressing, the same integers either way.

The windows come from the block's `schedule.Layout`. Compression evaluates each window, carried
context included, in one full-sequence forward (as many windows per call as suit the machine) and
turns each coded position's logits into the coded token's interval. Decompression goes round by
round through the lanes of whole streams: one prefill of each lane's carried context (decoded in
the round before), then one step per token over a KV cache, at a batch of streams the decoder
picks for its own memory. Because the engine's numbers do not depend on the batch or on prefill
versus stepping (see `llama`), both sides see the same tables.
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


def _model_inputs(ids: list[int], windows: list[schedule.Window], bos: int, device: torch.device) -> torch.Tensor:
    """Rows of BOS, the carried context, then each window's tokens but its last, BOS-padded at the
    end (padding comes after every real position, so causal attention never sees it). All windows
    of one call carry the same prefix length."""
    longest = max(w.prefix + w.length for w in windows)
    rows = torch.full((len(windows), longest), bos, dtype=torch.long)
    for i, w in enumerate(windows):
        seen = ids[w.start - w.prefix : w.start + w.length - 1]
        rows[i, 1 : 1 + len(seen)] = torch.tensor(seen, dtype=torch.long)
    return rows.to(device)


def _window_intervals(engine: PortableLlama, ids: list[int], windows: list[schedule.Window], bos: int,
                      windows_per_call: int, result: EncodedStreams,
                      on_tokens: Callable[[int], None] | None) -> dict[schedule.Window, tuple[np.ndarray, np.ndarray]]:
    """Each window's coded tokens as range-coder intervals (low, freq), from full-sequence forwards
    of as many windows per call as asked (windows of equal carried context share a call)."""
    targets_all = torch.tensor(ids, dtype=torch.long)
    out = {}
    by_prefix: dict[int, list[schedule.Window]] = {}
    for w in windows:
        by_prefix.setdefault(w.prefix, []).append(w)
    for prefix, group in by_prefix.items():
        for first in range(0, len(group), windows_per_call):
            call = group[first : first + windows_per_call]
            inputs = _model_inputs(ids, call, bos, engine.device)
            targets = torch.zeros((len(call), inputs.shape[1] - prefix), dtype=torch.long)  # past a window's end: not coded
            for row, w in enumerate(call):
                targets[row, : w.length] = targets_all[w.start : w.start + w.length]
            low, freq, nll_bits = (t.cpu() for t in engine.intervals(inputs, targets.to(engine.device), logits_from=prefix))
            for row, w in enumerate(call):
                out[w] = (low[row, : w.length].numpy(), freq[row, : w.length].numpy())
                result.cross_entropy_bits += float(nll_bits[row, : w.length].sum())
                if on_tokens is not None:
                    on_tokens(w.length)
    return out


def encode(engine: PortableLlama, ids: list[int], bos: int, layout: schedule.Layout, per_stream: int,
           windows_per_call: int, on_tokens: Callable[[int], None] | None = None) -> EncodedStreams:
    """Code a block's tokens into streams of `per_stream` lanes with full-sequence forwards."""
    result = EncodedStreams([], 0.0, 0.0)
    for rounds in layout.streams(len(ids), per_stream):
        coded = _window_intervals(engine, ids, [w for windows in rounds for w in windows], bos, windows_per_call,
                                  result, on_tokens)
        encoder = StreamEncoder()
        for windows in rounds:  # round by round, step-major inside a round
            lows, freqs = (np.zeros((windows[0].length, len(windows)), dtype=np.int64) for _ in range(2))
            for lane, w in enumerate(windows):
                lows[: w.length, lane], freqs[: w.length, lane] = coded[w]
            present = np.arange(windows[0].length)[:, None] < np.array([w.length for w in windows])[None, :]
            encoder.push(lows[present], freqs[present])
        result.streams.append(encoder.finish())
        result.quantized_bits += encoder.bits_ideal
    return result


def decode(engine: PortableLlama, streams: list[bytes], n_tokens: int, bos: int, layout: schedule.Layout,
           per_stream: int, streams_per_call: int, on_tokens: Callable[[int], None] | None = None) -> list[int]:
    """The block's token ids from its streams, stepping `streams_per_call` streams' lanes at once.

    Each round of windows starts with one prefill of BOS and the carried context (tokens decoded
    in earlier rounds of the same lanes), which also yields the first coded token's logits.
    """
    layouts = layout.streams(n_tokens, per_stream)
    if len(streams) != len(layouts):
        raise FormatError(f"corrupted file: a block has {len(streams)} coded streams where its layout needs {len(layouts)}")
    ids = np.zeros(n_tokens, dtype=np.int64)
    for first in range(0, len(layouts), streams_per_call):
        call = layouts[first : first + streams_per_call]
        decoders = [StreamDecoder(streams[first + g]) for g in range(len(call))]
        lanes = [len(rounds[0]) for rounds in call]  # lanes of each stream in the call
        offsets = np.cumsum([0] + lanes)  # the call's first row of each stream
        cache = engine.new_cache(int(offsets[-1]), layout.context)
        for r in range(max(len(rounds) for rounds in call)):
            # The round's windows, one per row; rows whose lane has no window this round read BOS.
            members: list[schedule.Window | None] = []
            for rounds, count in zip(call, lanes):
                present = rounds[r] if r < len(rounds) else []
                members += present + [None] * (count - len(present))
            active = [w for w in members if w is not None]
            prefix = active[0].prefix
            feed = torch.full((len(members), 1 + prefix), bos, dtype=torch.long)
            for row, w in enumerate(members):
                if w is not None and prefix:
                    feed[row, 1:] = torch.from_numpy(ids[w.start - prefix : w.start])
            feed = feed.to(engine.device)
            cache.length = 0
            lengths = [w.length if w is not None else 0 for w in members]
            for step in range(max(lengths)):
                logits = engine.forward(feed, cache, logits_from=feed.shape[1] - 1)[:, -1]
                running = [row for row, length in enumerate(lengths) if length > step]
                freqs = frequencies_integer(logits[running])
                tokens = np.full(len(members), bos, dtype=np.int64)  # what rows without a token read next
                at = 0
                for g, decoder in enumerate(decoders):
                    rows = [row for row in running if offsets[g] <= row < offsets[g + 1]]
                    if rows:
                        tokens[rows] = decoder.decode(freqs[at : at + len(rows)])
                        at += len(rows)
                for row in running:
                    ids[members[row].start + step] = tokens[row]
                feed = torch.from_numpy(tokens[:, None]).to(engine.device)
                if on_tokens is not None:
                    on_tokens(len(running))
    return ids.tolist()
