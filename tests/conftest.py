"""Shared fixtures: tiny models with random weights, built from configs and saved to disk, so that
every test goes through llmzip's real loading path without a model hub."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

import pytest

# Triton kernels run on the CPU only through the interpreter, which must be chosen before
# anything imports triton.
if not Path("/dev/nvidia0").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DATA = Path(__file__).parent / "data"


DEPRECATIONS = (DeprecationWarning, FutureWarning)


def called_through_llmzip(skip: int = 1) -> bool:
    """Whether llmzip's own code (llmzip.*, llmzip.kernels.*) is on the calling thread's stack."""
    frame = sys._getframe(skip)
    while frame is not None:
        name = frame.f_globals.get("__name__") or ""
        if name == "llmzip" or name.startswith("llmzip."):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def deprecations_through_llmzip_fail() -> Iterator[None]:
    """A DeprecationWarning or FutureWarning raised while llmzip's code is on the stack is an error.

    pyproject.toml's filterwarnings can only match the module a warning is attributed to, and
    libraries attribute a deprecation to whichever frame their `stacklevel` lands on: transformers'
    FutureWarning for `past_key_values` pointed into torch's Module.__call__, so no filter naming
    llmzip could catch it, and it went unnoticed until users saw it on stderr. This looks at the
    whole stack when the warning is shown and raises it at the call that triggered it, so the next
    deprecation fails CI the day pip resolves the release that makes it. Warnings that do not pass
    through llmzip (the tests' own model building, say) are shown as usual.
    """
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DEPRECATIONS) and called_through_llmzip(skip=2):
            raise category(f"{message} ({filename}:{lineno}; raised while llmzip was calling it, "
                           "so it is an error here: see tests/conftest.py)")
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = show


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    # Inside pytest's own warning capture (a tryfirst wrapper), around setup, call and teardown,
    # so that session fixtures which load models are covered too.
    with deprecations_through_llmzip_fail():
        return (yield)


def pytest_configure(config):
    # The tiny test models run fastest on one thread, and the suite stays fast on a busy machine.
    import torch

    torch.set_num_threads(1)


def container_frames(blob: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(header section, each framed block, the end) of a version 3 container, for tests that cut,
    repeat or reorder blocks."""
    import io

    from llmzip.container import StreamReader

    reader = StreamReader(io.BytesIO(blob))
    header, size = reader.read_header()
    frames, pos = [], size
    for _, framed in reader.blocks(header):
        frames.append(blob[pos : pos + framed])
        pos += framed
    return blob[:size], frames, blob[pos:]


def _train_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([(DATA / "alice_head.txt").read_text()], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def _save_tiny(folder: Path, arch: str) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    tokenizer = _train_tokenizer()
    vocab = len(tokenizer)
    torch.manual_seed(0 if arch == "llama" else 1)
    if arch == "llama":  # grouped-query attention: 4 query heads share 2 key/value heads
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    else:
        config = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=1024,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Fingerprint and conversion caches go to a temporary folder, never the user's."""
    if "LLMZIP_CACHE" not in os.environ:
        os.environ["LLMZIP_CACHE"] = str(tmp_path_factory.mktemp("llmzip-cache"))
    yield


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def llama(llama_dir):
    from llmzip import load_model

    return load_model(llama_dir, device="cpu")


@pytest.fixture(scope="session")
def gpt2(gpt2_dir):
    from llmzip import load_model

    return load_model(gpt2_dir, device="cpu")


@pytest.fixture(scope="session")
def alice() -> bytes:
    return (DATA / "alice_head.txt").read_bytes()
