"""The step engines: the static Llama engine against transformers' own forward, and the codec on it."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from llmzip import Codec
from llmzip.errors import UnsupportedParameterError
from llmzip.inference import (STATIC_ENGINE, TRANSFORMERS_ENGINE, StaticLlamaStepper, TransformersStepper,
                              cache_keyword, make_stepper, pick_engine)
from llmzip.info import inspect


def _run(stepper, tokens: torch.Tensor) -> list[torch.Tensor]:
    return [stepper.step(tokens[:, t : t + 1]).clone() for t in range(tokens.shape[1])]


def test_static_engine_computes_what_transformers_computes(llama):
    """Same model, same steps: logits agree to float32 rounding at every position, across the
    attention spans (16, 32, 64) the static engine switches between."""
    model = llama.model
    torch.manual_seed(0)
    tokens = torch.randint(0, llama.vocab_size, (3, 40))
    reference = _run(TransformersStepper(model, 3), tokens)
    static = StaticLlamaStepper(model, rows=3, context=64, graphs=False)
    ours = _run(static, tokens)
    for t, (a, b) in enumerate(zip(reference, ours)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4, msg=f"step {t}")
    # A reset starts every window again: the same inputs give the same logits, bit for bit.
    static.reset()
    again = _run(static, tokens)
    assert all(torch.equal(a, b) for a, b in zip(ours, again))


class _Output(dict):
    @property
    def logits(self) -> torch.Tensor:
        return self["logits"]


class _BeforeCacheRename(torch.nn.Module):
    """A causal LM as transformers 4.56 to 5.23 shaped it: the KV cache goes in and comes out as
    `past_key_values` (5.24 renamed both to `cache`)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids=None, past_key_values=None, use_cache=None):
        out = self.inner(input_ids=input_ids, use_cache=use_cache, **{cache_keyword(self.inner): past_key_values})
        return _Output(logits=out.logits, past_key_values=out["cache"] if "cache" in out else out["past_key_values"])


@pytest.mark.parametrize("fixture", ["llama", "gpt2"])
def test_transformers_engine_speaks_both_cache_keywords(fixture, request):
    """The stepper finds the cache's name in the forward's signature: the older API gives the same
    logits, bit for bit. (The installed release's own API is what every other test runs, and a
    deprecated name there would fail them: see tests/conftest.py.)"""
    model = request.getfixturevalue(fixture)
    torch.manual_seed(0)
    tokens = torch.randint(0, model.vocab_size, (2, 12))
    older = TransformersStepper(_BeforeCacheRename(model.model), 2)
    assert older.cache_keyword == "past_key_values"
    for a, b in zip(_run(TransformersStepper(model.model, 2), tokens), _run(older, tokens)):
        assert torch.equal(a, b)


def test_static_engine_refuses_past_its_context(llama):
    stepper = StaticLlamaStepper(llama.model, rows=1, context=16, graphs=False)
    feed = torch.full((1, 1), llama.bos_id)
    for _ in range(16):
        stepper.step(feed)
    with pytest.raises(ValueError, match="at most 16"):
        stepper.step(feed)


def test_engine_choice(llama, gpt2):
    cpu = torch.device("cpu")
    assert pick_engine("auto", llama.model, cpu) == TRANSFORMERS_ENGINE  # the static engine earns its keep on GPUs
    assert pick_engine("static", llama.model, cpu) == STATIC_ENGINE
    assert pick_engine("auto", gpt2.model, torch.device("cuda")) == TRANSFORMERS_ENGINE
    with pytest.raises(UnsupportedParameterError, match="Llama-architecture"):
        pick_engine("static", gpt2.model, cpu)
    with pytest.raises(UnsupportedParameterError, match="CUDA"):
        pick_engine("static-v1+graphs", llama.model, cpu)
    with pytest.raises(UnsupportedParameterError, match="unknown engine"):
        pick_engine("turbo", llama.model, cpu)
    with pytest.raises(UnsupportedParameterError, match="unknown to this llmzip"):
        make_stepper("turbo", llama.model, 1, 8)


@pytest.mark.parametrize("quantizer", ["torch-v1", "triton-v1"])
def test_round_trip_on_the_static_engine(llama, alice, quantizer):
    """The GPU path end to end, on the CPU: static engine, several streams per batch (the last
    group partial, the last window short), and with triton-v1 the fused intervals for encoding
    and the device range decoder for decoding."""
    data = alice[:700]
    codec = Codec(llama, context=24, batch=5, engine="static", stream_windows=2, quantizer=quantizer)
    blob = codec.compress(data)
    header = inspect(blob).header
    assert (header.engine, header.stream_windows, header.batch) == (STATIC_ENGINE, 2, 5)
    assert Codec(llama).decompress(blob) == data  # engine, batch and streams come from the file


def test_static_and_transformers_files_differ_only_in_engine(llama, alice):
    data = alice[:300]
    static = Codec(llama, context=32, batch=2, engine="static").compress(data)
    dynamic = Codec(llama, context=32, batch=2, engine="transformers").compress(data)
    assert inspect(dynamic).header.engine == TRANSFORMERS_ENGINE
    assert Codec(llama).decompress(static) == Codec(llama).decompress(dynamic) == data


def test_unknown_engine_in_a_file_is_refused(llama, alice):
    header = inspect(Codec(llama, context=32, batch=2, engine="static").compress(alice[:100])).header
    with pytest.raises(UnsupportedParameterError, match="'static-v9', unknown to this llmzip"):
        Codec(llama).check_header(replace(header, engine="static-v9"))


def test_coding_runs_under_fixed_matmul_switches(llama, alice):
    """A caller's TF32 switch would change GPU logits: coding runs with PyTorch's defaults, then restores it."""
    seen = []
    hook = llama.model.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cuda.matmul.allow_tf32))
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        blob = Codec(llama, context=16, batch=2, engine="transformers").compress(alice[:60])
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
        hook.remove()
    assert seen and not any(seen)
    assert Codec(llama).decompress(blob) == alice[:60]


def test_running_out_of_gpu_memory_says_what_to_do(llama, alice, monkeypatch):
    codec = Codec(llama, context=16, batch=2, engine="transformers")
    blob = codec.compress(alice[:60])

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(codec._lockstep, "code_batch", out_of_memory)
    with pytest.raises(UnsupportedParameterError, match="smaller --batch"):
        codec.compress(alice[:60])
    with pytest.raises(UnsupportedParameterError, match="steps 2 windows at once"):
        codec.decompress(blob)
