"""The codec loop of the portable engine: whole windows in when compressing, one step at a time
when decompressing, the same integers either way.

The windows come from the block's `schedule.Layout`. Compression evaluates each window, carried
context included, in one full-sequence forward (as many windows per call as suit the machine) and
turns each coded position's logits into the coded token's interval. Decompression goes round by
round through the lanes of whole streams: one prefill of each lane's carried context (decoded in
the round before), then one step per token over a KV cache, at a batch of streams the decoder
picks for its own memory. Because the engine's numbers do not depend on the batch or on prefill
versus stepping (see `llama`), both sides see the same tables. With a mixer, both sides then run
each stream's match model and mixer (`llmzip.match`) through the same coding order, so they move
the same mass in the same tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from .. import schedule
from ..coder import StreamDecoder, StreamEncoder
from ..errors import FormatError
from ..adapt import LogitBias
from ..match import MatchModel, Mixer, mix_interval, mix_table
from ..quantize import TOTAL, frequencies_integer, tables_integer
from .llama import Activations, PortableLlama, head_rows, join_rows


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


def _calls(engine: PortableLlama, ids: list[int], windows: list[schedule.Window], bos: int, windows_per_call: int):
    """Full-sequence forwards of as many windows per call as asked (windows of equal carried
    context share a call): per call, its windows, the output layer's inputs for their coded
    positions (flat, window after window, each `span` rows long) and `span`."""
    by_prefix: dict[int, list[schedule.Window]] = {}
    for w in windows:
        by_prefix.setdefault(w.prefix, []).append(w)
    for prefix, group in by_prefix.items():
        for first in range(0, len(group), windows_per_call):
            call = group[first : first + windows_per_call]
            inputs = _model_inputs(ids, call, bos, engine.device)
            yield call, engine.head_inputs(inputs, logits_from=prefix), inputs.shape[1] - prefix


def _call_targets(ids: list[int], call: list[schedule.Window], span: int,
                  predicted: dict[schedule.Window, np.ndarray] | None) -> torch.Tensor:
    """Each window's coded tokens, and with `predicted` the match model's guesses beside them, as
    (windows, span, 1 or 2); positions past a window's end are not coded, and a position without a
    prediction asks its target twice."""
    targets = torch.zeros((len(call), span, 1 if predicted is None else 2), dtype=torch.long)
    for row, w in enumerate(call):
        coded = torch.tensor(ids[w.start : w.start + w.length], dtype=torch.long)
        targets[row, : w.length] = coded[:, None] if predicted is None else _asked(coded, torch.from_numpy(predicted[w]))
    return targets


def _asked(coded: torch.Tensor, guesses: torch.Tensor) -> torch.Tensor:
    """Coded tokens (n,) and the match model's guesses (n,), -1 for none, as the (n, 2) tokens
    whose intervals are asked: a position without a guess asks its coded token twice."""
    return torch.stack((coded, torch.where(guesses >= 0, guesses, coded)), dim=-1)


def _window_intervals(engine: PortableLlama, ids: list[int], windows: list[schedule.Window], bos: int,
                      windows_per_call: int, result: EncodedStreams, on_tokens: Callable[[int], None] | None,
                      predicted: dict[schedule.Window, np.ndarray] | None = None,
                      adapt_rounds: list[list[schedule.Window]] | None = None, counted: bool = False
                      ) -> tuple[dict[schedule.Window, np.ndarray], dict[schedule.Window, np.ndarray] | None]:
    """Each window's coded tokens as range-coder intervals, (length, 2) of (low, freq), from
    full-sequence forwards. With `predicted` (each window's match predictions, -1 for none), also
    the predicted tokens' intervals: (length, 4) of (low, freq, predicted low, predicted freq).

    With `adapt_rounds` (the rounds of the one stream `windows` make up), the same windows are also
    coded through a `LogitBias` (`counted`: adapt-v2's rates) trained in the coding order
    (`_adapted_intervals`), from the same forwards, and returned second (else None)."""
    out = {}
    kept: list[tuple[list[schedule.Window], Activations, int]] = []
    for call, x, span in _calls(engine, ids, windows, bos, windows_per_call):
        targets = _call_targets(ids, call, span, predicted)
        low, freq, nll_bits = (t.cpu() for t in engine.head_intervals(x, targets.to(engine.device)))
        for row, w in enumerate(call):
            out[w] = torch.stack((low[row, : w.length], freq[row, : w.length]), dim=-1).flatten(1).numpy()
            result.cross_entropy_bits += float(nll_bits[row, : w.length, 0].sum())
            if on_tokens is not None:
                on_tokens(w.length)
        if adapt_rounds is not None:
            kept.append((call, x, span))
    return out, None if adapt_rounds is None else _adapted_intervals(engine, ids, adapt_rounds, kept, predicted, counted)


def _adapted_intervals(engine: PortableLlama, ids: list[int], rounds: list[list[schedule.Window]],
                       calls: list[tuple[list[schedule.Window], Activations, int]],
                       predicted: dict[schedule.Window, np.ndarray] | None, counted: bool) -> dict[schedule.Window, np.ndarray]:
    """The intervals `_window_intervals` gives, but from logits plus a stream's `LogitBias`, which
    learns after every step of the coding order: one step of the stream's lanes at a time."""
    where: dict[schedule.Window, int] = {}  # each window's first row in the joined output-layer inputs
    base = 0
    for call, x, span in calls:
        for row, w in enumerate(call):
            where[w] = base + row * span
        base += len(call) * span
    x = join_rows([x for _, x, _ in calls])
    calls.clear()  # the joined rows replace the calls' own: one copy in memory, not two
    bias = LogitBias(engine.vocab_size, engine.device, counted)
    columns = 1 if predicted is None else 2
    out = {w: np.zeros((w.length, 2 * columns), dtype=np.int64) for round_windows in rounds for w in round_windows}
    for round_windows in rounds:
        for step, lanes, positions, logits in _step_logits(engine, x, where, round_windows):
            lane_windows = [round_windows[lane] for lane in lanes]
            targets = torch.tensor([[ids[p]] for p in positions], dtype=torch.long)
            if predicted is not None:
                targets = _asked(targets[:, 0], torch.tensor([int(predicted[w][step]) for w in lane_windows]))
            tables, low, freq, _ = tables_integer(bias.apply(logits), targets.to(logits.device))
            bias.update(tables, targets[:, 0])
            coded = torch.stack((low, freq), dim=-1).flatten(1).cpu().numpy()
            for w, row in zip(lane_windows, coded):
                out[w][step] = row
    return out


def _step_logits(engine: PortableLlama, x: Activations, where: dict[schedule.Window, int],
                 windows: list[schedule.Window]):
    """`_steps` of a round with each step's logits (lanes, V) before the bias. The bias needs
    the steps one after another, but the logits do not: the output layer runs over the rows of
    as many steps as fill one of its blocks, so its weights are read once per block, not per step."""
    block = head_rows(engine.device)
    pending: list[tuple[int, list[int], list[int]]] = []  # steps whose logits are not computed yet
    rows = 0

    def flush():
        index = torch.tensor([where[windows[lane]] + step for step, lanes, _ in pending for lane in lanes])
        logits = engine.head_logits(x, index)
        first = 0
        for step, lanes, positions in pending:
            yield step, lanes, positions, logits[first : first + len(lanes)]
            first += len(lanes)

    for step, lanes, positions in _steps(windows):
        if rows + len(lanes) > block and pending:
            yield from flush()
            pending, rows = [], 0
        pending.append((step, lanes, positions))
        rows += len(lanes)
    if pending:
        yield from flush()


def _steps(windows: list[schedule.Window]):
    """A round's coding order: per step, the lanes that code a token and those tokens' positions."""
    for step in range(max(w.length for w in windows)):
        lanes = [lane for lane, w in enumerate(windows) if w.length > step]
        yield step, lanes, [windows[lane].start + step for lane in lanes]


def _match_predictions(ids: list[int], rounds: list[list[schedule.Window]]) -> dict[schedule.Window, np.ndarray]:
    """What the match model predicts at each coded position of a stream, (length, 2) per window of
    (predicted token or -1, match length), replaying the decoder's coding order."""
    model = MatchModel([w.start for w in rounds[0]], len(ids))
    out = {w: np.full((w.length, 2), -1, dtype=np.int64) for windows in rounds for w in windows}
    for windows in rounds:
        for step, lanes, positions in _steps(windows):
            for lane, guess in zip(lanes, model.predict(lanes, positions)):
                out[windows[lane]][step] = guess
            model.update(lanes, positions, [ids[p] for p in positions])
    return out


def encode(engine: PortableLlama, ids: list[int], bos: int, layout: schedule.Layout, per_stream: int,
           windows_per_call: int, on_tokens: Callable[[int], None] | None = None,
           mixing: bool = False, adapt: bool = False, counted: bool = False) -> EncodedStreams:
    """Code a block's tokens into streams of `per_stream` lanes with full-sequence forwards.

    With `mixing`, each stream starts with one flag symbol saying whether the match model's
    predictions are mixed into its frequencies (see `llmzip.match`), and the encoder codes it
    both ways and keeps the shorter: on text the LLM already predicts well, mixing can cost a
    little, and then it is left out. With `adapt` as well, the flag also says whether the logits
    go through a `LogitBias` first (`llmzip.adapt`; `counted`: adapt-v2's rates per token), and the
    shortest of the four ways is kept."""
    result = EncodedStreams([], 0.0, 0.0)
    for rounds in layout.streams(len(ids), per_stream):
        windows = [w for round_windows in rounds for w in round_windows]
        predicted = _match_predictions(ids, rounds) if mixing else None
        guesses = None if predicted is None else {w: p[:, 0] for w, p in predicted.items()}
        coded, adapted = _window_intervals(engine, ids, windows, bos, windows_per_call, result, on_tokens, guesses,
                                           rounds if adapt else None, counted)
        if predicted is None:
            stream, bits = _stream(None, *_plain_intervals(rounds, coded))
        else:
            ways = [coded] if adapted is None else [coded, adapted]
            candidates = []
            for biased, intervals in enumerate(ways):
                candidates.append(_stream(_flag(False, bool(biased)), *_plain_intervals(rounds, intervals), adapt))
                candidates.append(_stream(_flag(True, bool(biased)), *_mixed_intervals(ids, rounds, intervals, predicted,
                                                                                       engine.vocab_size), adapt))
            stream, bits = _shortest(candidates)
        result.streams.append(stream)
        result.quantized_bits += bits
    return result


def _shortest(candidates: list[tuple[bytes, float]]) -> tuple[bytes, float]:
    """The stream the encoder keeps of the ways it coded one: the shortest (a tie keeps the first)."""
    return min(candidates, key=lambda coded_stream: len(coded_stream[0]))


def _flag(mixed: bool, biased: bool) -> int:
    """A stream's flag value: bit 0 the match model's mixing, bit 1 the logit bias."""
    return int(mixed) | int(biased) << 1


def _flag_freq(adapt: bool) -> int:
    """The flag's values are equally likely: two of them (mixing), or four (mixing and adapting)."""
    return TOTAL // (4 if adapt else 2)


class StreamFlag(NamedTuple):
    """A mixer file's stream's first symbol: whether the match model is mixed in (match-v1,
    adapt-v1, adapt-v2) and whether the logits go through a logit bias (adapt-v1 and adapt-v2 only)."""
    mixed: bool
    biased: bool


def read_stream_flag(decoder: StreamDecoder, adapt: bool = False) -> StreamFlag:
    """Decode a stream's flag: two values under match-v1, four under adapt-v1 and adapt-v2 (`adapt`)."""
    values = 4 if adapt else 2
    flag = int(decoder.decode(torch.full((1, values), _flag_freq(adapt), dtype=torch.int64))[0])
    return StreamFlag(mixed=bool(flag & 1), biased=bool(flag & 2))


def _stream(flag: int | None, lows: np.ndarray, freqs: np.ndarray, adapt: bool = False) -> tuple[bytes, float]:
    """A coded stream (the flag first, when there is one) and its ideal size in bits."""
    encoder = StreamEncoder()
    if flag is not None:
        encoder.push(np.array([flag * _flag_freq(adapt)]), np.array([_flag_freq(adapt)]))
    encoder.push(lows, freqs)
    return encoder.finish(), encoder.bits_ideal


def _plain_intervals(rounds: list[list[schedule.Window]], coded: dict[schedule.Window, np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A stream's intervals in coding order: round by round, step-major inside a round."""
    lows, freqs = [], []
    for round_windows in rounds:
        steps = round_windows[0].length
        low, freq = (np.zeros((steps, len(round_windows)), dtype=np.int64) for _ in range(2))
        for lane, w in enumerate(round_windows):
            low[: w.length, lane], freq[: w.length, lane] = coded[w][:, 0], coded[w][:, 1]
        present = np.arange(steps)[:, None] < np.array([w.length for w in round_windows])[None, :]
        lows.append(low[present])
        freqs.append(freq[present])
    return np.concatenate(lows), np.concatenate(freqs)


def _mixed_intervals(ids: list[int], rounds: list[list[schedule.Window]], coded: dict[schedule.Window, np.ndarray],
                     predicted: dict[schedule.Window, np.ndarray], vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """A stream's coded intervals in coding order after mixing, the mixer learning as the decoder will."""
    mixer = Mixer()
    lows, freqs = [], []
    for windows in rounds:
        for step, lanes, positions in _steps(windows):
            updates = []
            for lane, position in zip(lanes, positions):
                w = windows[lane]
                low, freq, guess_low, guess_freq = (int(v) for v in coded[w][step])
                guess, length = (int(v) for v in predicted[w][step])
                if guess >= 0:
                    keep = mixer.keep(length, guess_freq)
                    low, freq = mix_interval(low, freq, ids[position], guess, guess_low, guess_freq, vocab, keep)
                    updates.append((length, guess_freq, ids[position] == guess))
                lows.append(low)
                freqs.append(freq)
            for update in updates:  # after the whole step, in lane order
                mixer.update(*update)
    return np.array(lows, dtype=np.int64), np.array(freqs, dtype=np.int64)


class _DecodingStream:
    """One coded stream in the decoder: its range decoder, and the adaptive parts its flag switches
    on (a `LogitBias`; a match model and mixer), each fed its stream's steps in the coding order."""

    def __init__(self, stream: bytes, rounds: list[list[schedule.Window]], n_tokens: int, vocab: int,
                 device: torch.device, mixing: bool, adapt: bool, counted: bool) -> None:
        self.decoder = StreamDecoder(stream)
        flag = read_stream_flag(self.decoder, adapt) if mixing else StreamFlag(False, False)
        self.bias = LogitBias(vocab, device, counted) if flag.biased else None
        self.match = MatchModel([w.start for w in rounds[0]], n_tokens) if flag.mixed else None
        self.mixer = Mixer() if flag.mixed else None
        self.lanes = len(rounds[0])

    def step(self, logits: torch.Tensor, plain: torch.Tensor | None, lanes: list[int], positions: list[int]) -> np.ndarray:
        """Decode one step's tokens of this stream's running `lanes` (coding `positions`) from the
        engine's `logits` (rows, V) and, for a stream without a bias, their int-v1 tables `plain`
        (computed for the whole call at once); then let each adaptive part learn from them."""
        tables = plain if self.bias is None else frequencies_integer(self.bias.apply(logits))
        coded = tables
        if self.match is not None:
            coded, updates = _mixed_tables(tables, self.match.predict(lanes, positions), self.mixer)
        tokens = self.decoder.decode(coded)
        if self.bias is not None:
            self.bias.update(tables, torch.from_numpy(tokens))
        if self.match is not None:
            self.match.update(lanes, positions, tokens.tolist())
            for (length, guess_freq, guess), token in zip(updates, tokens.tolist()):
                if guess >= 0:
                    self.mixer.update(length, guess_freq, token == guess)
        return tokens


def _round_windows(call: list[list[list[schedule.Window]]], lanes: list[int], r: int) -> list[schedule.Window | None]:
    """Round `r`'s window of every row of a call (its streams' lanes one after another); None for a
    lane without a window in this round (its row reads BOS)."""
    members: list[schedule.Window | None] = []
    for rounds, count in zip(call, lanes):
        present = rounds[r] if r < len(rounds) else []
        members += present + [None] * (count - len(present))
    return members


def _round_prefill(ids: np.ndarray, members: list[schedule.Window | None], bos: int, device: torch.device) -> torch.Tensor:
    """A round's first input: BOS, then each window's carried context, decoded in earlier rounds
    (every window of a round carries the same length)."""
    prefix = next(w for w in members if w is not None).prefix
    feed = torch.full((len(members), 1 + prefix), bos, dtype=torch.long)
    for row, w in enumerate(members):
        if w is not None and prefix:
            feed[row, 1:] = torch.from_numpy(ids[w.start - prefix : w.start])
    return feed.to(device)


def decode(engine: PortableLlama, streams: list[bytes], n_tokens: int, bos: int, layout: schedule.Layout,
           per_stream: int, streams_per_call: int, on_tokens: Callable[[int], None] | None = None,
           mixing: bool = False, adapt: bool = False, counted: bool = False) -> list[int]:
    """The block's token ids from its streams, stepping `streams_per_call` streams' lanes at once.

    Each round of windows starts with one prefill of BOS and the carried context (tokens decoded
    in earlier rounds of the same lanes), which also yields the first coded token's logits.
    With `mixing`, each stream's flag comes first; a mixed stream's match model and mixer go
    through the same coding order as the encoder's, whatever the number of streams per call, and
    so does an adapted stream's `LogitBias` (with `adapt`, where the flag says which streams are;
    `counted`: adapt-v2's rates).
    """
    layouts = layout.streams(n_tokens, per_stream)
    if len(streams) != len(layouts):
        raise FormatError(f"corrupted file: a block has {len(streams)} coded streams where its layout needs {len(layouts)}")
    ids = np.zeros(n_tokens, dtype=np.int64)
    for first in range(0, len(layouts), streams_per_call):
        call = layouts[first : first + streams_per_call]
        coded = [_DecodingStream(streams[first + g], rounds, n_tokens, engine.vocab_size, engine.device, mixing, adapt,
                                 counted)
                 for g, rounds in enumerate(call)]
        lanes = [stream.lanes for stream in coded]
        offsets = np.cumsum([0] + lanes)  # the call's first row of each stream
        cache = engine.new_cache(int(offsets[-1]), layout.context)
        for r in range(max(len(rounds) for rounds in call)):
            members = _round_windows(call, lanes, r)
            feed = _round_prefill(ids, members, bos, engine.device)
            cache.length = 0
            lengths = [w.length if w is not None else 0 for w in members]
            for step in range(max(lengths)):
                logits = engine.forward(feed, cache, logits_from=feed.shape[1] - 1)[:, -1]
                running = [row for row, length in enumerate(lengths) if length > step]
                by_stream = [[row for row in running if offsets[g] <= row < offsets[g + 1]] for g in range(len(coded))]
                # One int-v1 call for every row of the streams without a bias, in row order.
                plain_rows = [row for rows, stream in zip(by_stream, coded) if stream.bias is None for row in rows]
                plain = frequencies_integer(logits[plain_rows]) if plain_rows else None
                tokens = np.full(len(members), bos, dtype=np.int64)  # what rows without a token read next
                at = 0
                for g, (rows, stream) in enumerate(zip(by_stream, coded)):
                    if not rows:
                        continue
                    tables = None
                    if stream.bias is None:
                        tables, at = plain[at : at + len(rows)], at + len(rows)
                    tokens[rows] = stream.step(logits[rows], tables, [row - int(offsets[g]) for row in rows],
                                               [members[row].start + step for row in rows])
                for row in running:
                    ids[members[row].start + step] = tokens[row]
                feed = torch.from_numpy(tokens[:, None]).to(engine.device)
                if on_tokens is not None:
                    on_tokens(len(running))
    return ids.tolist()


def _mixed_tables(tables: torch.Tensor, guesses: list[tuple[int, int]], mixer: Mixer
                  ) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """One step's frequency tables of a stream after mixing, and per row what the mixer learns
    from once the token is known: (match length, the LLM's frequency of the guess, the guess)."""
    rows = tables.cpu().numpy()
    mixed, updates = [], []
    for row, (guess, length) in zip(rows, guesses):
        if guess < 0:
            mixed.append(row)
            updates.append((0, 0, -1))
            continue
        guess_freq = int(row[guess])
        mixed.append(mix_table(row, guess, mixer.keep(length, guess_freq)))
        updates.append((length, guess_freq, guess))
    return torch.from_numpy(np.stack(mixed)), updates
