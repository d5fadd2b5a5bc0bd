"""The logit bias learned while coding (adapt-v1): its exact update rule, files that round-trip
whatever batch either side runs, and a gain where a text's words differ from what the model expects."""
from __future__ import annotations

import io
import random

import pytest
import torch

from llmzip import Codec, inspect
from llmzip.adapt import LIMIT, STEP, LogitBias
from llmzip.coder import StreamDecoder
from llmzip.container import ADAPT_MIXER, MIXER_CODES, StreamReader
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


@pytest.mark.parametrize("context,carry,lane_tokens", [(24, 12, 60), (16, 0, 16), (32, 8, 1000)])
def test_adapted_files_round_trip_at_any_batch(llama, alice, context, carry, lane_tokens, monkeypatch):
    data = _skewed(alice)[:1500]
    codec = Codec(llama, context=context, carry=carry, lane_tokens=lane_tokens, stream_windows=2, mixer=ADAPT_MIXER)
    blob = codec.compress(data)
    assert inspect(blob).header.mixer == ADAPT_MIXER
    assert any(f.biased for f in _flags(blob))
    assert Codec(llama, context=context, carry=carry, lane_tokens=lane_tokens, stream_windows=2, mixer=ADAPT_MIXER,
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
