"""The logit bias learned while coding (adapt-v1, adapt-v2): its exact update rules, files that
round-trip whatever batch either side runs, and a gain where a text's words differ from what the
model expects."""
from __future__ import annotations

import io
import random

import pytest
import torch

from llmzip import Codec, inspect
from llmzip.adapt import COUNT_LIMIT, COUNTED_RATE, LIMIT, STEP, LogitBias, counted_rates
from llmzip.coder import StreamDecoder
from llmzip.container import ADAPT_MIXER, ADAPT_MIXERS, MIXER_CODES, StreamReader
from llmzip.portable.coding import StreamFlag, read_stream_flag
from llmzip.quantize import TOTAL


def test_bias_update_is_the_integer_gradient_step():
    bias = LogitBias(5)
    tables = torch.tensor([[TOTAL - 4, 1, 1, 1, 1], [1, 1, TOTAL - 4, 1, 1]], dtype=torch.int64)
    bias.update(tables, torch.tensor([1, 1]))
    spent = (tables.sum(dim=0) * STEP) >> 24  # floor(STEP * p summed over the step's lanes)
    expected = -spent
    expected[1] += 2 * STEP
    assert torch.equal(bias.bias, expected)
    logits = torch.arange(10, dtype=torch.int64).view(2, 5)
    assert torch.equal(bias.apply(logits), logits + expected)
    for _ in range(LIMIT // STEP + 10):  # always right about token 3: the bias saturates at LIMIT
        bias.update(torch.tensor([[1, 1, 1, TOTAL - 4, 1]]), torch.tensor([3]))
    assert int(bias.bias.max()) <= LIMIT and int(bias.bias.min()) >= -LIMIT


def test_counted_rates_fall_with_the_count():
    rates = counted_rates()
    assert len(rates) == COUNT_LIMIT + 1 and rates[0] == COUNTED_RATE and (rates[99], rates[-1]) == (4727, 184)
    for n in (0, 1, 2, 99, 1000, COUNT_LIMIT):  # R(n) = isqrt(floor(C^2 2^32 / (n + 1))) >> 16: about C / sqrt(n + 1)
        assert abs(rates[n] - COUNTED_RATE / (n + 1) ** 0.5) <= 1
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_counted_bias_update_uses_each_tokens_rate_before_the_step():
    bias = LogitBias(5, counted=True)
    rates = counted_rates()
    tables = torch.tensor([[TOTAL - 4, 1, 1, 1, 1], [1, 1, TOTAL - 4, 1, 1]], dtype=torch.int64)
    bias.update(tables, torch.tensor([1, 1]))  # token 1 twice in one step: both lanes at R(0)
    expected = -((tables.sum(dim=0) * COUNTED_RATE) >> 24)
    expected[1] += 2 * rates[0]
    assert torch.equal(bias.bias, expected)
    assert bias.count.tolist() == [0, 2, 0, 0, 0] and int(bias.rate[1]) == rates[2]
    bias.update(tables[:1], torch.tensor([0]))  # token 1 now spends at R(2), token 0 gains R(0)
    rate = torch.tensor([rates[0], rates[2], rates[0], rates[0], rates[0]])
    expected -= (tables[0] * rate) >> 24
    expected[0] += rates[0]
    assert torch.equal(bias.bias, expected)
    lanes = 4096
    for _ in range(COUNT_LIMIT // lanes + 2):  # token 3 in every lane, step after step: the count stops at COUNT_LIMIT
        bias.update(torch.tensor([[1, 1, 1, TOTAL - 4, 1]]).repeat(lanes, 1), torch.full((lanes,), 3))
    assert int(bias.count[3]) == COUNT_LIMIT and int(bias.rate[3]) == rates[-1]
    assert int(bias.bias.max()) <= LIMIT and int(bias.bias.min()) >= -LIMIT


def _skewed(alice: bytes) -> bytes:
    """Text of a few words only: a random tiny model spreads its mass over the whole vocabulary,
    the bias learns where it belongs."""
    rng = random.Random(5)
    words = alice.split()[:12]
    return b" ".join(rng.choice(words) for _ in range(700))


def _flags(blob: bytes) -> list[StreamFlag]:
    reader = StreamReader(io.BytesIO(blob))
    header, _ = reader.read_header()
    return [read_stream_flag(StreamDecoder(s), adapt=True) for block, _ in reader.blocks(header) for s in block.streams]


@pytest.mark.parametrize("mixer", ADAPT_MIXERS)
@pytest.mark.parametrize("context,carry,lane_tokens", [(24, 12, 60), (16, 0, 16), (32, 8, 1000)])
def test_adapted_files_round_trip_at_any_batch(llama, alice, context, carry, lane_tokens, mixer, monkeypatch):
    data = _skewed(alice)[:1500]
    codec = Codec(llama, context=context, carry=carry, lane_tokens=lane_tokens, stream_windows=2, mixer=mixer)
    blob = codec.compress(data)
    assert inspect(blob).header.mixer == mixer
    assert any(f.biased for f in _flags(blob))
    assert Codec(llama, context=context, carry=carry, lane_tokens=lane_tokens, stream_windows=2, mixer=mixer,
                 batch=3).compress(data) == blob  # the encoder's batch changes nothing
    for per_call in (1, 2, 50):
        monkeypatch.setattr(Codec, "decode_streams_per_call", lambda self, h, n=per_call: n)
        assert Codec(llama).decompress(blob) == data


def test_adapting_pays_where_the_words_are_few(llama, alice):
    data = _skewed(alice)
    layout = dict(context=64, carry=32, lane_tokens=4096)
    adapted = Codec(llama, **layout, mixer=ADAPT_MIXER).compress(data)
    matched = Codec(llama, **layout, mixer=MIXER_CODES[0]).compress(data)
    assert len(adapted) < 0.8 * len(matched)
    assert Codec(llama).decompress(adapted) == data


def test_decoder_steps_plain_and_adapted_streams_together(llama, alice, monkeypatch):
    """Streams of all four kinds (plain, mixed, biased, both) in one block, decoded in calls of 1,
    2 and all streams: the decoder quantizes the unbiased streams' rows in one batch and each
    biased stream's on its own, and must hand every stream its own rows."""
    from llmzip.portable import coding

    kinds = iter(range(1000))
    monkeypatch.setattr(coding, "_shortest", lambda candidates: candidates[next(kinds) % len(candidates)])
    data = _skewed(alice)[:1500]
    layout = dict(context=24, carry=12, lane_tokens=60, stream_windows=2)
    blob = Codec(llama, **layout, mixer=ADAPT_MIXER).compress(data)
    monkeypatch.undo()
    flags = _flags(blob)
    assert {(f.mixed, f.biased) for f in flags} == {(False, False), (True, False), (False, True), (True, True)}
    for per_call in (1, 2, len(flags)):
        monkeypatch.setattr(Codec, "decode_streams_per_call", lambda self, h, n=per_call: n)
        assert Codec(llama).decompress(blob) == data
