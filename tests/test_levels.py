"""Carried context and compression levels: the layout covers every token once, files at every
level round-trip whatever batch the decoder picks, and the header alone tells the decoder the layout."""
from __future__ import annotations

import io

import pytest

import llmzip
from llmzip import Codec, UnsupportedParameterError, inspect
from llmzip.cli import main
from llmzip.levels import BEST, DEFAULT_LEVEL, FASTEST, LEVELS, layout_for
from llmzip.schedule import Layout, windows


@pytest.mark.parametrize("n_tokens", [0, 1, 15, 16, 17, 40, 41, 100, 333])
@pytest.mark.parametrize("layout", [Layout(16), Layout(16, 8, 40), Layout(16, 15, 16), Layout(16, 4, 64),
                                    Layout(10, 3, 23)])
@pytest.mark.parametrize("per_stream", [1, 2, 3])
def test_layout_codes_every_token_once_with_its_carried_context(n_tokens, layout, per_stream):
    coded = []
    for rounds in layout.streams(n_tokens, per_stream):
        for r, round_windows in enumerate(rounds):
            lengths = [w.length for w in round_windows]
            assert lengths == sorted(lengths, reverse=True) and min(lengths) > 0
            for w in round_windows:
                assert w.prefix == (0 if r == 0 else layout.carry)
                assert w.prefix + w.length <= layout.context
                lane_start = w.start - (w.start % layout.lane_size)
                assert w.start - w.prefix >= lane_start  # the carried context lies in the same lane
                assert w.start + w.length <= lane_start + layout.lane_size
                if r:  # the carried context was coded in an earlier round
                    assert set(range(w.start - w.prefix, w.start)) <= set(coded)
                coded += range(w.start, w.start + w.length)
    assert sorted(coded) == list(range(n_tokens))


def test_layout_without_carry_is_the_old_layout():
    layout = Layout(16)
    streams = layout.streams(100, 3)
    assert [w for rounds in streams for w in rounds[0]] == windows(100, 16)
    assert all(len(rounds) == 1 for rounds in streams)


def test_layout_rejects_impossible_settings():
    with pytest.raises(ValueError):
        Layout(16, 16)
    with pytest.raises(ValueError):
        Layout(16, 4, 8)


@pytest.mark.parametrize("layout", [Layout(24, 12, 60), Layout(16, 15, 48), Layout(20, 5, 20), Layout(32, 8, 1000)])
def test_carried_context_round_trips_at_any_decoder_batch(llama, alice, layout, monkeypatch):
    data = alice[:700]
    codec = Codec(llama, context=layout.context, carry=layout.carry, lane_tokens=layout.lane_tokens,
                  stream_windows=2)
    blob = codec.compress(data)
    header = inspect(blob).header
    assert (header.context, header.carry, header.lane_size) == (layout.context, layout.carry, layout.lane_size)
    for per_call in (1, 2, 50):
        monkeypatch.setattr(Codec, "decode_streams_per_call", lambda self, h, n=per_call: n)
        assert Codec(llama).decompress(blob) == data


def test_encoder_batch_does_not_change_the_file(llama, alice):
    data = alice[:600]
    one = Codec(llama, context=24, carry=12, lane_tokens=48, batch=1).compress(data)
    many = Codec(llama, context=24, carry=12, lane_tokens=48, batch=7).compress(data)
    assert one == many


def test_every_level_round_trips_and_needs_no_level_to_decode(llama, alice):
    data = alice[:500]
    sizes = {}
    positions = llama.config.max_position_embeddings
    for level in LEVELS:
        blob = llmzip.compress(data, llama, preset=level)
        h = inspect(blob).header
        want = LEVELS[level]
        if want.context > positions:  # the level cut to the model, in proportion
            want = Layout(positions, want.carry * positions // want.context,
                          want.lane_size * positions // want.context)
        assert (h.context, h.carry, h.lane_size) == (want.context, want.carry, want.lane_size)
        assert llmzip.decompress(blob, llama) == data
        sizes[level] = len(blob)
    assert len(llmzip.compress(data, llama)) == sizes[DEFAULT_LEVEL]


def test_levels_are_a_curve():
    """Higher levels never see less context, carry less, or give the decoder shorter lanes."""
    layouts = [LEVELS[level] for level in sorted(LEVELS)]
    assert sorted(LEVELS) == list(range(FASTEST, BEST + 1))
    for lower, higher in zip(layouts, layouts[1:]):
        assert higher.context >= lower.context and higher.carry >= lower.carry
        assert higher.lane_size >= lower.lane_size
        assert (higher.context, higher.carry, higher.lane_size) != (lower.context, lower.carry, lower.lane_size)


def test_level_and_overrides(llama):
    assert Codec(llama, preset=4).layout == LEVELS[4]
    assert Codec(llama, preset=9).layout == Layout(1024, 768, 32768)  # cut to the tiny model's 1024 positions
    level = LEVELS[DEFAULT_LEVEL]
    scaled = Codec(llama, context=level.context // 2).layout  # a context alone keeps the level's proportions
    assert (scaled.carry, scaled.lane_size) == (level.carry // 2, level.lane_size // 2)
    assert Codec(llama, carry=0, lane_tokens=level.context).layout == Layout(level.context)
    for bad in (dict(preset=0), dict(preset=10), dict(carry=level.context), dict(carry=-1),
                dict(lane_tokens=level.context - 1)):
        with pytest.raises(UnsupportedParameterError):
            Codec(llama, **bad)
    with pytest.raises(UnsupportedParameterError, match="portable engine"):
        Codec(llama, engine="transformers", carry=8)
    assert Codec(llama, engine="transformers", preset=4).layout == Layout(LEVELS[4].context)
    assert layout_for(None) == level


def test_older_formats_refuse_carried_context(llama, alice):
    codec = Codec(llama, context=32, carry=8, lane_tokens=64)
    with pytest.raises(UnsupportedParameterError, match="no carried context"):
        codec.compress_stream(io.BytesIO(alice[:100]), io.BytesIO(), version=3)


@pytest.mark.parametrize("flag,level", [("-1", 1), ("-4", 4), ("--fast", FASTEST), ("-5", 5)])
def test_cli_levels(llama_dir, tmp_path, alice, flag, level, capsys):
    source = tmp_path / "a.txt"
    source.write_bytes(alice[:300])
    assert main(["compress", "-q", "-k", flag, "-m", str(llama_dir), str(source)]) == 0
    packed = tmp_path / "a.txt.llmz"
    h = inspect(packed.read_bytes()).header
    assert (h.context, h.carry, h.lane_size) == (LEVELS[level].context, LEVELS[level].carry, LEVELS[level].lane_size)
    source.unlink()
    assert main(["decompress", "-q", "-k", "-m", str(llama_dir), str(packed)]) == 0  # no level needed
    assert source.read_bytes() == alice[:300]
    capsys.readouterr()
    assert main(["info", str(packed)]) == 0
    assert f"{h.carry} of them carried context" in capsys.readouterr().out or h.carry == 0


def test_cli_layout_options_and_errors(llama_dir, tmp_path, alice, capsys):
    source = tmp_path / "a.txt"
    source.write_bytes(alice[:200])
    assert main(["compress", "-q", "-k", "--context", "32", "--carry", "8", "--lane-tokens", "96",
                 "-m", str(llama_dir), str(source)]) == 0
    h = inspect((tmp_path / "a.txt.llmz").read_bytes()).header
    assert (h.context, h.carry, h.lane_size) == (32, 8, 96)
    capsys.readouterr()
    assert main(["compress", "-q", "-k", "-f", "--carry", "32", "--context", "32", "-m", str(llama_dir),
                 str(source)]) != 0
    err = capsys.readouterr().err
    assert "carried context" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["compress", "-1", "-9", str(source)])  # one level at a time
