"""The portable engine: exact integer primitives, an integer Llama whose numbers do not depend on
batch, prefill versus stepping or machine, and files that decode in processes run differently."""
from __future__ import annotations

import importlib.util
import math
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from llmzip import Codec, UnsupportedParameterError, inspect, load_model
from llmzip.portable import PORTABLE_ENGINE, PortableLlama, arith, portable_problem
from llmzip.quantize import TOTAL, frequencies_integer, intervals, intervals_integer


# ----------------------------------------------------------------------------------------------
# Exact primitives against Python's integers


def _random_ints(n: int, bits: int, seed: int, signed: bool = True) -> list[int]:
    rng = random.Random(seed)
    low = -(1 << bits) + 1 if signed else 0
    values = [rng.randint(low, (1 << bits) - 1) for _ in range(n)]
    return values + [0, 1, (1 << bits) - 1] + ([-(1 << bits) + 1, -1] if signed else [])


# The rounding helpers run on torch tensors and, for the engine's per-row numbers on the CPU, on
# numpy arrays: both must be Python's integers.
ARRAYS = {"torch": torch.tensor, "numpy": lambda values: np.array(values, dtype=np.int64)}


@pytest.mark.parametrize("kind", ARRAYS)
def test_rounding_primitives_match_python_integers(kind):
    array = ARRAYS[kind]
    n = _random_ints(2000, 50, 0)
    d = [abs(v) % (1 << 20) + 1 for v in _random_ints(2003, 30, 1)][: len(n)]
    got = arith.div_round(array(n), array(d)).tolist()
    assert got == [(2 * a + b) // (2 * b) for a, b in zip(n, d)]
    assert arith.div_round(1 << 55, array(d)).tolist() == [((1 << 56) + b) // (2 * b) for b in d]
    shifts = [abs(v) % 40 for v in _random_ints(2003, 10, 2)][: len(n)]
    got = arith.shift_round(array(n), array(shifts)).tolist()
    assert got == [(a + ((1 << s) >> 1)) >> s for a, s in zip(n, shifts)]
    totals = [abs(v) + 1 for v in _random_ints(2000, 44, 4)]
    r, s = arith.reciprocal(array(totals), 18)
    assert (r.tolist(), s.tolist()) == ([(1 << (t.bit_length() + 17)) // t for t in totals], [t.bit_length() + 17 for t in totals])
    exponents = list(range(-1022, 1024))
    assert arith.pow2_float(array(exponents)).tolist() == [2.0 ** e for e in exponents]


@pytest.mark.parametrize("kind", ARRAYS)
def test_bit_length_isqrt_and_normalize_are_exact_at_every_power_of_two(kind):
    array = ARRAYS[kind]
    edges = [(1 << k) + delta for k in range(62) for delta in (-1, 0, 1) if (1 << k) + delta >= 0]
    values = edges + _random_ints(3000, 61, 3, signed=False)
    assert arith.bit_length(array(values)).tolist() == [v.bit_length() for v in values]
    small = [v for v in values if v <= (1 << 53)]
    assert arith.bit_length_small(array(small)).tolist() == [v.bit_length() for v in small]
    squares = [v for v in values if v < (1 << 62)] + [k * k + d for k in (3, 1 << 20, (1 << 30) + 7) for d in (-1, 0, 1)]
    assert arith.isqrt(array(squares)).tolist() == [math.isqrt(v) for v in squares]

    def normalized(v, bits):  # round(v / 2^e), halves up, to `bits` significant bits
        e = v.bit_length() - bits
        return ((v + (1 << (e - 1))) >> e if e > 0 else v << -e), e

    for bits in (12, 40):
        positive = [v for v in values if v > 0]
        m, e = arith.normalize(array(positive), bits)
        assert list(zip(m.tolist(), e.tolist())) == [normalized(v, bits) for v in positive]
        m, e = arith.normalize_small(array([v for v in small if v > 0]), bits)
        assert list(zip(m.tolist(), e.tolist())) == [normalized(v, bits) for v in small if v > 0]


def test_int8_matmul_is_exact_beyond_float32s_24_bits():
    """K = 3000 terms of 127 x 127 reach 48 million, past float32's exact range: the chunked
    product must still be the exact integer (checked in int64)."""
    torch.manual_seed(0)
    x = torch.randint(-127, 128, (5, 3000))
    w = torch.randint(-127, 128, (3000, 7))
    x[0], w[:, 0] = 127, 127  # the extreme: every product at its maximum
    exact = (x[:, :, None] * w[None, :, :]).sum(dim=1)
    assert torch.equal(arith.float32_int8_matmul(x.float(), w.float()), exact)
    assert int(exact[0, 0]) == 3000 * 127 * 127
    # The int8 path (torch._int_mm where the probe trusts it) gives the same integers.
    assert torch.equal(arith.int_matmul(x.to(torch.int8), w.to(torch.int8), lambda: w.float()), exact)
    # 16-bit activations, split into int8 halves, at their extremes too.
    x16 = torch.randint(-arith.INT16_LEVELS, arith.INT16_LEVELS + 1, (6, 3000))
    x16[0], x16[1] = arith.INT16_LEVELS, -arith.INT16_LEVELS
    exact16 = (x16[:, :, None] * w[None, :, :]).sum(dim=1)
    assert torch.equal(arith.int_matmul(x16.to(torch.int16), w.to(torch.int8), lambda: w.float()), exact16)


def test_a_saturating_int8_product_is_caught_and_replaced(monkeypatch):
    """oneDNN's AVX2 int8 kernels saturate 16-bit pair sums (pytorch#136746): the probe must see
    it, and the product must then come from the exact float32 path."""
    def saturating(a, b):  # u8 x s8 pairs summed in int16 with saturation, as vpmaddubsw does
        shifted = a.long() + 128
        pairs = shifted.view(a.shape[0], -1, 2)[:, :, :, None] * b.long().view(-1, 2, b.shape[1])[None]
        return (pairs.sum(dim=2).clamp(-32768, 32767).sum(dim=1) - 128 * b.long().sum(dim=0)).int()

    monkeypatch.setattr(torch, "_int_mm", saturating)
    arith.int_mm_is_exact.cache_clear()
    try:
        assert not arith.int_mm_is_exact("cpu", None, 64, 24)
        x = torch.full((3, 64), 127, dtype=torch.int8)
        w = torch.full((64, 24), 127, dtype=torch.int8)
        assert int(arith.int_matmul(x, w, lambda: w.float())[0, 0]) == 64 * 127 * 127
    finally:
        arith.int_mm_is_exact.cache_clear()


def test_tables_are_the_functions_they_name():
    e = arith.pow2_neg(torch.arange(0, 40 * 1024, 7))
    reference = [2.0 ** 30 * 2.0 ** (-x / 1024) for x in range(0, 40 * 1024, 7)]
    assert all(abs(a - b) <= 1 + b * 1e-3 for a, b in zip(e.tolist(), reference))
    assert int(arith.pow2_neg(torch.tensor([0]))) == 1 << 30
    x = torch.arange(-20 * 65536, 20 * 65536, 997)
    silu = arith.silu_fixed(x, 16).double() / 65536
    real = x.double() / 65536
    assert float((silu - real * torch.sigmoid(real)).abs().max()) < 2e-3
    cos, sin = arith.rotary_tables(300, 8, "10000.0", "1.0", 16)
    positions = torch.arange(300, dtype=torch.float64)[:, None]
    frequencies = 10000.0 ** (-torch.arange(4, dtype=torch.float64) * 2 / 8)
    assert float((cos[:, :4] / 65536 - torch.cos(positions * frequencies)).abs().max()) < 2e-5
    assert float((sin[:, 4:] / 65536 - torch.sin(positions * frequencies)).abs().max()) < 2e-5


def test_integer_quantizer_tables_sum_exactly_and_keep_every_token():
    torch.manual_seed(1)
    logits = (torch.randn(64, 1000) * 4 * 65536).long()
    logits[0] = 0  # flat
    logits[1, 5] = 50 * 65536  # one token takes almost everything
    logits[2, :] = -(1 << 40)
    freqs = frequencies_integer(logits)
    assert freqs.dtype == torch.int64
    assert bool((freqs.sum(dim=-1) == TOTAL).all()) and int(freqs.min()) >= 1
    assert int(freqs[1, 5]) > TOTAL - 1000 - 10
    assert torch.equal(frequencies_integer(logits[10:17]), freqs[10:17])  # rows do not see each other
    probs = torch.softmax(logits.double() / 65536 * math.log(2), dim=-1)  # logits are in bits
    assert float((freqs / TOTAL - probs).abs().max()) < 1e-3
    # The encoder's shortcut names the same intervals as the decoder's full table.
    tokens = torch.randint(0, 1000, (64,))
    tokens[1], tokens[3] = 5, int(torch.argmax(logits[3]))
    low, freq, nll_bits = intervals_integer(logits, tokens)
    table_low, table_freq = intervals(freqs, tokens)
    assert torch.equal(low, table_low) and torch.equal(freq, table_freq)
    expected = -torch.log_softmax(logits.double() / 65536 * math.log(2), dim=-1)[torch.arange(64), tokens] / math.log(2)
    assert float((nll_bits - expected).abs().max()) < 1e-3  # the table steps 2^-10 in the exponent


# ----------------------------------------------------------------------------------------------
# The integer model


def _tiny(tmp_path: Path, kind: str):
    """A tiny model of another Llama-type architecture, saved and loaded through llmzip's loader."""
    from transformers import AutoModelForCausalLM, MistralConfig, Qwen2Config

    from conftest import _train_tokenizer

    tokenizer = _train_tokenizer()
    common = dict(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=512,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(3)
    config = Qwen2Config(**common) if kind == "qwen2" else MistralConfig(**common, sliding_window=40)
    model = AutoModelForCausalLM.from_config(config)
    if kind == "qwen2":  # q/k/v biases that matter
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                torch.nn.init.normal_(proj.bias, std=0.5)
    folder = tmp_path / kind
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return load_model(folder, device="cpu")


@pytest.fixture(scope="module")
def architectures(llama, tmp_path_factory):
    base = tmp_path_factory.mktemp("archs")
    return {"llama": llama, "qwen2": _tiny(base, "qwen2"), "mistral": _tiny(base, "mistral")}


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_prefill_equals_stepping_and_batch_does_not_matter(architectures, kind):
    loaded = architectures[kind]
    engine = PortableLlama(loaded.model)
    torch.manual_seed(4)
    tokens = torch.randint(0, loaded.vocab_size, (64, 60))
    full = engine.forward(tokens[:7])  # 7 windows, one full-sequence forward
    cache = engine.new_cache(7, 60)
    stepped = torch.cat([engine.forward(tokens[:7, t : t + 1], cache) for t in range(60)], dim=1)
    assert torch.equal(full, stepped)
    assert torch.equal(engine.forward(tokens[:1]), full[:1])  # batch 1
    assert torch.equal(engine.forward(tokens)[:7], full)  # batch 64
    assert torch.equal(engine.forward(tokens[:1, :23]), full[:1, :23])  # a shorter window


def test_rotary_tables_grow_by_doubling_with_the_same_rows(llama, monkeypatch):
    """A decoder asks for one more position at each step; recomputing the tables (Python integers
    from position 0) at every step past 512 once took a fifth of decoding's time."""
    engine = PortableLlama(llama.model)
    calls = []
    real = arith.rotary_tables
    monkeypatch.setattr(arith, "rotary_tables", lambda positions, *rest: calls.append(positions) or real(positions, *rest))
    for end in range(1, 1025):  # a decoder stepping through the model's 1,024 positions
        cos, sin = engine._rotary_tables(end)
    assert calls == [512, 1024]
    assert cos.shape[0] == 1024
    fresh = PortableLlama(llama.model)
    fresh_cos, fresh_sin = fresh._rotary_tables(1024)
    assert torch.equal(cos, fresh_cos) and torch.equal(sin, fresh_sin)
    from llmzip.portable.llama import ROTARY_BITS

    assert torch.equal(engine._rotary_tables(300)[0][:300],
                       real(300, engine.head_dim, engine.theta, engine.position_scale, ROTARY_BITS)[0])


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_every_implementation_path_gives_the_same_integers(architectures, kind, monkeypatch):
    """The engine computes some numbers in more than one way (chosen by device, size or measured
    bounds); each way must give the same integers: per-row numbers in numpy (CPU) or torch (what
    a GPU runs), 16-bit halves summed in int32 or int64, the linear layers by torch or by the
    Triton kernel (interpreted), a float64 or float32 KV cache, and the
    encoder's blocked intervals against the quantizer on forward's logits."""
    from llmzip.portable import llama as portable_llama

    loaded = architectures[kind]
    engine = PortableLlama(loaded.model)
    torch.manual_seed(6)
    tokens = torch.randint(0, loaded.vocab_size, (3, 50))
    reference = engine.forward(tokens)

    def stepped():
        cache = engine.new_cache(3, 50)
        chunks = [engine.forward(tokens[:, :20], cache), engine.forward(tokens[:, 20:30], cache)]  # a prefill, a continuation
        return torch.cat(chunks + [engine.forward(tokens[:, t : t + 1], cache) for t in range(30, 50)], dim=1)

    assert torch.equal(stepped(), reference)
    with monkeypatch.context() as m:
        m.setattr(portable_llama, "HOST_SCALARS", False)
        assert torch.equal(engine.forward(tokens), reference)
        assert torch.equal(stepped(), reference)
    with monkeypatch.context() as m:
        m.setattr(portable_llama, "_int32_sum_fits", lambda high, terms: False)
        m.setattr(portable_llama, "FUSED", False)  # (the fused loops never take the int32 sums)
        assert torch.equal(engine.forward(tokens), reference)
    with monkeypatch.context() as m:  # the element-wise chains as torch operations, not fused loops
        m.setattr(portable_llama, "FUSED", False)
        assert torch.equal(engine.forward(tokens), reference)
        assert torch.equal(stepped(), reference)
    with monkeypatch.context() as m:
        m.setattr(portable_llama, "_KV_FLOAT64_BYTES", 0)
        assert engine.new_cache(3, 50).keys.dtype == torch.float32
        assert torch.equal(stepped(), reference)
    if os.environ.get("TRITON_INTERPRET") == "1" and importlib.util.find_spec("triton"):
        with monkeypatch.context() as m:  # the linear layers as the Triton kernel a GPU runs, interpreted
            m.setattr(portable_llama, "linear_by_kernel", lambda device: True)
            assert torch.equal(engine.forward(tokens), reference)
            m.setattr(portable_llama, "HOST_SCALARS", False)
            assert torch.equal(stepped(), reference)
    targets = torch.randint(0, loaded.vocab_size, (3, 40))
    low, freq, nll_bits = engine.intervals(tokens, targets, logits_from=10)
    expected = intervals_integer(reference[:, 10:].reshape(-1, reference.shape[-1]), targets.reshape(-1))
    assert torch.equal(low.reshape(-1), expected[0]) and torch.equal(freq.reshape(-1), expected[1])
    assert torch.allclose(nll_bits.reshape(-1), expected[2])
    assert torch.equal(engine.forward(tokens, logits_from=10), reference[:, 10:])
    with monkeypatch.context() as m:  # output-layer blocks of another size (a GPU's are larger)
        m.setattr(portable_llama, "_HEAD_ROWS", 7)
        assert all(torch.equal(a, b) for a, b in zip(engine.intervals(tokens, targets, logits_from=10), (low, freq, nll_bits)))
        assert torch.equal(engine.forward(tokens), reference)


def test_the_fused_loops_are_what_a_cpu_runs():
    """numba is a dependency: without it the CPU engine would silently run the slower torch code."""
    from llmzip.portable import fused

    assert fused.available()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_runs_the_torch_code():
    """numba's OpenMP pool aborts a forked child that enters it: a child takes the torch code."""
    from llmzip.portable import fused

    fused.kernels()
    read, write = os.pipe()
    with warnings.catch_warnings():  # (Python 3.12 warns of forking a process with threads)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.write(write, b"1" if fused.available() else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"0" and fused.available()


def test_fused_loops_give_the_torch_codes_integers_at_the_bounds(monkeypatch):
    """Each fused loop against the torch lines it replaces, on values at the bounds the engine
    guarantees (the residual stream's clamp, the norm weights' 2^20, gate and up beyond their
    clamp, 8- and 16-bit rows, with and without a bias)."""
    from llmzip.portable import llama as portable_llama
    from llmzip.portable.llama import (FRACTION, INT8_LEVELS, INT16_LEVELS, Linear, PortableLlama, _table_softmax,
                                       _table_softmax_fused, quantize_rows)

    generator = torch.Generator().manual_seed(9)

    def extremes(rows: int, columns: int, limit: int) -> torch.Tensor:
        t = torch.randint(-limit, limit + 1, (rows, columns), generator=generator)
        t[0], t[1], t[2] = limit, -limit, 0
        t[3, ::2], t[3, 1::2] = limit, -limit
        t[4] = t[4] >> 30  # a row of small values
        return t

    def both(function, *args, **kwargs):
        fused_result = function(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args), **kwargs)
        with monkeypatch.context() as m:
            m.setattr(portable_llama, "FUSED", False)
            torch_result = function(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args), **kwargs)
        return fused_result, torch_result

    def same_rows(a, b) -> bool:
        return (torch.equal(a.rows, b.rows) and a.halves == b.halves and a.shape == b.shape
                and np.array_equal(a.scale.mantissa, b.scale.mantissa) and np.array_equal(a.scale.exponent, b.scale.exponent))

    values = extremes(16, 96, portable_llama._ACTIVATION_LIMIT)
    norm_weight = extremes(5, 96, 1 << 20)[3]  # +-2^20 alternately
    for levels in (INT8_LEVELS, INT16_LEVELS):
        for weight in (None, norm_weight):
            assert same_rows(*both(quantize_rows, values.view(2, 8, 96), FRACTION, levels, weight=weight))
    # a row's largest magnitude at every bit length up to the clamp's, at 2^k - 1, 2^k and 2^k + 1
    # (the row scales' and the norm's shifts, roundings and integer square root change there)
    spread = torch.randint(-3, 4, (3 * 41, 96), generator=generator)
    for k in range(41):
        for offset, top in enumerate(((1 << k) - 1, 1 << k, min((1 << k) + 1, portable_llama._ACTIVATION_LIMIT))):
            spread[3 * k + offset, (5 * k) % 96] = top if k % 2 else -top
    float_norm = torch.randn(96, generator=generator)
    float_norm[7] = 40.0  # one weight far above the others
    norm = portable_llama.RMSNorm.from_float(float_norm, 1e-5, torch.device("cpu"))
    for levels in (INT8_LEVELS, INT16_LEVELS):
        assert same_rows(*both(quantize_rows, spread.clone(), FRACTION, levels, weight=norm_weight))
        assert same_rows(*both(quantize_rows, spread.clone(), 2 * FRACTION, levels,
                               amax=spread.abs().amax(dim=-1).numpy()))
        for rows in (spread, values):
            assert same_rows(*both(norm, rows, levels))
    float_weight = torch.randn(40, 96, generator=generator)
    float_weight[3] *= 1000  # one channel far larger than the others
    for bias in (None, torch.randn(40, generator=generator)):
        linear = Linear.from_float(float_weight, bias, torch.device("cpu"))
        for levels in (INT8_LEVELS, INT16_LEVELS):
            x = quantize_rows(values.clone(), FRACTION, levels)
            assert torch.equal(*both(linear, x))
    gate_up = extremes(16, 2 * 48, 1 << 40)  # beyond the +-2^31 clamp
    assert same_rows(*both(PortableLlama._mlp_middle, gate_up.view(2, 8, 96)))
    # attention's weights: base-2 scores (multiples of 2^-22 below 2^30), a few far apart, with
    # and without hidden keys among the block's own
    scores = torch.randint(-(1 << 51), 1 << 51, (2, 3, 8, 40), generator=generator).double() * 2.0 ** -22
    scores[0, 0, :, :20] = scores[0, 0, :, :20] * 2.0 ** -20  # rows of close scores
    hidden = torch.rand((8, 8), generator=generator) > 0.5
    table = arith.exp_table(torch.device("cpu"), torch.float64)
    for mask, start in ((None, 0), (hidden, 32)):
        assert torch.equal(_table_softmax_fused(scores.clone(), mask, start), _table_softmax(scores.clone(), mask, start, table))


def test_the_fused_decoding_step_gives_the_numpy_steps_integers_at_the_bounds():
    """The decoding step's two fused loops against the code they replace, at the bounds the engine
    guarantees: a linear layer on 16-bit rows (every element at +-INT16_LEVELS against weights at
    +-127, inner sizes past several int32 partial sums) against the torch Linear on int8 halves;
    and a layer's attention (q, k, v beyond their clamp, keys at the clamp, scores far apart,
    several rows, a sliding window's first key, float32 and float64 caches) against the numpy step."""
    import types

    from llmzip.portable import host
    from llmzip.portable.llama import (DOT_TERMS, FRACTION, INT16_LEVELS, _QK_LIMIT, HostLinear, Linear,
                                       linear_rows_fused, quantize_rows, quantize_rows_fused)

    generator = torch.Generator().manual_seed(12)
    for terms in (96, 3 * DOT_TERMS + 5):
        float_weight = torch.randn(24, terms, generator=generator)
        float_weight[:, 0] = 1000.0  # rows of int8 weights at +127 but for their smallest entries ...
        float_weight[5] = -1.0  # ... a row of -127 throughout, and one of +-127
        float_weight[6] = torch.where(torch.arange(terms) % 2 == 0, 1.0, -1.0)
        linear = Linear.from_float(float_weight, torch.randn(24, generator=generator), torch.device("cpu"))
        values = torch.randint(-(1 << 40), 1 << 40, (4, terms), generator=generator)
        values[0], values[1] = 1 << 40, -(1 << 40)  # rows of +-INT16_LEVELS once quantized
        rows, halves, scale = quantize_rows_fused(values.numpy().copy(), FRACTION, INT16_LEVELS, whole=True)
        assert not halves and np.abs(rows[:2]).min() == INT16_LEVELS
        got = linear_rows_fused(HostLinear.of(linear), rows, scale, np.empty((4, 24), dtype=np.int64))
        assert np.array_equal(got, linear(quantize_rows(values.clone(), FRACTION, INT16_LEVELS)).numpy())

    rng = np.random.default_rng(13)
    for rows, heads, kv_heads, dim, start, first_key, dtype in ((1, 9, 3, 64, 200, 0, np.float32),
                                                                (3, 4, 2, 16, 40, 17, np.float64),
                                                                (2, 2, 2, 8, 0, 0, np.float32)):
        engine = types.SimpleNamespace(heads=heads, kv_heads=kv_heads, head_dim=dim,
                                       score_multiplier=arith.log2e_multiplier(dim))
        views = types.SimpleNamespace(exp=arith.exp_table(torch.device("cpu"), torch.float64).numpy(),
                                      exp_int=arith.exp_table(torch.device("cpu")).numpy())
        projected = rng.integers(-(1 << 40), 1 << 40, (rows, (heads + 2 * kv_heads) * dim)) >> rng.integers(0, 24, (rows, 1))
        cos, sin = rng.integers(-(1 << 16), (1 << 16) + 1, (2, dim))
        keys = rng.integers(-_QK_LIMIT, _QK_LIMIT + 1, (rows, kv_heads, start + 8, dim)).astype(dtype)
        keys[:, :, first_key] = _QK_LIMIT  # a key at the clamp ...
        keys[:, :, (first_key + start) // 2] //= 1 << 12  # ... and one far below the others
        values = rng.integers(-_QK_LIMIT, _QK_LIMIT + 1, keys.shape).astype(dtype)
        caches = [(keys.copy(), values.copy()) for _ in range(2)]
        expected = host._attention(engine, views, projected.copy(), cos, sin, *caches[0], start, first_key)
        got = host._attention_fused(engine, views, projected.copy(), cos, sin, *caches[1], start, first_key)
        assert np.array_equal(got, expected)
        assert np.array_equal(caches[0][0], caches[1][0]) and np.array_equal(caches[0][1], caches[1][1])
        assert not np.array_equal(caches[1][0], keys)  # the step's key was written


def test_fused_row_arithmetic_is_exact():
    """The fused loops' per-row integer helpers against Python's integers: exact where the 12-bit
    scales they feed would hide most errors."""
    from llmzip.portable import fused

    loops = fused.kernels()
    rng = random.Random(5)
    roots = [1, 2, 3, (1 << 26) - 1, (1 << 31) - 1, 3037000499] + [rng.randrange(1, 1 << 31) for _ in range(300)]
    squares = sorted({v for r in roots for v in (r * r - 1, r * r, r * r + 1, r * r + 2 * r) if 0 <= v < 1 << 62})
    for value in squares + [0, (1 << 62) - 1]:
        assert loops.isqrt(value) == math.isqrt(value), value
    values = [1, 2, 3, 4095, 4096, 4097, 8191, (1 << 53) + 1, (1 << 62) - 1] + [rng.randrange(1, 1 << 62) >> rng.randrange(62)
                                                                                  for _ in range(500)]
    for value in values:
        assert loops.bit_length(value) == value.bit_length()
        for bits in (12, 40):
            mantissa, exponent = (int(x[0]) for x in arith.normalize(np.array([value]), bits))
            assert loops.rounded_to_bits(value, bits) == (mantissa, exponent), (value, bits)
        denominator = max(1, value >> rng.randrange(62))
        numerator = rng.randrange(0, 1 << 60)
        assert loops.div_round(numerator, denominator) == (2 * numerator + denominator) // (2 * denominator)


def test_int32_sums_of_halves_are_taken_only_where_they_fit():
    from llmzip.portable.llama import _int32_sum_fits

    terms = 576
    limit = ((1 << 31) - 1 - 128 * 127 * terms) // 256  # the largest |hi product| that still fits

    def products(value: int, dtype=torch.int32) -> torch.Tensor:  # large enough to be checked at all
        t = torch.zeros((2, 1 << 15), dtype=dtype)
        t[1, 7] = value
        return t

    for top in (limit, -limit):
        high = products(top)
        assert _int32_sum_fits(high, terms)
        low = products(128 * 127 * terms if top > 0 else -128 * 127 * terms)
        assert torch.equal(torch.add(low, high, alpha=256).long(), low.long() + 256 * high.long())
    assert not _int32_sum_fits(products(limit + 1), terms)
    assert not _int32_sum_fits(products(-limit - 1), terms)
    assert not _int32_sum_fits(products(0, torch.int64), terms)  # the float32 path's int64
    assert not _int32_sum_fits(torch.zeros((4, 3072), dtype=torch.int32), terms)  # small: int64 anyway


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_integer_logits_follow_the_float_model(architectures, kind):
    loaded = architectures[kind]
    torch.manual_seed(5)
    tokens = torch.randint(0, loaded.vocab_size, (2, 50))
    with torch.no_grad():
        reference = loaded.model(tokens).logits.double()
    ours = PortableLlama(loaded.model).forward(tokens).double() / 65536 * math.log(2)  # bits to nats
    assert float((ours - reference).abs().max()) < 0.05 * float(reference.abs().max())
    # The same next-token distribution to within a small divergence.
    kl = (torch.softmax(reference, -1) * (torch.log_softmax(reference, -1) - torch.log_softmax(ours, -1))).sum(-1)
    assert float(kl.mean()) < 0.01


def test_unsupported_architectures_are_named(gpt2, llama):
    assert "gpt2" in portable_problem(gpt2.config)
    assert portable_problem(llama.config) is None
    with pytest.raises(UnsupportedParameterError, match="portable engine runs"):
        Codec(gpt2, engine="portable")
    assert Codec(gpt2).engine == "transformers"  # auto falls back to a float engine


# ----------------------------------------------------------------------------------------------
# Files


def test_portable_is_the_default_and_binds_no_machine(llama, alice):
    codec = Codec(llama, context=48)
    assert codec.engine == PORTABLE_ENGINE
    blob = codec.compress(alice[:3000])
    header = inspect(blob).header
    assert (header.engine, header.quantizer, header.device_class, header.threads) == (PORTABLE_ENGINE, "int-v1", "any", 0)
    assert codec.decompress(blob) == alice[:3000]


def test_file_does_not_depend_on_the_encoders_batch_or_the_decoders(llama, alice, monkeypatch):
    data = alice[:4000]
    one = Codec(llama, context=32, batch=1, stream_windows=3).compress(data)
    many = Codec(llama, context=32, batch=5, stream_windows=3).compress(data)
    assert one == many
    assert len(inspect(one).header.extra) == 0 and inspect(one).blocks == 1
    for per_call in (1, 2, 100):
        monkeypatch.setattr(Codec, "decode_streams_per_call", lambda self, header, n=per_call: n)
        assert Codec(llama).decompress(one) == data


_CACHE_SCRIPT = """
import sys
import llmzip
from llmzip.portable import fused_loops
codec = llmzip.Codec(sys.argv[1], preset=2)
data = b"a compiled loop is loaded from the disk, not compiled again" * 8
assert codec.decompress(codec.compress(data)) == data  # the encoder's loops and the decoding step's
loops = [value for value in vars(fused_loops).values() if hasattr(value, "stats")]
print(sum(len(loop.stats.cache_hits) for loop in loops), sum(len(loop.stats.cache_misses) for loop in loops))
"""


def test_a_second_process_loads_the_fused_loops_from_the_disk_cache(llama_dir, tmp_path):
    """Each loop compiles once per machine, not once per process (a loop keyed by something that
    differs between processes would compile again, and add a cache entry, in every process)."""
    from llmzip.portable import fused

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    counts = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT, str(llama_dir)], env=env, capture_output=True,
                             text=True, check=True)
        counts.append(tuple(map(int, out.stdout.split()[-2:])))
    (_, first_misses), (hits, misses) = counts
    assert first_misses > 0 and misses == 0
    assert hits >= len(vars(fused.kernels())) - 4  # every loop (less the 4 row helpers, which are inside them)


@pytest.mark.skipif(not hasattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision"),
                    reason="this PyTorch has no per-backend float32 precision switch")
def test_a_callers_bf16_matmul_setting_changes_no_bit(llama, alice):
    """oneDNN runs float32 products in bf16 when asked (this CPU has AVX-512 BF16): int8 values
    are exact in bf16 and the sums are float32, so the file must not change by a bit."""
    data = alice[:1500]
    reference = Codec(llama, context=40).compress(data)
    previous = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        assert Codec(llama, context=40).compress(data) == reference
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"  # the caller's setting is restored
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = previous


_DECODE_SCRIPT = """
import sys, torch
import llmzip
if len(sys.argv) > 3:
    torch.set_num_threads(int(sys.argv[3]))
data = llmzip.Codec(sys.argv[1]).decompress(open(sys.argv[2], "rb").read())
sys.stdout.buffer.write(data)
sys.stderr.write(torch.backends.cpu.get_cpu_capability() + " %d" % torch.get_num_threads())
"""


@pytest.mark.parametrize("env,threads", [
    ({"ATEN_CPU_CAPABILITY": "default"}, 1),
    ({"ATEN_CPU_CAPABILITY": "avx2"}, 2),
    ({"ATEN_CPU_CAPABILITY": "avx512"}, 1),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
    ({"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "COMPATIBLE"}, 2),
    ({"LLMZIP_FUSED": "0"}, 2),  # the torch code instead of the fused loops
    ({"NUMBA_THREADING_LAYER": "workqueue"}, 2),  # numba's own pool, as where it finds no OpenMP
])
def test_a_file_decodes_in_a_process_run_differently(llama_dir, alice, tmp_path, env, threads):
    """Compressed here (one thread, this CPU's best kernels); decoded in a process with other
    vector kernels, another GEMM library ISA, another thread count: identical output."""
    data = alice[:2500]
    blob_path = tmp_path / "a.llmz"
    blob_path.write_bytes(Codec(str(llama_dir), context=40).compress(data))
    run_env = {**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", _DECODE_SCRIPT, str(llama_dir), str(blob_path), str(threads)],
                         capture_output=True, env=run_env, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout == data
    capability, used_threads = out.stderr.decode().split()[-2:]
    assert int(used_threads) == threads
    if "ATEN_CPU_CAPABILITY" in env:  # the switch took effect (this machine has AVX-512)
        assert capability.lower() == env["ATEN_CPU_CAPABILITY"]


def test_gpu_windows_per_call_follow_free_memory(monkeypatch):
    """On a GPU the encoder puts as many windows in one forward as a third of free memory holds
    (the output layer's blocks counted once), at least one and at most 64; on the CPU one."""
    from types import SimpleNamespace

    from llmzip import codec as codec_module

    config = SimpleNamespace(intermediate_size=1536, hidden_size=576, num_attention_heads=9)
    gpu = SimpleNamespace(device=torch.device("cuda", 0), vocab_size=49152, model=SimpleNamespace(config=config))
    free = {"bytes": 0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 << 30))
    counts = {}
    for gib in (1, 8, 16, 75):
        free["bytes"] = gib << 30
        counts[gib] = codec_module._portable_windows_per_call(gpu, 1024)
    assert counts[1] == 1 and counts[75] == 64  # too little memory still runs; plenty is capped
    assert 1 < counts[8] < counts[16] < 64
    assert codec_module._portable_windows_per_call(gpu, 2048) <= codec_module._portable_windows_per_call(gpu, 512)
    cpu = SimpleNamespace(device=torch.device("cpu"), vocab_size=49152, model=SimpleNamespace(config=config))
    assert codec_module._portable_windows_per_call(cpu, 1024) == 1
