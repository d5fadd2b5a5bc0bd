"""The match model and mixer: integer mixing that keeps a valid table, the same interval from the
encoder's shortcut as from the decoder's table, predictions that follow repetition, and files
that round-trip whatever batch the decoder picks."""
from __future__ import annotations

import io
import random

import numpy as np
import pytest

from llmzip import Codec, UnsupportedParameterError, inspect
from llmzip.cli import main
from llmzip.coder import StreamDecoder
from llmzip.container import ADAPT_MIXER, MIXER_CODES, NO_MIXER, V5_FIELDS, StreamReader
from llmzip.match import MATCH_ORDER, MatchModel, Mixer, mix_interval, mix_table
from llmzip.portable.coding import read_stream_flag
from llmzip.quantize import TOTAL


def _random_table(rng: np.random.Generator, vocab: int, peaked: bool) -> np.ndarray:
    weights = rng.random(vocab) ** (8 if peaked else 1)
    excess = np.floor(weights / weights.sum() * (TOTAL - vocab)).astype(np.int64)
    excess[int(rng.integers(vocab))] += TOTAL - vocab - excess.sum()
    return excess + 1


@pytest.mark.parametrize("vocab", [2, 3, 50, 1000])
@pytest.mark.parametrize("keep", [0, 1, 12345, (1 << 16) - 1, 1 << 16])
def test_mixed_table_is_valid_and_the_encoders_interval_matches_it(vocab, keep):
    rng = np.random.default_rng(vocab * 7 + keep)
    for peaked in (False, True):
        freqs = _random_table(rng, vocab, peaked)
        cumulative = np.concatenate(([0], np.cumsum(freqs)))
        for predicted in {0, vocab - 1, int(rng.integers(vocab))}:
            mixed = mix_table(freqs, predicted, keep)
            assert mixed.sum() == TOTAL and mixed.min() >= 1
            assert mixed[predicted] >= freqs[predicted] or keep == 1 << 16
            mixed_low = np.concatenate(([0], np.cumsum(mixed)))
            for token in range(vocab):
                got = mix_interval(int(cumulative[token]), int(freqs[token]), token, predicted,
                                   int(cumulative[predicted]), int(freqs[predicted]), vocab, keep)
                assert got == (int(mixed_low[token]), int(mixed[token]))


def test_match_model_follows_earlier_text_and_never_reads_unknown_tokens():
    rng = random.Random(1)
    text = [rng.randrange(100) for _ in range(60)]
    data = text + text  # one lane: the second copy is predictable after MATCH_ORDER tokens
    model = MatchModel([0], len(data))
    right = 0
    for position, token in enumerate(data):
        (guess, length), = model.predict([0], [position])
        if position < len(text) + MATCH_ORDER:
            assert guess in (-1, *data[:position])
        else:
            assert guess == token and length == position - len(text) - MATCH_ORDER
            right += 1
        model.update([0], [position], [token])
    assert right == len(text) - MATCH_ORDER


def test_match_model_never_looks_before_its_lane():
    model = MatchModel([0, 8], 16)
    tokens = [1, 2, 3, 4, 5, 6, 7, 8]
    for step, token in enumerate(tokens):  # the second lane repeats the first, step for step
        guesses = model.predict([0, 1], [step, 8 + step])
        if step < MATCH_ORDER:
            assert guesses[1] == (-1, 0)  # its context would reach into the first lane
        model.update([0, 1], [step, 8 + step], [token, token])


def test_mixer_moves_mass_only_where_the_match_beats_the_model():
    mixer = Mixer()
    for _ in range(200):
        mixer.update(5, 1000, True)
        mixer.update(5, TOTAL // 2, False)
    assert mixer.keep(5, 1000) < 1 << 12  # a reliable match on a token the model found unlikely
    assert mixer.keep(5, TOTAL // 2) == 1 << 16  # a match that is always wrong: nothing moves


def _repetitive(alice: bytes) -> bytes:
    rng = random.Random(3)
    piece = alice[:300] + bytes(rng.randrange(256) for _ in range(200))
    return piece * 4


@pytest.mark.parametrize("context,carry,lane_tokens", [(24, 12, 60), (16, 0, 16), (32, 8, 1000)])
def test_mixed_files_round_trip_at_any_decoder_batch(llama, alice, context, carry, lane_tokens, monkeypatch):
    data = _repetitive(alice)
    codec = Codec(llama, context=context, carry=carry, lane_tokens=lane_tokens, stream_windows=2, mixer=MIXER_CODES[0])
    blob = codec.compress(data)
    assert inspect(blob).header.mixer == MIXER_CODES[0]
    for per_call in (1, 2, 50):
        monkeypatch.setattr(Codec, "decode_streams_per_call", lambda self, h, n=per_call: n)
        assert Codec(llama).decompress(blob) == data


def test_mixing_pays_on_repetition_and_is_recorded(llama, alice):
    data = _repetitive(alice)
    layout = dict(context=64, carry=32, lane_tokens=4096, mixer=MIXER_CODES[0])
    mixed = Codec(llama, **layout).compress(data)
    plain = Codec(llama, **{**layout, "mixer": NO_MIXER}).compress(data)
    assert len(mixed) < 0.6 * len(plain)  # a tiny random model cannot see the repeats; the match model does
    assert inspect(plain).header.mixer == NO_MIXER
    assert Codec(llama).decompress(plain) == data
    assert Codec(llama, **layout, batch=3).compress(data) == mixed  # the encoder's batch changes nothing


def test_mixer_choices_and_refusals(llama, gpt2):
    with pytest.raises(UnsupportedParameterError, match="unknown mixer"):
        Codec(llama, mixer="ppm")
    with pytest.raises(UnsupportedParameterError, match="portable engine"):
        Codec(gpt2, mixer=MIXER_CODES[0])
    assert Codec(gpt2).mixer == NO_MIXER
    default = {f.name: f.default for f in V5_FIELDS}["mixer"]
    assert Codec(llama, preset=1).mixer == default  # the fastest level's is the header's: no byte spent
    assert Codec(llama).mixer == Codec(llama, preset=9).mixer == ADAPT_MIXER  # from level 2 on: the logit bias too


def test_cli_mixer_option(llama_dir, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_bytes(b"abc def ghi " * 50)
    assert main(["compress", "--model", str(llama_dir), "--mixer", "none", "-k", str(source)]) == 0
    assert inspect(io.BytesIO((tmp_path / "in.txt.llmz").read_bytes()).read()).header.mixer == NO_MIXER
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main(["compress", "--model", str(llama_dir), "--mixer", "zip", "-f", "-k", str(source)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "mixer" in err and "Traceback" not in err


def _stream_flags(blob: bytes) -> list[int]:
    reader = StreamReader(io.BytesIO(blob))
    header, _ = reader.read_header()
    return [int(read_stream_flag(StreamDecoder(s)).mixed) for block, _ in reader.blocks(header) for s in block.streams]


def test_each_stream_is_mixed_only_where_that_codes_shorter(llama, alice):
    repeated = _repetitive(alice)
    layout = dict(context=32, carry=8, lane_tokens=64, stream_windows=1, mixer=MIXER_CODES[0])  # one lane per stream
    data = alice[:400] + repeated  # the first lanes hold prose seen once, the later ones repeats
    blob = Codec(llama, **layout).compress(data)
    flags = _stream_flags(blob)
    assert 0 in flags and 1 in flags
    assert Codec(llama).decompress(blob) == data
