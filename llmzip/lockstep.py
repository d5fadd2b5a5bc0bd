"""The codec loop of the float engines: a batch of windows stepped together, the same way in both
directions.

Float logits from a full-sequence forward and from stepping differ in their last bits, so these
engines never take the full-sequence shortcut: both directions run one and the same function,
`Lockstep.code_batch`, over the same windows with the same batch shapes. Only where each step's
tokens come from differs (the input when encoding, the range decoder when decoding), and that is
what makes the decoder's frequencies equal the encoder's bit for bit. On a GPU nothing in a batch
waits for the host: the step (a CUDA-graph replay), the fused quantizer and the range decoder
(`llmzip.kernels.range_decode`) all run on the device, and a batch's streams are coded on the
host while the next batch runs.

The schedule (which windows, which batches, which windows share a stream) is `llmzip.schedule`'s;
the steppers are `llmzip.inference`'s; tokens become frequencies in `llmzip.quantize` and bits in
`llmzip.coder`. The portable engine's loop is `llmzip.portable.coding`.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import schedule
from .coder import StreamDecoder, StreamEncoder, device_decoders
from .container import Block, Header
from .errors import FormatError
from .inference import TRANSFORMERS_ENGINE, StaticLlamaStepper, Stepper, make_stepper
from .models import LoadedModel
from .quantize import TRITON_QUANTIZER, frequencies, fused_cumulative, fused_intervals, intervals

if TYPE_CHECKING:
    from .codec import Stats

_LN2 = math.log(2.0)
_KEPT_STEPPERS = 4  # a block's last batch has its own shape; keep a few static steppers for reuse


def batches(n_tokens: int, context: int, batch: int) -> Iterator[tuple[int, list[int]]]:
    """(first token index, window lengths) for each lockstep batch of a block: windows from BOS,
    `batch` of them stepped together."""
    windows = schedule.windows(n_tokens, context)
    for group in schedule.stream_groups(len(windows), batch):
        yield windows[group.start].start, [windows[i].length for i in group]


class Lockstep:
    """The float engines' loop for one loaded model: its steppers (the static engine's, with their
    CUDA graphs, kept for reuse) and the timing of each phase into `Stats`."""

    def __init__(self, model: LoadedModel):
        self.model = model
        self.steppers: dict[tuple[int, int, str], StaticLlamaStepper] = {}
        # Synchronize the GPU around each timed phase, so Stats splits time between model,
        # quantizer and coder truthfully (benchmarks turn it on; it costs speed).
        self.timing_sync = False

    @contextlib.contextmanager
    def clock(self, stats: Stats, name: str) -> Iterator[None]:
        """Add the time spent inside to stats.<name>; with `timing_sync` the GPU's queued work counts too."""
        sync = self.timing_sync and self.model.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.model.device)
        started = time.perf_counter()
        yield
        if sync:
            torch.cuda.synchronize(self.model.device)
        setattr(stats, name, getattr(stats, name) + time.perf_counter() - started)

    def _stepper(self, engine: str, rows: int, context: int) -> Stepper:
        """A stepper for a new batch."""
        if engine == TRANSFORMERS_ENGINE:
            return make_stepper(engine, self.model.model, rows, context)
        key = (rows, context, engine)
        stepper = self.steppers.get(key)
        if stepper is None:
            if len(self.steppers) >= _KEPT_STEPPERS:
                self.steppers.clear()
            stepper = self.steppers[key] = make_stepper(engine, self.model.model, rows, context)
        else:
            stepper.reset()
        return stepper

    def code_batch(self, lengths: list[int], engine: str, context: int, stats: Stats,
                   choose: Callable[[int, torch.Tensor, int], torch.Tensor],
                   on_step: Callable[[int], None] | None = None) -> None:
        """Step `len(lengths)` windows together; `choose(step, logits, running)` returns the step's
        tokens (running,) on the model's device, for the windows still running.

        Windows are consecutive slices of a block, all full but the last, so the windows still
        running at any step are a prefix of the batch. Every step feeds all windows (a finished
        window is fed BOS and its output ignored), so the batch shape is the same in both
        directions whatever the window lengths; nothing here waits for the GPU.
        """
        m = self.model
        n = len(lengths)
        if any(a < b for a, b in itertools.pairwise(lengths)):
            raise AssertionError("window lengths must not increase within a batch")
        stepper = self._stepper(engine, n, context)
        steps = max(lengths)
        # running[t]: windows with a token at step t (a prefix of the batch, see above).
        running = (np.array(lengths)[None, :] > np.arange(steps + 1)[:, None]).sum(axis=1).tolist()
        feed = torch.full((n, 1), m.bos_id, dtype=torch.long, device=m.device)
        for step in range(steps):
            with self.clock(stats, "model_seconds"):
                logits = stepper.step(feed)
            chosen = choose(step, logits, running[step])
            continuing = running[step + 1]
            feed = torch.full((n, 1), m.bos_id, dtype=torch.long, device=m.device)
            feed[:continuing, 0] = chosen[:continuing]
            if on_step is not None:
                on_step(running[step])

    # ------------------------------------------------------------------------------------------
    # Compression

    def encode(self, ids: list[int], stats: Stats, on_step: Callable[[int, int], None], *, engine: str,
               quantizer: str, context: int, batch: int, stream_windows: int) -> list[bytes]:
        """A block's tokens as coded streams of `stream_windows` windows each; `on_step(tokens
        done, tokens in block)` reports progress."""
        done = [0]
        streams: list[bytes] = []
        # A batch's streams are coded on the host while the next batch runs on the device: its
        # intervals are copied off asynchronously, and coded once that batch has a few steps queued.
        unfinished: list[Callable[[], None]] = []
        steps_queued = [0]

        def finish_previous() -> None:
            while unfinished:
                unfinished.pop(0)()

        def step_done(count: int) -> None:
            done[0] += count
            on_step(done[0], len(ids))
            if unfinished and steps_queued[0] >= 2:
                finish_previous()
            steps_queued[0] += 1

        for first, lengths in batches(len(ids), context, batch):
            steps_queued[0] = 0
            lows, freqs, nll_total = self._encode_batch(ids[first : first + len(lengths) * context], lengths, stats,
                                                        step_done, engine=engine, quantizer=quantizer, context=context)
            finish_previous()  # a batch shorter than three steps
            unfinished.append(self._stream_coder(lengths, stream_windows, lows, freqs, nll_total, stats, streams))
        finish_previous()
        return streams

    def _encode_batch(self, ids: list[int], lengths: list[int], stats: Stats, on_step: Callable[[int], None], *,
                      engine: str, quantizer: str, context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step one batch of windows (`ids` is their tokens, window after window) and return, on the
        device, each step's intervals (low, freq), step-major, and the batch's cross-entropy in nats."""
        device = self.model.device
        fused = quantizer.startswith(TRITON_QUANTIZER)
        n, steps = len(lengths), max(lengths)
        # Step-major on the device: row t holds every window's token t (BOS-padded).
        known_steps = torch.full((steps, n), self.model.bos_id, dtype=torch.long)
        for i, length in enumerate(lengths):
            known_steps[:length, i] = torch.tensor(ids[i * context : i * context + length], dtype=torch.long)
        known_steps = known_steps.to(device)
        lows = torch.zeros((steps, n), dtype=torch.int64, device=device)
        freqs = torch.ones((steps, n), dtype=torch.int64, device=device)
        nll_total = torch.zeros((), dtype=torch.float64, device=device)

        def choose(step: int, logits: torch.Tensor, running: int) -> torch.Tensor:
            nonlocal nll_total
            known = known_steps[step, :running]
            with self.clock(stats, "quantize_seconds"):
                if fused:  # the kernel computes each row's interval without writing a table
                    low, freq = fused_intervals(logits[:running], known)
                else:
                    low, freq = intervals(frequencies(logits, quantizer)[:running], known)
                lows[step, :running] = low
                freqs[step, :running] = freq
            # The estimate beside the real size: float32 per token (1e-7 relative), summed in float64.
            x = logits[:running].float()
            nll = torch.logsumexp(x, dim=-1) - x.gather(-1, known[:, None])[:, 0]
            nll_total = nll_total + nll.double().sum()
            return known

        self.code_batch(lengths, engine, context, stats, choose, on_step)
        return lows, freqs, nll_total

    def _stream_coder(self, lengths: list[int], stream_windows: int, lows: torch.Tensor, freqs: torch.Tensor,
                      nll_total: torch.Tensor, stats: Stats, streams: list[bytes]) -> Callable[[], None]:
        """Start copying a batch's intervals to the host; the returned call codes them into `streams`."""
        on_gpu = lows.device.type == "cuda"
        host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=on_gpu) for t in (lows, freqs, nll_total)]
        for target, source in zip(host, (lows, freqs, nll_total)):
            target.copy_(source, non_blocking=on_gpu)
        copied = torch.cuda.Event() if on_gpu else None
        if copied is not None:
            copied.record()

        def code() -> None:
            with self.clock(stats, "coder_seconds"):
                if copied is not None:
                    copied.synchronize()
                low_host, freq_host = host[0].numpy(), host[1].numpy()
                running = np.array(lengths)[None, :] > np.arange(low_host.shape[0])[:, None]
                for rows in schedule.stream_groups(len(lengths), stream_windows):
                    cols = slice(rows.start, rows.stop)
                    coded = running[:, cols]  # step-major, window-minor: the coding order
                    encoder = StreamEncoder()
                    encoder.push(low_host[:, cols][coded], freq_host[:, cols][coded])
                    streams.append(encoder.finish())
                    stats.quantized_bits += encoder.bits_ideal
                stats.cross_entropy_bits += float(host[2]) / _LN2

        return code

    # ------------------------------------------------------------------------------------------
    # Decompression

    def decode(self, block: Block, header: Header, stats: Stats, text_limit: int,
               on_step: Callable[[int], None]) -> list[int]:
        """A block's token ids from its streams, stepping the batches `header` describes; ids no
        valid stream yields, or more text than `text_limit` bytes, are refused window by window."""
        streams = iter(block.streams)
        text_len = 0
        ids: list[int] = []
        for _, lengths in batches(block.n_tokens, header.context, header.batch):
            decoded = self._decode_batch(streams, lengths, header, stats, on_step)
            for i, length in enumerate(lengths):
                window = decoded[:length, i]
                text_len += self.model.table.decoded_bytes(window, text_limit - text_len)
                ids.extend(window.tolist())
        return ids

    def _decode_batch(self, streams: Iterator[bytes], lengths: list[int], header: Header, stats: Stats,
                      on_step: Callable[[int], None]) -> np.ndarray:
        """One batch of windows decoded from the next of the block's `streams` (one per group of
        windows that share a stream): tokens (steps, windows), step-major."""
        device = self.model.device
        per_stream = header.windows_per_stream()
        groups = schedule.stream_groups(len(lengths), per_stream)
        batch_streams = [next(streams) for _ in groups]
        decoded = torch.zeros((max(lengths), len(lengths)), dtype=torch.long, device=device)
        on_device = header.quantizer.startswith(TRITON_QUANTIZER)
        if on_device:
            decoder = device_decoders(batch_streams, per_stream, device)
        else:
            decoders = [StreamDecoder(stream) for stream in batch_streams]

        def choose(step: int, logits: torch.Tensor, running: int) -> torch.Tensor:
            if on_device:  # the table stays on the device; only tokens come out, with no sync
                with self.clock(stats, "quantize_seconds"):
                    cdf = fused_cumulative(logits[:running])
                with self.clock(stats, "coder_seconds"):
                    tokens = decoder.decode(cdf, running)
            else:
                with self.clock(stats, "quantize_seconds"):
                    freqs = frequencies(logits, header.quantizer)
                with self.clock(stats, "coder_seconds"):
                    parts = [decoders[g].decode(freqs[rows.start : min(rows.stop, running)])
                             for g, rows in enumerate(groups) if rows.start < running]
                    tokens = torch.from_numpy(np.concatenate(parts)).to(device)
            decoded[step, :running] = tokens
            return tokens

        self.code_batch(lengths, header.engine, header.context, stats, choose, on_step)
        if on_device and decoder.failed():
            raise FormatError("corrupted file: a coded stream is invalid")
        return decoded.cpu().numpy()
