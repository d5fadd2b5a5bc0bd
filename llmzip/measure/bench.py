"""`llmzip bench` as a library: real compressed sizes, the model's estimate, speed, memory, baselines.

For each (model, file) :func:`bench` compresses the bytes with the full codec, decompresses the
result and compares it with the input (a mismatch raises), and returns one :class:`BenchRecord`
with every figure; the classic compressors of :mod:`llmzip.measure.baselines` run on the same
bytes in the same call and come back as records with the same fields where they apply.

What each figure is:

- ``compressed_bytes`` is the size of the .llmz output, everything included; it splits into
  ``header_bytes`` (fixed header, block framing, trailer), ``side_bytes`` (raw bytes and layout
  the model did not code) and ``stream_bytes`` (range-coder output).
- ``bits_per_byte`` is ``8 * compressed_bytes / original_bytes``: the real rate.
- ``estimate_bits_per_byte`` is ``cross_entropy_bits / original_bytes``: the model's own
  ``-log2 p`` of every coded token, from its float probabilities, as the codec runs it (windows
  of ``context`` tokens, each starting from BOS). It counts no header and no side bytes.
- ``overhead`` is ``8 * stream_bytes / cross_entropy_bits - 1``: what quantizing the
  probabilities and range coding cost over the estimate (header and side excluded);
  ``total_overhead`` is the same with the whole file, ``8 * compressed_bytes /
  cross_entropy_bits - 1``.
- Information capacity (arXiv 2511.08066, :mod:`llmzip.measure.capacity`):
  ``(ts - cbpt + bias) / log2(F)`` with ``ts = 8 * text_bytes / tokens`` over the whole file
  (bytes carried by tokens; side bytes are not in it), ``F = flops_per_token(config,
  context)`` at the codec's context, and ``cbpt`` either the real size ``8 * compressed_bytes /
  tokens`` (``capacity_real``; the side bytes and the header are in it) or the estimate
  ``cross_entropy_bits / tokens`` (``capacity_estimate``).
- ``paper_mode`` adds the paper's own per-sample definition: the file's tokens are cut into
  samples of at most 1,024 tokens that start with BOS (BOS plus 1,023 text tokens), the first
  token (BOS) is dropped, ``ts`` is averaged per sample and the ``nll`` over all scored tokens
  (as the paper's code does), ``F`` is taken at 1,024 tokens. The ``nll`` comes from one
  full-sequence forward pass per sample (:func:`per_token_nll`), in float64 from the model's
  logits: an *estimate* like the paper's, never coded. It differs from the codec's estimate in
  its windows (1,024 tokens, not ``context``) and in that full-sequence and step-by-step logits
  differ in their last bits.
- Speed: bytes and tokens per second of the compress and of the decompress call, wall clock,
  model loading not included (``load_seconds`` is separate). The codec's own split
  (``model_seconds``, ``quantize_seconds``, ``coder_seconds``) is for the compress call.
- Memory: ``host_peak_rss_bytes`` is the process's peak resident memory during the run. On
  Linux the peak (VmHWM) is reset before each run through ``/proc/self/clear_refs``, so it is
  that run's peak (``host_peak_rss_scope`` says "run"); where that cannot be done it is the
  process-wide high-water mark since start (``ru_maxrss``; scope "process"), which never goes
  down and so includes everything that ran before. It includes the loaded model. On CUDA,
  ``device_peak_bytes`` is ``torch.cuda.max_memory_allocated`` with the peak reset per run.

Timings are wall clock on whatever else the machine is doing; :func:`bench` takes one
measurement per model run (a run is expensive) and the median of ``baseline_repeats`` for the
classic compressors.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import logging
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import filters
from .baselines import run_baselines
from .capacity import BIAS, capacity_from_samples, information_capacity, text_bits_per_token
from .flops import flops_per_token
from .samples import Sample, expand_inputs, iter_samples

log = logging.getLogger(__name__)

__all__ = [
    "BenchRecord",
    "BenchProgress",
    "bench",
    "context_sweep",
    "environment",
    "expand_inputs",
    "per_token_nll",
    "paper_estimate",
    "PaperEstimate",
    "summarize_models",
    "sample_record",
    "sample_baselines",
    "PAPER_SAMPLE_TOKENS",
]

PAPER_SAMPLE_TOKENS = 1024
"""Tokens per sample in the paper's definition, BOS included."""

_LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------
# Records


@dataclass
class BenchRecord:
    """One compressor (an llmzip model or a classic compressor) on one input.

    Fields that do not apply (tokens for gzip, times for a skipped compressor) are None.
    """

    file: str
    compressor: str  # the model's name, or "gzip", "xz", ...
    kind: str  # "llmzip" or "baseline"
    settings: str
    original_bytes: int
    file_bytes: int  # the whole file's (or document's) size; original_bytes is the slice measured
    sample: int | None = None  # the document's number in a corpus file (bench --text-field); None: the whole file
    compressed_bytes: int | None = None
    bits_per_byte: float | None = None
    round_trip_verified: bool = False
    skipped: str | None = None
    compress_seconds: float | None = None
    decompress_seconds: float | None = None
    compress_bytes_per_s: float | None = None
    decompress_bytes_per_s: float | None = None
    # llmzip only
    model_spec: str | None = None
    context: int | None = None
    batch: int | None = None
    device: str | None = None
    dtype: str | None = None
    quantizer: str | None = None
    tokens: int | None = None
    text_bytes: int | None = None
    bytes_per_token: float | None = None
    header_bytes: int | None = None
    side_bytes: int | None = None
    stream_bytes: int | None = None
    cross_entropy_bits: float | None = None
    estimate_bits_per_byte: float | None = None
    quantized_bits_per_byte: float | None = None
    overhead: float | None = None
    total_overhead: float | None = None
    compress_tokens_per_s: float | None = None
    decompress_tokens_per_s: float | None = None
    model_seconds: float | None = None
    quantize_seconds: float | None = None
    coder_seconds: float | None = None
    load_seconds: float | None = None
    flops_per_token: float | None = None
    bias: float | None = None
    text_bits_per_token: float | None = None
    real_bits_per_token: float | None = None
    estimate_bits_per_token: float | None = None
    capacity_real: float | None = None
    capacity_estimate: float | None = None
    host_peak_rss_bytes: int | None = None
    host_peak_rss_scope: str | None = None
    device_peak_bytes: int | None = None
    # paper mode
    paper_samples: int | None = None
    paper_scored_tokens: int | None = None
    paper_text_bits_per_token: float | None = None
    paper_nll_bits_per_token: float | None = None
    paper_flops_per_token: float | None = None
    paper_capacity: float | None = None
    paper_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BenchProgress:
    """Sent to a progress callback while a model runs: phase is "compress", "decompress" or "paper"."""

    phase: str
    compressor: str
    file: str
    done_bytes: int
    total_bytes: int
    tokens: int


ProgressCallback = Callable[[BenchProgress], None]


# ---------------------------------------------------------------------------------------------
# Environment


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The processor's name as /proc/cpuinfo gives it (the platform's word elsewhere), for reports."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git_revision(here: Path | None = None) -> str | None:
    """The source checkout's commit (with "+dirty" for uncommitted changes), when it is one.

    Benchmark results (bench/results/) do not count: a run writes there, so the next run of a
    series would otherwise call clean code dirty."""
    import subprocess

    here = here or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(top,exclude)bench/results"], capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str | None = None, dtype: str | None = None) -> dict[str, Any]:
    """Versions, machine and settings a measurement was taken with."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    gpu = None
    if torch.cuda.is_available():
        gpu = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    from .. import __version__

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "llmzip": __version__,
        "llmzip_git": _git_revision(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "constriction": _version("constriction"),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "triton": _version("triton"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "cuda": torch.version.cuda,
        "device": device,
        "dtype": dtype,
    }
    with contextlib.suppress(OSError, AttributeError):
        env["load_average"] = list(os.getloadavg())
    with contextlib.suppress(OSError):
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    env["memory_bytes"] = int(line.split()[1]) * 1024
                    break
    return env


def run_record(threads: int, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The head of a bench/ script's JSON: the command that reruns it (this script and `argv`, by
    default its own arguments), the date, and `environment` with the torch threads it was asked
    to use and the CPU capability ATen picked."""
    arguments = list(argv) if argv is not None else sys.argv[1:]
    return {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *arguments]),
        "date": time.strftime("%Y-%m-%d"),
        "environment": {**environment(), "threads": threads, "cpu_capability": torch.backends.cpu.get_cpu_capability()},
    }


def write_run(path: Path, threads: int, argv: Sequence[str] | None = None, **fields: Any) -> None:
    """Write a bench/ script's JSON: `run_record`'s head, then the script's own `fields`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**run_record(threads, argv), **fields}, indent=1))


# ---------------------------------------------------------------------------------------------
# Memory


class _PeakMemory:
    """Peak host RSS and device memory of one run (see the module docstring for the scope)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.scope = "process"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM, the peak RSS (Linux >= 4.0)
            if self._vm_hwm() is not None:
                self.scope = "run"
        except OSError:
            pass
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)

    @staticmethod
    def _vm_hwm() -> int | None:
        with contextlib.suppress(OSError, ValueError):
            with open("/proc/self/status", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        return None

    def host_peak(self) -> int:
        if self.scope == "run":
            value = self._vm_hwm()
            if value is not None:
                return value
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux

    def device_peak(self) -> int | None:
        if self.device.type != "cuda":
            return None
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.max_memory_allocated(self.device))


# ---------------------------------------------------------------------------------------------
# Inputs


def _read(path: Path, sample_bytes: int | None) -> tuple[bytes, int]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        data = f.read() if sample_bytes is None else f.read(sample_bytes)
    return data, size


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


# ---------------------------------------------------------------------------------------------
# The paper's estimate


def per_token_nll(model, ids: Sequence[int], chunk_rows: int = 256) -> list[float]:
    """``-log2 p(ids[i] | ids[:i])`` for ``i = 1 .. len(ids) - 1``, from one full-sequence forward.

    ``model`` is a :class:`llmzip.models.LoadedModel`. This is an estimate from the float
    logits (computed in float64 from the model's output), like the paper's ``nll``; it is never
    what the codec codes (the codec steps token by token, whose logits differ in their last
    bits). ``ids`` must fit the model's positions.
    """
    if len(ids) < 2:
        return []
    x = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
    with torch.inference_mode():
        logits = model.model(input_ids=x, use_cache=False).logits[0]
        targets = x[0, 1:]
        out: list[float] = []
        for start in range(0, len(ids) - 1, chunk_rows):
            rows = logits[start : min(start + chunk_rows, len(ids) - 1)].double()
            t = targets[start : start + rows.shape[0]]
            nll = torch.logsumexp(rows, dim=-1) - rows.gather(-1, t.unsqueeze(-1)).squeeze(-1)
            out.extend((nll / _LN2).tolist())
    return out


@dataclass
class PaperEstimate:
    """The paper's per-sample figures for one tokenized text."""

    samples: int
    scored_tokens: int
    mean_text_bits_per_token: float
    mean_nll_bits_per_token: float
    flops_per_token: float
    capacity: float
    seconds: float
    ts_per_sample: list[float] = field(default_factory=list)
    nll_per_sample: list[float] = field(default_factory=list)


def paper_estimate(model, ids: Sequence[int], bias: float, sample_tokens: int = PAPER_SAMPLE_TOKENS,
                   progress: Callable[[int], None] | None = None,
                   token_bytes: Callable[[Sequence[int]], bytes] | None = None) -> PaperEstimate | None:
    """The paper's information capacity of ``model`` on a text given as llmzip token ids.

    Samples are ``[BOS] + ids[k : k + sample_tokens - 1]``; each sample's first token (BOS) is
    dropped, so every text token is scored once, predicted from BOS and the sample's earlier
    tokens. ``ts`` per sample is byte-exact (the tokens' own bytes, not a re-decoded string, or
    the bytes ``token_bytes`` says they stand for). Returns None for a text with no tokens.
    ``progress(tokens scored so far)`` after each sample.
    """
    started = time.perf_counter()
    step = sample_tokens - 1
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and sample_tokens > int(limit):
        step = int(limit) - 1
    ids = list(ids)
    if not ids:
        return None
    ts: list[float] = []
    nll: list[float] = []
    counts: list[int] = []
    for k in range(0, len(ids), step):
        sample = [model.bos_id] + ids[k : k + step]
        bits = per_token_nll(model, sample)
        ts.append(text_bits_per_token(sample, token_bytes or model.table.join))
        nll.append(math.fsum(bits) / len(bits))
        counts.append(len(bits))
        if progress is not None:
            progress(k + len(bits))
    flops = flops_per_token(model.config, sample_tokens)
    result = capacity_from_samples(ts, nll, flops, bias, token_counts=counts)
    return PaperEstimate(samples=len(ts), scored_tokens=sum(counts),
                         mean_text_bits_per_token=result.mean_text_bits_per_token,
                         mean_nll_bits_per_token=result.mean_compressed_bits_per_token,
                         flops_per_token=flops, capacity=result.capacity,
                         seconds=time.perf_counter() - started, ts_per_sample=ts, nll_per_sample=nll)


# ---------------------------------------------------------------------------------------------
# One model on one input


def _model_record(codec, spec: str | None, name: str, data: bytes, file_bytes: int, *, load_seconds: float,
                  bias: float, paper_mode: bool, verify: bool, progress: ProgressCallback | None) -> BenchRecord:
    from ..codec import Progress

    m = codec.model
    total = len(data)

    def report(phase: str):
        def callback(p: Progress) -> None:
            if progress is not None:
                progress(BenchProgress(phase, m.name, name, p.input_bytes, total, p.tokens))
        return callback

    memory = _PeakMemory(m.device)
    blob, stats = codec.compress_with_stats(data, report("compress"))
    verified = False
    dstats = None
    if verify:
        import io

        out = io.BytesIO()
        total_blob = len(blob)

        def dec_progress(p: Progress) -> None:
            if progress is not None:
                progress(BenchProgress("decompress", m.name, name, p.input_bytes, total_blob, p.tokens))

        dstats = codec.decompress_stream(io.BytesIO(blob), out, dec_progress)
        if out.getvalue() != data:
            raise RuntimeError(f"{name}: llmzip with {m.name} did not give back the input on decompression")
        verified = True
    host_peak = memory.host_peak()
    device_peak = memory.device_peak()
    if len(blob) != stats.compressed_bytes:
        raise RuntimeError(f"{name}: compressed size {len(blob)} differs from the codec's count "
                           f"{stats.compressed_bytes}")

    tokens = stats.tokens
    flops = flops_per_token(m.config, codec.context)
    ts = _div(8.0 * stats.text_bytes, tokens)
    real_bpt = _div(8.0 * stats.compressed_bytes, tokens)
    est_bpt = _div(stats.cross_entropy_bits, tokens)
    rec = BenchRecord(
        file=name, compressor=m.name, kind="llmzip",
        settings=f"context {codec.context}, batch {codec.batch}, {m.dtype_name}, {m.device.type}, {codec.quantizer}, "
                 f"mixer {codec.mixer}",
        original_bytes=stats.original_bytes, file_bytes=file_bytes,
        compressed_bytes=stats.compressed_bytes, bits_per_byte=_div(8.0 * stats.compressed_bytes, total),
        round_trip_verified=verified,
        compress_seconds=stats.seconds,
        decompress_seconds=dstats.seconds if dstats else None,
        compress_bytes_per_s=_div(total, stats.seconds),
        decompress_bytes_per_s=_div(total, dstats.seconds) if dstats else None,
        model_spec=None if spec is None else str(spec), context=codec.context, batch=codec.batch,
        device=str(m.device), dtype=m.dtype_name, quantizer=codec.quantizer,
        tokens=tokens, text_bytes=stats.text_bytes, bytes_per_token=_div(stats.text_bytes, tokens),
        header_bytes=stats.header_bytes, side_bytes=stats.side_bytes, stream_bytes=stats.stream_bytes,
        cross_entropy_bits=stats.cross_entropy_bits,
        estimate_bits_per_byte=_div(stats.cross_entropy_bits, total),
        quantized_bits_per_byte=_div(stats.quantized_bits, total),
        overhead=_div(8.0 * stats.stream_bytes, stats.cross_entropy_bits) - 1.0 if stats.cross_entropy_bits else None,
        total_overhead=(_div(8.0 * stats.compressed_bytes, stats.cross_entropy_bits) - 1.0
                        if stats.cross_entropy_bits else None),
        compress_tokens_per_s=_div(tokens, stats.seconds),
        decompress_tokens_per_s=_div(tokens, dstats.seconds) if dstats else None,
        model_seconds=stats.model_seconds, quantize_seconds=stats.quantize_seconds,
        coder_seconds=stats.coder_seconds, load_seconds=load_seconds,
        flops_per_token=flops, bias=bias, text_bits_per_token=ts,
        real_bits_per_token=real_bpt, estimate_bits_per_token=est_bpt,
        capacity_real=information_capacity(ts, real_bpt, flops, bias) if tokens else None,
        capacity_estimate=information_capacity(ts, est_bpt, flops, bias) if tokens else None,
        host_peak_rss_bytes=host_peak, host_peak_rss_scope=memory.scope, device_peak_bytes=device_peak,
    )
    if paper_mode and tokens:
        ids: list[int] = []
        from ..codec import split_blocks  # the same blocks the codec tokenizes

        # Where every line end of the text is CRLF, every block is coded as LF text (or has no line
        # end), so the model is scored on that text, and ts counts the original's bytes, CRs included,
        # as the codec's does. In a text with mixed line ends it is scored on the bytes as they are.
        # Soft line breaks stay: the reflow filter pays for its record per block, which the paper's
        # per-sample estimate has no place for.
        line_ends = not codec.keep_line_ends and filters.crlf_line_ends(data) > 0
        for block in split_blocks(data):
            ids.extend(m.tokenizer.encode(filters.to_line_feeds(block) if line_ends else block)[0])

        def paper_progress(done: int) -> None:
            if progress is not None:
                progress(BenchProgress("paper", m.name, name, int(total * done / max(1, len(ids))), total, done))

        est = paper_estimate(m, ids, bias, progress=paper_progress,
                             token_bytes=(lambda t: m.table.join(t).replace(b"\n", b"\r\n")) if line_ends else None)
        if est is not None:
            rec.paper_samples = est.samples
            rec.paper_scored_tokens = est.scored_tokens
            rec.paper_text_bits_per_token = est.mean_text_bits_per_token
            rec.paper_nll_bits_per_token = est.mean_nll_bits_per_token
            rec.paper_flops_per_token = est.flops_per_token
            rec.paper_capacity = est.capacity
            rec.paper_seconds = est.seconds
    return rec


def _baseline_records(name: str, data: bytes, file_bytes: int, repeats: int) -> list[BenchRecord]:
    records = []
    for r in run_baselines(data, repeats=repeats):
        ran = r.skipped is None
        records.append(BenchRecord(
            file=name, compressor=r.name, kind="baseline", settings=r.settings,
            original_bytes=r.input_size, file_bytes=file_bytes,
            compressed_bytes=r.compressed_size, bits_per_byte=r.bits_per_byte if data else None,
            round_trip_verified=ran, skipped=r.skipped,
            compress_seconds=r.compress_seconds, decompress_seconds=r.decompress_seconds,
            compress_bytes_per_s=_div(r.input_size, r.compress_seconds) if ran else None,
            decompress_bytes_per_s=_div(r.input_size, r.decompress_seconds) if ran else None,
        ))
    return records


def _load(spec, device, dtype):
    from ..models import load_model

    started = time.perf_counter()
    model = spec if not isinstance(spec, (str, os.PathLike)) and spec is not None else load_model(
        spec, device=device, dtype=dtype)
    return model, time.perf_counter() - started


def _spec_text(spec) -> str | None:
    if spec is None or isinstance(spec, (str, os.PathLike)):
        return None if spec is None else str(spec)
    return getattr(spec, "name", str(spec))


# ---------------------------------------------------------------------------------------------
# Public entry points


def bench(inputs: Sequence[str | os.PathLike], models: Sequence[Any] = (None,), *, context: int = 512,
          batch: int | None = None, device: str | None = None, dtype: str | None = None,
          sample_bytes: int | None = None, baselines: bool = True, baseline_repeats: int = 3,
          paper_mode: bool = False, bias: float = BIAS["default"], verify: bool = True,
          text_field: str | None = None, keep_line_ends: bool = False,
          progress: ProgressCallback | None = None) -> list[BenchRecord]:
    """Measure every model (and the classic compressors) on every input.

    ``inputs``: files or folders (a folder stands for its files, sorted). ``models``: specs for
    :func:`llmzip.load_model` (None: the embedded default) or loaded models; each is loaded
    once. ``sample_bytes``: measure only the first N bytes of each file. ``text_field``: the
    inputs are JSONL or Parquet corpora, and each document (its text in that field) is measured
    as a sample of its own (:mod:`llmzip.measure.samples`). Every llmzip output is decompressed
    and compared with the input unless ``verify`` is False (then no decompress speed either).
    ``keep_line_ends`` codes line ends as they are (see :class:`llmzip.Codec`). Records come
    sample by sample: the models in the order given, then the baselines (gzip,
    bzip2, xz, zstd, brotli). See the module docstring for each figure.
    """
    from ..codec import Codec

    if sample_bytes is not None and sample_bytes < 1:
        raise ValueError(f"sample_bytes must be positive, got {sample_bytes!r}")
    samples = list(iter_samples(inputs, text_field, sample_bytes))
    records: list[list[BenchRecord]] = [[] for _ in samples]
    for spec in models or (None,):
        loaded, load_seconds = _load(spec, device, dtype)
        codec = Codec(loaded, context=context, batch=batch, keep_line_ends=keep_line_ends)
        for sample, rs in zip(samples, records):
            log.info("bench: %s on %s (%d bytes)", loaded.name, sample.file, len(sample.data))
            rs.append(sample_record(codec, _spec_text(spec), sample, load_seconds=load_seconds, bias=bias,
                                    paper_mode=paper_mode, verify=verify, progress=progress))
    if baselines:
        for sample, rs in zip(samples, records):
            rs.extend(sample_baselines(sample, baseline_repeats))
    return [r for rs in records for r in rs]


def sample_record(codec, spec: str | None, sample: Sample, *, load_seconds: float, bias: float, paper_mode: bool,
                  verify: bool, progress: ProgressCallback | None) -> BenchRecord:
    """One model's record on one sample (a file, or a corpus document)."""
    rec = _model_record(codec, spec, sample.file, sample.data, sample.size, load_seconds=load_seconds, bias=bias,
                        paper_mode=paper_mode, verify=verify, progress=progress)
    rec.sample = sample.index
    return rec


def sample_baselines(sample: Sample, repeats: int) -> list[BenchRecord]:
    """The classic compressors' records on one sample."""
    records = _baseline_records(sample.file, sample.data, sample.size, repeats)
    for r in records:
        r.sample = sample.index
    return records


def context_sweep(input: str | os.PathLike, model: Any = None, contexts: Sequence[int] = (128, 256, 512), *,
                  batch: int | None = None, device: str | None = None, dtype: str | None = None,
                  sample_bytes: int | None = None, bias: float = BIAS["default"], verify: bool = True,
                  keep_line_ends: bool = False, progress: ProgressCallback | None = None) -> list[BenchRecord]:
    """Bits per byte, estimate, overhead and speed of one model on one file at each context.

    The model is loaded once; one record per context, in the order given (each record's
    ``flops_per_token`` and capacities are at its own context).
    """
    from ..codec import Codec

    if not contexts:
        raise ValueError("no contexts to sweep")
    path = Path(input)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data, size = _read(path, sample_bytes)
    loaded, load_seconds = _load(model, device, dtype)
    out = []
    for c in contexts:
        codec = Codec(loaded, context=int(c), batch=batch, keep_line_ends=keep_line_ends)
        out.append(_model_record(codec, _spec_text(model), str(path), data, size, load_seconds=load_seconds,
                                 bias=bias, paper_mode=False, verify=verify, progress=progress))
    return out


def summarize_models(records: Iterable[BenchRecord]) -> list[dict[str, Any]]:
    """Per model (and context), figures over all its files together: totals, not means of ratios.

    ``ts = 8 * sum(text_bytes) / sum(tokens)``, real and estimate bits per token likewise, and
    the information capacity from each; the paper-mode capacity, where present, from the
    per-sample means weighted as :func:`paper_estimate` does (samples pooled across files).
    Records are read once and only their sums kept, so any number of them (a corpus's rows,
    streamed from a file) can be pooled.
    """
    groups: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r.kind != "llmzip" or not r.tokens:
            continue
        g = groups.get((r.compressor, r.context, r.settings))
        if g is None:
            g = groups[(r.compressor, r.context, r.settings)] = dict(
                files=0, tokens=0, text=0, comp=0, orig=0, ce=[], flops=r.flops_per_token, bias=r.bias,
                paper_n=0, paper_scored=0, paper_ts=[], paper_nll=[], paper_flops=None)
        g["files"] += 1
        g["tokens"] += r.tokens
        g["text"] += r.text_bytes
        g["comp"] += r.compressed_bytes
        g["orig"] += r.original_bytes
        g["ce"].append(r.cross_entropy_bits)
        if r.paper_samples:
            g["paper_n"] += r.paper_samples
            g["paper_scored"] += r.paper_scored_tokens
            g["paper_ts"].append(r.paper_text_bits_per_token * r.paper_samples)
            g["paper_nll"].append(r.paper_nll_bits_per_token * r.paper_scored_tokens)
            if g["paper_flops"] is None:
                g["paper_flops"] = r.paper_flops_per_token
    out = []
    for (name, ctx, settings), g in groups.items():
        tokens, comp, orig, flops, bias = g["tokens"], g["comp"], g["orig"], g["flops"], g["bias"]
        ce = math.fsum(g["ce"])
        ts, real, est = 8.0 * g["text"] / tokens, 8.0 * comp / tokens, ce / tokens
        row = {
            "compressor": name, "context": ctx, "settings": settings, "files": g["files"],
            "original_bytes": orig, "compressed_bytes": comp, "tokens": tokens,
            "bits_per_byte": 8.0 * comp / orig, "estimate_bits_per_byte": ce / orig,
            "flops_per_token": flops, "log2_flops_per_token": math.log2(flops), "bias": bias,
            "text_bits_per_token": ts, "real_bits_per_token": real, "estimate_bits_per_token": est,
            "capacity_real": information_capacity(ts, real, flops, bias),
            "capacity_estimate": information_capacity(ts, est, flops, bias),
        }
        if g["paper_n"]:
            p_ts = math.fsum(g["paper_ts"]) / g["paper_n"]
            p_nll = math.fsum(g["paper_nll"]) / g["paper_scored"]
            p_flops = g["paper_flops"]
            row.update(paper_samples=g["paper_n"], paper_text_bits_per_token=p_ts, paper_nll_bits_per_token=p_nll,
                       paper_flops_per_token=p_flops,
                       paper_capacity=information_capacity(p_ts, p_nll, p_flops, bias))
        out.append(row)
    return out
