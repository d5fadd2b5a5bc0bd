"""Model loading: folders, refusals, hub ids offline, the conversion cache and fingerprints."""
from __future__ import annotations

import shutil

import pytest

from llmzip import ModelError, load_model
from llmzip import models


def test_fingerprint_is_stable_and_cached(llama_dir):
    first = load_model(llama_dir)
    again = load_model(llama_dir)
    assert first.fingerprint == again.fingerprint and len(first.fingerprint) == 16
    assert models._fingerprint_cache_file(str(llama_dir)).is_file()


def test_different_weights_different_fingerprint(llama_dir, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "changed"
    shutil.copytree(llama_dir, copy)
    weights = load_file(copy / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + torch.finfo(torch.float32).eps
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert load_model(copy).fingerprint != load_model(llama_dir).fingerprint


def test_refusals(tmp_path, llama_dir, monkeypatch):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing-folder")
    no_config = tmp_path / "empty"
    no_config.mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(no_config)
    pickled = tmp_path / "pickled"
    shutil.copytree(llama_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelError, match="never loads pickled"):
        load_model(pickled)
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "nothing.gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not reachable"):
        load_model("some-org/some-model")


def test_interrupted_conversion_leaves_nothing_that_loads(tmp_path, monkeypatch, llama_dir):
    """The GGUF conversion writes to a staging folder renamed into place only when complete."""
    import transformers

    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    real_model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    real_tok = transformers.AutoTokenizer.from_pretrained(llama_dir)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: real_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: real_tok)

    def broken_save(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write

    monkeypatch.setattr(real_tok, "save_pretrained", broken_save)
    target = models._gguf_cache_folder(gguf)
    with pytest.raises(KeyboardInterrupt):
        models._convert_gguf(gguf, target)
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".partial-")]
    monkeypatch.undo()
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: real_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: real_tok)
    models._convert_gguf(gguf, target)
    assert (target / "model.safetensors").is_file() and (target / models._META_FILE).is_file()


def test_cache_location_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMZIP_CACHE", str(tmp_path / "a"))
    assert models.cache_root() == tmp_path / "a"
    monkeypatch.delenv("LLMZIP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_root() == tmp_path / "xdg" / "llmzip"


def test_kv_bytes_per_token(llama):
    # 2 layers x (keys + values) x 2 KV heads x head_dim 64/4 = 16 x 4 bytes of float32
    assert llama.kv_bytes_per_token == 2 * 2 * 2 * 16 * 4


@pytest.mark.parametrize("site", [True, False])
def test_checkout_kernels_folder_never_poses_as_top_level_kernels(site):
    """Run from a checkout's root, the top-level folder kernels/ (llmzip.kernels) is on sys.path as
    `kernels`, the name of Hugging Face's kernel hub, which transformers (5.25 on) imports. The name
    must resolve to that package where it is installed, and be missing where nothing else provides
    it (no site packages: `python -S`), never resolve to llmzip's kernels."""
    import importlib.metadata
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    probe = "try:\n    import kernels\nexcept ModuleNotFoundError as e:\n    print(e.name)\nelse:\n    print(kernels.__file__)"
    result = subprocess.run([sys.executable, *([] if site else ["-S"]), "-c", probe], cwd=root, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": ""}, timeout=120)
    assert result.returncode == 0, result.stderr
    found = result.stdout.strip()
    try:
        installed = site and bool(importlib.metadata.distribution("kernels").files)
    except importlib.metadata.PackageNotFoundError:
        installed = False
    if installed:
        assert Path(found).is_file() and not Path(found).is_relative_to(root / "kernels"), found
    else:
        assert found == "kernels", found  # ModuleNotFoundError naming the module
