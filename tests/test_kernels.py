"""The Triton quantizer "triton-v1" (llmzip.kernels.quantize): valid tables, agreement with the torch
reference, exact lookups for the coder, determinism. Without a GPU it runs in Triton's interpreter."""
from __future__ import annotations

import os

import torch

# Triton chooses between compiling and interpreting when a kernel is decorated, i.e. when
# llmzip.kernels.quantize is first imported: the variable must be set before that.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("triton")

from llmzip import quantize as Q  # noqa: E402
from llmzip.errors import UnsupportedParameterError  # noqa: E402
from llmzip.kernels import quantize as K  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not K.interpreted():
    pytest.skip("llmzip.kernels.quantize was imported before TRITON_INTERPRET=1 was set", allow_module_level=True)

TOTAL = Q.TOTAL
# A fresh seed every run (override with LLMZIP_TEST_SEED to replay one); every message quotes it.
SEED = int(os.environ.get("LLMZIP_TEST_SEED", int.from_bytes(os.urandom(4), "little")))

# Agreement with the torch reference. Both compute p * K in float32 and floor it; a relative error
# of d in p moves a frequency by at most 1 + d * f, and the remainder (the first argmax's share)
# absorbs the net of all such moves, at most about d * TOTAL. The torch CPU reference dominates:
# its float32 softmax sum is off by up to ~3e-5 (relative) at V = 262144, while the kernel (exp
# within 1 ulp, short lane sums, a pairwise tree) stays within a few 1e-7 of a float64 computation.
# Hence the bounds, for V <= 262144:
REL_VS_TORCH = 1e-4  # |f - f_ref| <= 1 + REL * f_ref, and <= 1 + REL * TOTAL for the argmax
REL_VS_EXACT = 1e-5  # the same shape of bound against float64, which the kernel alone must meet


def generator(salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED * 1000 + salt)


def random_logits(rows: int, vocab: int, scale: float, dtype: torch.dtype, salt: int) -> torch.Tensor:
    x = torch.randn(rows, vocab, generator=generator(salt)) * scale
    return x.to(dtype).to(DEVICE)


def emulated_exp(d: torch.Tensor) -> torch.Tensor:
    """The kernel's exp(d <= 0), op for op in float32 torch (each op rounds once, as on the GPU)."""
    f32 = lambda c: torch.tensor(c, dtype=torch.float32)  # noqa: E731  (constants rounded as Triton does)
    dc = torch.maximum(d, f32(-87.0))
    n = torch.floor(dc * f32(1.4426950408889634) + f32(0.5))
    r = (dc - n * f32(0.693359375)) - n * f32(-2.1219444005469058e-4)
    p = f32(1.0 / 5040.0)
    for c in (1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0):
        p = p * r + f32(c)
    two_n = ((n.to(torch.int32) + 127) << 23).view(torch.float32)
    return torch.where(d >= -87.0, p * two_n, f32(0.0))


def emulated_triton_v1(logits: torch.Tensor) -> torch.Tensor:
    """"triton-v1" transcribed into plain torch on the CPU: same exp, same summation order."""
    x = Q.sanitize_logits(logits.cpu())
    rows, vocab = x.shape
    block = K.launch_config(vocab)["BLOCK"]
    chunks = -(-vocab // block)
    padded = torch.nn.functional.pad(x, (0, chunks * block - vocab), value=float("-inf"))
    row_max, top = x.max(dim=-1).values, x.argmax(dim=-1)  # argmax: the first maximal index
    e = emulated_exp(padded.view(rows, chunks, block) - row_max[:, None, None])
    lanes = torch.zeros(rows, block)
    for chunk in range(chunks):  # lane j: elements j, j + BLOCK, ... in order
        lanes = lanes + e[:, chunk]
    while lanes.shape[-1] > 1:  # the pairwise tree: adjacent pairs first
        lanes = lanes[:, 0::2] + lanes[:, 1::2]
    scale = torch.tensor(float(TOTAL - vocab)) / lanes[:, 0]
    freqs = ((e * scale[:, None, None]).to(torch.int32) + 1).view(rows, -1)[:, :vocab].contiguous()
    freqs[torch.arange(rows), top] += (TOTAL - freqs.sum(dim=-1)).to(torch.int32)
    return freqs


def assert_valid(freqs: torch.Tensor, logits: torch.Tensor, msg: str) -> None:
    """The contract of every quantizer: int32, >= 1, rows summing to TOTAL (so a monotone CDF)."""
    assert freqs.dtype == torch.int32, msg
    assert freqs.shape == logits.shape, msg
    assert freqs.device == logits.device, msg
    assert int(freqs.min()) >= 1, f"zero or negative frequency; {msg}"
    sums = freqs.sum(dim=-1, dtype=torch.int64)
    assert bool((sums == TOTAL).all()), f"row sums {sums.tolist()}; {msg}"
    cdf = torch.cumsum(freqs, dim=-1, dtype=torch.int64)
    assert bool((cdf[:, 1:] > cdf[:, :-1]).all()), msg


def exact_frequencies(logits: torch.Tensor) -> torch.Tensor:
    """The definition evaluated in float64: the yardstick both float32 implementations approximate."""
    x = Q.sanitize_logits(logits.cpu()).double()
    vocab = x.shape[-1]
    f = torch.floor(torch.softmax(x, dim=-1) * (TOTAL - vocab)).long() + 1
    f.scatter_add_(-1, x.argmax(dim=-1, keepdim=True), (TOTAL - f.sum(dim=-1)).unsqueeze(-1))
    return f


def deviation(freqs: torch.Tensor, reference: torch.Tensor, logits: torch.Tensor) -> tuple[int, float]:
    """(largest |difference| at the first argmax, largest relative excess over 1 elsewhere)."""
    freqs, reference = freqs.cpu().long(), reference.cpu().long()
    top = Q.sanitize_logits(logits.cpu()).argmax(dim=-1, keepdim=True)
    diff = (freqs - reference).abs()
    at_top = int(diff.gather(-1, top).max())
    rest = diff.scatter(-1, top, 0)
    return at_top, float(((rest - 1).clamp(min=0).double() / reference.double()).max())


def extreme_rows(vocab: int, dtype: torch.dtype, salt: int) -> torch.Tensor:
    g = generator(salt)
    rows = []
    base = torch.randn(vocab, generator=g)
    some_neg_inf = base.clone()
    some_neg_inf[torch.randperm(vocab, generator=g)[: vocab // 3]] = float("-inf")
    rows.append(some_neg_inf)
    rows.append(torch.full((vocab,), float("-inf")))  # uniform
    rows.append(torch.full((vocab,), float("nan")))  # uniform
    with_nan = base.clone()
    with_nan[torch.randperm(vocab, generator=g)[:10]] = float("nan")
    rows.append(with_nan)
    one_inf = base.clone()
    one_inf[vocab // 2] = float("inf")  # takes everything but the minimum
    rows.append(one_inf)
    two_inf = base.clone()
    two_inf[[3, vocab - 2]] = float("inf")
    rows.append(two_inf)
    rows.append(torch.randn(vocab, generator=g) * 1e4)  # huge spread
    rows.append(torch.zeros(vocab))  # all tied
    tied = base.clone()
    tied[[5, 17, 40]] = base.max() + 1.0  # several equal maxima
    rows.append(tied)
    rows.append(torch.full((vocab,), 1e30) * torch.sign(base))  # at the clamp limits
    return torch.stack(rows).to(dtype).to(DEVICE)


# -- validity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("vocab", [256, 1000])
def test_random_rows_are_valid(vocab: int, dtype: torch.dtype) -> None:
    scales = (0.1, 3.0, 30.0)  # two rows of each
    logits = torch.cat([random_logits(2, vocab, scale, dtype, salt) for salt, scale in enumerate(scales)])
    msg = f"seed={SEED} vocab={vocab} dtype={dtype} scales={scales}"
    freqs, cdf = K.frequencies_and_cumulative(logits)
    assert_valid(freqs, logits, msg)
    assert cdf.dtype == torch.int32, msg
    assert torch.equal(cdf, torch.cumsum(freqs, dim=-1, dtype=torch.int32)), msg


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("vocab", [256, 1000])
def test_extreme_rows_are_valid(vocab: int, dtype: torch.dtype) -> None:
    logits = extreme_rows(vocab, dtype, 11)
    msg = f"seed={SEED} vocab={vocab} dtype={dtype}"
    freqs = K.frequencies(logits)
    assert_valid(freqs, logits, msg)
    f = freqs.cpu().long()
    k = TOTAL - vocab
    # all -inf and all NaN are uniform: equal frequencies, the remainder on token 0
    for row in (1, 2, 7):
        uniform = k // vocab + 1
        assert bool((f[row, 1:] == uniform).all()), f"row {row}; {msg}"
        assert int(f[row, 0]) == TOTAL - (vocab - 1) * uniform, f"row {row}; {msg}"
    # a single +inf takes all but the minimum from every other token
    assert int(f[4, vocab // 2]) == TOTAL - (vocab - 1), msg
    # two +inf share: the first one carries the remainder
    assert abs(int(f[5, 3]) - int(f[5, vocab - 2])) <= 2, msg
    assert int(f[5].sum() - f[5, 3] - f[5, vocab - 2]) == vocab - 2, msg
    # equal maxima: the later ones get the same frequency, only the first can differ (remainder)
    assert int(f[8, 17]) == int(f[8, 40]), msg
    assert int(f[8].argmax()) in (5, 17), msg
    # NaN entries count as -1e30: frequency 1
    nan_positions = torch.isnan(logits[3].float()).cpu()
    assert bool((f[3][nan_positions] == 1).all()), msg


def test_remainder_goes_to_the_first_maximum() -> None:
    """Hand-computed tables: ties resolve to the first maximal logit, exactly."""
    vocab = 1000
    k = TOTAL - vocab
    # all equal: floor(k / 1000) + 1 = 16777 each, remainder 216 on token 0
    freqs = K.frequencies(torch.zeros(1, vocab, device=DEVICE)).cpu()
    assert int(freqs[0, 0]) == 16777 + 216 and bool((freqs[0, 1:] == 16777).all())
    # seven equal maxima among -inf: floor(k / 7) + 1 = 2396603 each, remainder 2 on the first one
    maxima = [5, 17, 40, 41, 100, 500, 999]
    for dtype in (torch.float32, torch.bfloat16):
        logits = torch.full((1, vocab), float("-inf"))
        logits[0, maxima] = 2.5
        freqs = K.frequencies(logits.to(dtype).to(DEVICE)).cpu()[0]
        share = k // 7 + 1
        assert share * 7 + (vocab - 7) + 2 == TOTAL
        assert int(freqs[5]) == share + 2, dtype
        assert [int(freqs[i]) for i in maxima[1:]] == [share] * 6, dtype
        assert int(freqs.sum()) == TOTAL


def test_zero_rows_and_strided_input() -> None:
    empty = K.frequencies(torch.zeros(0, 300, device=DEVICE))
    assert empty.shape == (0, 300) and empty.dtype == torch.int32
    wide = random_logits(4, 1010, 3.0, torch.float32, 13)
    view = wide[:, 5:1005]  # row stride 1010
    assert torch.equal(K.frequencies(view), K.frequencies(view.contiguous()))
    transposed = wide[:, :1000].t().contiguous().t()  # column-major: copied to unit stride
    assert torch.equal(K.frequencies(transposed), K.frequencies(wide[:, :1000].contiguous()))


def test_single_row_of_the_largest_vocabulary() -> None:
    vocab = 262144
    logits = random_logits(1, vocab, 3.0, torch.bfloat16, 17)
    msg = f"seed={SEED} vocab={vocab}"
    freqs = K.frequencies(logits)
    assert_valid(freqs, logits, msg)
    at_top, rel = deviation(freqs, Q.frequencies_torch(logits), logits)
    assert at_top <= 1 + REL_VS_TORCH * TOTAL and rel <= REL_VS_TORCH, f"{msg} top={at_top} rel={rel}"
    at_top, rel = deviation(freqs, exact_frequencies(logits), logits)
    assert at_top <= 1 + REL_VS_EXACT * TOTAL and rel <= REL_VS_EXACT, f"{msg} top={at_top} rel={rel}"


# -- agreement with the torch reference -------------------------------------------------------------


@pytest.mark.parametrize(
    "vocab,rows,dtype",
    [(256, 8, torch.float32), (256, 8, torch.bfloat16), (1000, 8, torch.float32), (1000, 8, torch.bfloat16),
     (50257, 1, torch.bfloat16)],
)
def test_agreement_with_torch_reference(vocab: int, rows: int, dtype: torch.dtype) -> None:
    for salt, scale in enumerate((0.3, 3.0, 1e4)):
        logits = random_logits(rows, vocab, scale, dtype, 20 + salt)
        msg = f"seed={SEED} vocab={vocab} dtype={dtype} scale={scale}"
        freqs, cdf = K.frequencies_and_cumulative(logits)
        assert_valid(freqs, logits, msg)
        assert torch.equal(cdf, torch.cumsum(freqs, dim=-1, dtype=torch.int32)), msg
        reference = Q.frequencies_torch(logits)
        at_top, rel = deviation(freqs, reference, logits)
        assert at_top <= 1 + REL_VS_TORCH * TOTAL and rel <= REL_VS_TORCH, f"{msg} top={at_top} rel={rel}"
        at_top, rel = deviation(freqs, exact_frequencies(logits), logits)
        assert at_top <= 1 + REL_VS_EXACT * TOTAL and rel <= REL_VS_EXACT, f"{msg} top={at_top} rel={rel}"
        # Where the reference's largest frequency leads clearly, the argmax is the same token.
        top2 = reference.cpu().long().topk(2, dim=-1).values
        clear = (top2[:, 0] - top2[:, 1]) > 2 * (2 + REL_VS_TORCH * TOTAL)
        same = freqs.cpu().argmax(dim=-1) == reference.cpu().argmax(dim=-1)
        assert bool(same[clear].all()), msg


@pytest.mark.parametrize("vocab,rows", [(256, 6), (1000, 4), (5000, 2), (50257, 1)])
def test_bitwise_equal_to_a_torch_transcription(vocab: int, rows: int) -> None:
    """The kernel's arithmetic is fully specified: any GPU (and the interpreter) gives these tables."""
    logits = torch.cat([random_logits(rows, vocab, 4.0, torch.bfloat16, 90), extreme_rows(vocab, torch.float32, 91)[:3]])
    freqs = K.frequencies(logits).cpu()
    assert torch.equal(freqs, emulated_triton_v1(logits)), f"seed={SEED} vocab={vocab}"


def test_dispatch_through_llmzip_quantize() -> None:
    logits = random_logits(3, 500, 2.0, torch.float32, 30)
    assert torch.equal(Q.frequencies(logits, Q.TRITON_QUANTIZER), K.frequencies(logits))


# -- what the coder needs ---------------------------------------------------------------------------


# 5000 spans two chunks of 4096: the carry of the cumulative table crosses a chunk boundary.
CODER_CASES = [(256, 3, torch.float32), (1000, 3, torch.float16), (5000, 2, torch.bfloat16)]


@pytest.mark.parametrize("vocab,rows,dtype", CODER_CASES)
def test_intervals_match_the_kernels_own_table(vocab: int, rows: int, dtype: torch.dtype) -> None:
    logits = random_logits(rows, vocab, 3.0, dtype, 40)
    msg = f"seed={SEED} vocab={vocab} dtype={dtype}"
    tokens = torch.randint(0, vocab, (rows,), generator=generator(41))
    tokens[0], tokens[-1] = 0, vocab - 1
    tokens = tokens.to(DEVICE)
    low, freq = K.intervals(logits, tokens)
    assert low.dtype == freq.dtype == torch.int64 and low.shape == (rows,), msg
    want_low, want_freq = Q.intervals(K.frequencies(logits), tokens)
    assert torch.equal(low, want_low) and torch.equal(freq, want_freq), msg
    # a token outside [0, V) gets frequency 0: the caller must refuse it
    bad = tokens.clone()
    bad[0] = vocab
    assert int(K.intervals(logits, bad)[1][0]) == 0, msg


@pytest.mark.parametrize("vocab,rows,dtype", CODER_CASES)
def test_find_tokens_inverts_intervals(vocab: int, rows: int, dtype: torch.dtype) -> None:
    logits = random_logits(rows, vocab, 3.0, dtype, 50)
    msg = f"seed={SEED} vocab={vocab} dtype={dtype}"
    freqs, cdf = K.frequencies_and_cumulative(logits)
    cdf64 = torch.cumsum(freqs, dim=-1, dtype=torch.int64)
    tokens = torch.randint(0, vocab, (rows,), generator=generator(51)).to(DEVICE)
    low, freq = K.intervals(logits, tokens)
    inside = low + (torch.rand(rows, generator=generator(52)).to(DEVICE) * freq).long().clamp(max=freq - 1)
    # Targets at both edges of each interval, one inside, and the ends of the range: 0 is the first
    # token, TOTAL - 1 the last. All in one batch (the interpreter's cost is per row).
    first = torch.zeros(rows, dtype=torch.int64, device=DEVICE)
    targets = torch.cat([low, low + freq - 1, inside, first, first + TOTAL - 1])
    want = torch.cat([tokens, tokens, tokens, first, first + vocab - 1])
    for table in (cdf, cdf64):
        assert torch.equal(K.find_tokens(table.repeat(5, 1), targets), want), msg
    found, found_low, found_freq = K.lookup(logits.repeat(5, 1), targets)
    assert torch.equal(found, want), msg
    want_low, want_freq = Q.intervals(freqs.repeat(5, 1), want)
    assert torch.equal(found_low, want_low) and torch.equal(found_freq, want_freq), msg


def test_find_tokens_on_extreme_rows() -> None:
    """Both edges of every interval of every row, including the width-1 intervals of -inf/NaN tokens."""
    logits = extreme_rows(256, torch.float32, 60)
    freqs, cdf = K.frequencies_and_cumulative(logits)
    rows, vocab = freqs.shape
    columns = torch.cat([torch.arange(0, vocab, 7), torch.tensor([vocab // 2, vocab - 2, vocab - 1])]).to(DEVICE)
    tokens = columns.repeat(rows)  # row-major: (row, column) pairs
    table = cdf.repeat_interleave(len(columns), dim=0)
    highs = cdf[:, columns].reshape(-1).long() - 1
    lows = highs + 1 - freqs[:, columns].reshape(-1).long()
    assert torch.equal(K.find_tokens(table.repeat(2, 1), torch.cat([lows, highs])), tokens.repeat(2))


def test_deterministic() -> None:
    """Two calls, and every entry point, give bitwise the same tables and answers."""
    logits = random_logits(2, 5000, 3.0, torch.bfloat16, 70)
    tokens = torch.randint(0, 5000, (2,), generator=generator(71)).to(DEVICE)
    targets = torch.randint(0, TOTAL, (2,), generator=generator(72)).to(DEVICE)
    first = (*K.frequencies_and_cumulative(logits), *K.intervals(logits, tokens), *K.lookup(logits, targets))
    second = (K.frequencies(logits), K.cumulative(logits), *K.intervals(logits, tokens), *K.lookup(logits, targets))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b), f"seed={SEED}"


def test_frequencies_drive_constriction() -> None:
    """(freqs - 1) as float32 probabilities round-trip through constriction's range coder."""
    constriction = pytest.importorskip("constriction")
    for vocab, rows in ((256, 12), (1000, 6)):
        logits = random_logits(rows, vocab, 3.0, torch.bfloat16, 80 + vocab)
        freqs = K.frequencies(logits).cpu()
        probabilities = np.ascontiguousarray((freqs - 1).numpy().astype(np.float32))
        symbols = torch.multinomial(freqs.double(), 1, generator=generator(81)).squeeze(-1)
        symbols[0], symbols[1] = int(freqs[0].argmin()), vocab - 1  # rare ones too
        symbols = np.ascontiguousarray(symbols.numpy().astype(np.int32))
        model = constriction.stream.model.Categorical(perfect=False)
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(symbols, model, probabilities)
        decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())
        decoded = decoder.decode(model, probabilities)
        assert np.array_equal(decoded, symbols), f"seed={SEED} vocab={vocab}"


# -- configuration and errors -----------------------------------------------------------------------


def test_launch_configuration_is_a_function_of_the_vocabulary() -> None:
    assert K.CONFIG_ID == "triton-v1:block=4096:warps=8"
    for vocab in (3, 256, 1000, 4096, 50257, 262144):
        config = K.launch_config(vocab)
        assert config == K.launch_config(vocab)
        assert set(config) == {"BLOCK", "num_warps"}
        assert re.fullmatch(r"triton-v1:block=\d+:warps=\d+", K.config_id(vocab))
    assert K.config_id(50257) == K.config_id(262144) == K.CONFIG_ID
    assert K.config_id(256) == "triton-v1:block=256:warps=4"


def test_bad_arguments_are_refused() -> None:
    good = torch.zeros(2, 300, device=DEVICE)
    with pytest.raises(ValueError, match="shape"):
        K.frequencies(torch.zeros(300, device=DEVICE))
    with pytest.raises(ValueError, match="float"):
        K.frequencies(torch.zeros(2, 300, dtype=torch.float64, device=DEVICE))
    with pytest.raises(ValueError, match="float"):
        K.frequencies(torch.zeros(2, 300, dtype=torch.int32, device=DEVICE))
    with pytest.raises(ValueError):
        K.frequencies(np.zeros((2, 300), dtype=np.float32))
    with pytest.raises(UnsupportedParameterError):
        K.frequencies(torch.zeros(2, 2, device=DEVICE))
    with pytest.raises(ValueError, match="shape"):
        K.intervals(good, torch.zeros(3, dtype=torch.int64, device=DEVICE))
    with pytest.raises(ValueError, match="integer"):
        K.intervals(good, torch.zeros(2, device=DEVICE))
    with pytest.raises(ValueError, match="shape"):
        K.lookup(good, torch.zeros(2, 1, dtype=torch.int64, device=DEVICE))
    with pytest.raises(ValueError, match="int32 or int64"):
        K.find_tokens(good, torch.zeros(2, dtype=torch.int64, device=DEVICE))
    with pytest.raises(ValueError, match="shape"):
        K.find_tokens(torch.zeros(300, dtype=torch.int32, device=DEVICE), torch.zeros(2, dtype=torch.int64))


def test_codec_round_trip_with_the_triton_quantizer(llama, alice):
    """The kernel serves the codec end to end; its launch configuration is in the header."""
    from llmzip import Codec, inspect
    from llmzip.kernels.quantize import config_id

    codec = Codec(llama, context=16, batch=2, quantizer="triton-v1")
    data = alice[:120]
    blob = codec.compress(data)
    assert inspect(blob).header.quantizer == config_id(llama.vocab_size)
    assert codec.decompress(blob) == data


@pytest.mark.parametrize("vocab", [300, 2500])
def test_integer_quantizer_kernel_is_the_torch_definition_bit_for_bit(vocab):
    """int-v1 on the GPU is one Triton kernel; it must give the torch definition's integers exactly
    (ties for the max, a flat row, a dominant token, and logits far below the max included)."""
    from llmzip.kernels import integer_quantize
    from llmzip.quantize import frequencies_integer

    torch.manual_seed(vocab)
    logits = (torch.randn(6, vocab, dtype=torch.float64) * 5 * 65536).long()
    logits[0] = 7
    logits[1, [3, vocab - 2]] = 40 * 65536  # two maximal logits: the first takes the remainder
    logits[2, 0] = 60 * 65536
    logits[3, 1:] = -(1 << 50)
    assert torch.equal(integer_quantize.frequencies(logits), frequencies_integer(logits))


@pytest.mark.parametrize("rows,terms,columns,levels,bias", [
    (1, 64, 128, 127, False),  # one decoding step, int8 activations
    (5, 200, 300, 32639, True),  # 16-bit halves, sizes no tile divides
    (70, 576, 130, 32639, False),  # more rows than a tile
    (17, 1536, 64, 32639, True),  # the default model's largest inner size
])
def test_integer_linear_kernel_is_the_torch_path_bit_for_bit(rows, terms, columns, levels, bias, monkeypatch):
    """The portable engine's linear layer as one kernel (int8 tl.dot, int32 sums, int64 rescaling)
    must give the torch path's integers exactly, at the largest operands too (+-127 weights
    against activations at the level limit, where the int32 sums are largest). Interpreted on the
    CPU, compiled on a GPU (against torch._int_mm there)."""
    from llmzip.kernels import integer_linear
    from llmzip.portable import llama as portable_llama
    from llmzip.portable.llama import FRACTION, Linear, quantize_rows

    torch.manual_seed(rows * 7 + terms)
    weight = torch.randn(columns, terms) * 0.05
    layer = Linear.from_float(weight, torch.randn(columns) if bias else None, DEVICE)
    values = (torch.randn(rows, terms, dtype=torch.float64) * (1 << (FRACTION + 3))).long().to(DEVICE)
    extreme = layer.weight_t.clone()
    extreme[:, ::2] = 127
    extreme[::3, ::2] = -127
    for weights in (layer.weight_t, extreme):
        layer.weight_t = weights
        for host_scalars in (True, False):  # per-row numbers from numpy (CPU) or tensors (GPU)
            monkeypatch.setattr(portable_llama, "HOST_SCALARS", host_scalars)
            x = quantize_rows(values.clone(), FRACTION, levels)
            x.rows[:, ::5] = 127  # the largest products, where the limit allows
            monkeypatch.setattr(portable_llama, "linear_by_kernel", lambda device: False)
            expected = layer(x)
            monkeypatch.setattr(portable_llama, "linear_by_kernel", lambda device: True)
            assert torch.equal(layer(x), expected)
    assert integer_linear.MAX_TERMS * 128 * 127 < 2**31
