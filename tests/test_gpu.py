"""What only a GPU can show: run with `pytest -m gpu` on a machine with CUDA (bench/README.md).

Elsewhere these tests skip. The kernels' bit-for-bit tests (tests/test_kernels.py,
tests/test_range_decode.py) run on the GPU too when there is one; these add the end-to-end
claims: portable files cross between GPU and CPU, CUDA graphs replay what eager steps compute,
and a float engine's GPU file is refused on the CPU with a message.
"""
from __future__ import annotations

import pytest
import torch

from llmzip import Codec, UnsupportedParameterError, load_model
from llmzip.inference import StaticLlamaStepper
from llmzip.portable import PortableLlama
from llmzip.quantize import frequencies_integer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def on_gpu(llama_dir):
    return load_model(llama_dir, device="cuda", dtype="float32")


def test_portable_logits_are_the_same_on_gpu_and_cpu(llama, on_gpu):
    torch.manual_seed(0)
    tokens = torch.randint(0, llama.vocab_size, (9, 70))
    cpu = PortableLlama(llama.model).forward(tokens)
    gpu = PortableLlama(on_gpu.model, "cuda").forward(tokens.cuda()).cpu()
    assert torch.equal(cpu, gpu)
    assert torch.equal(frequencies_integer(gpu[:, -1].cuda()).cpu(), frequencies_integer(cpu[:, -1]))


def test_portable_files_cross_between_gpu_and_cpu(llama, on_gpu, alice):
    data = alice[:5000]
    made_on_gpu = Codec(on_gpu, context=64).compress(data)
    made_on_cpu = Codec(llama, context=64).compress(data)
    assert made_on_gpu == made_on_cpu
    assert Codec(llama).decompress(made_on_gpu) == data
    assert Codec(on_gpu).decompress(made_on_cpu) == data


def test_cuda_graph_replay_computes_the_eager_steps(on_gpu):
    torch.manual_seed(1)
    tokens = torch.randint(0, on_gpu.vocab_size, (4, 40), device="cuda")
    eager = StaticLlamaStepper(on_gpu.model, rows=4, context=64, graphs=False)
    graphs = StaticLlamaStepper(on_gpu.model, rows=4, context=64, graphs=True)
    for t in range(40):
        a = eager.step(tokens[:, t : t + 1]).clone()
        b = graphs.step(tokens[:, t : t + 1]).clone()
        assert torch.equal(a, b), f"step {t}"


@pytest.mark.parametrize("quantizer", ["torch-v1", "triton-v1"])
def test_float_gpu_files_round_trip_and_are_refused_on_the_cpu(llama_dir, llama, alice, quantizer):
    bf16 = load_model(llama_dir, device="cuda", dtype="bfloat16")
    codec = Codec(bf16, context=48, engine="static", quantizer=quantizer)
    blob = codec.compress(alice[:3000])
    assert codec.decompress(blob) == alice[:3000]
    with pytest.raises(UnsupportedParameterError):
        Codec(llama).decompress(blob)
