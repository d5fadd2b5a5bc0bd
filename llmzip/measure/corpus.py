"""Measuring a corpus: one JSONL row per sample and model, written as each is done, so that a
rerun skips what is there; figures pooled over every row; in this process or on Ray.

A corpus of gigabytes takes hours even on many GPUs, and a run that stops (a lost node, a full
disk, Ctrl-C) must not start again from nothing. So each row is appended to the JSONL file, and
flushed, as soon as its sample is measured; a rerun reads the file, skips every sample whose row
is there for the same settings, and measures the rest. A torn last line (the run was killed while
writing it) is cut off. The summary is pooled over all rows of the file, streamed: only sums
are kept, so the number of rows is not bounded by memory.

A row is a `BenchRecord` (every field) plus `options`, the settings that decide it (the model,
its Codec arguments, the bytes per sample, paper mode and bias; for the classic compressors the
bytes per sample): a row is done for a rerun with the same `options`, file and sample number.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bench import BenchProgress, BenchRecord, sample_baselines, sample_record, summarize_models
from .capacity import BIAS
from .samples import Sample, iter_samples

_FIELDS = frozenset(f.name for f in dataclasses.fields(BenchRecord))


@dataclass
class CorpusResult:
    """What a corpus run did, and the figures pooled over every row of its file."""

    rows_before: int  # rows already in the file
    rows_written: int
    models: list[dict[str, Any]] = field(default_factory=list)  # summarize_models over all rows
    baselines: list[dict[str, Any]] = field(default_factory=list)  # per classic compressor, pooled


def options_key(**options: Any) -> str:
    """The settings a row was measured with, as one canonical string."""
    return json.dumps(options, sort_keys=True, default=str)


def _records(path: Path) -> Iterator[tuple[str, BenchRecord]]:
    """(options, record) of each row of a JSONL results file (cutting off a torn last line)."""
    with open(path, "rb+") as f:
        good = 0
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                f.truncate(good)  # written in part when the previous run stopped
                break
            good += len(line)
            try:
                row = json.loads(line)
                record = BenchRecord(**{k: v for k, v in row.items() if k in _FIELDS})
            except (ValueError, TypeError, AttributeError):
                raise ValueError(f"{path}:{number}: not a row of llmzip bench results") from None
            yield row.get("options", ""), record


class _Pooled:
    """The classic compressors' bytes in and out, per compressor, over rows read once."""

    def __init__(self) -> None:
        self.sums: dict[str, list[int]] = {}

    def add(self, r: BenchRecord) -> None:
        if r.kind == "baseline" and not r.skipped and r.compressed_bytes is not None:
            s = self.sums.setdefault(r.compressor, [0, 0, 0])
            s[0] += 1
            s[1] += r.original_bytes
            s[2] += r.compressed_bytes

    def rows(self) -> list[dict[str, Any]]:
        return [{"compressor": name, "files": n, "original_bytes": orig, "compressed_bytes": comp,
                 "bits_per_byte": 8.0 * comp / orig if orig else None}
                for name, (n, orig, comp) in self.sums.items()]


def _measure(worker: Any, report: Callable[[float, int], None], sample: Sample, spec: str | None, run: dict[str, Any],
             model: bool, baselines: int) -> list[BenchRecord]:
    """One sample: the model's record (unless `model` is False: done before) and the classic
    compressors' (`baselines` repeats; 0: none). Runs where the model is: here or in a Ray actor."""
    phases = ["compress"] + (["decompress"] if run["verify"] else []) + (["paper"] if run["paper_mode"] else [])

    def progress(p: BenchProgress) -> None:
        if p.phase in phases:
            done = p.done_bytes / p.total_bytes if p.total_bytes else 1.0
            report((phases.index(p.phase) + min(1.0, done)) / len(phases), p.tokens)

    records = []
    if model:
        records.append(sample_record(worker.codec(), spec, sample, load_seconds=worker.load_seconds,
                                     progress=progress, **run))
    if baselines:
        records += sample_baselines(sample, baselines)
    report(1.0, (records[0].tokens or 0) if model else 0)
    return records


class _Meter:
    """One progress count for the whole run, over the models measured one after the other."""

    def __init__(self, progress: Callable[[int, int], None] | None):
        self.progress = progress
        self.base = self.last = (0, 0)

    def __call__(self, done: int, tokens: int) -> None:
        self.last = (done, tokens)
        if self.progress is not None:
            self.progress(self.base[0] + done, self.base[1] + tokens)

    def next_model(self) -> None:
        self.base = (self.base[0] + self.last[0], self.base[1] + self.last[1])
        self.last = (0, 0)


def measure_corpus(inputs: Sequence[str | os.PathLike], jsonl: str | os.PathLike, models: Sequence[Any] = (None,), *,
                   text_field: str | None = None, sample_bytes: int | None = None, baselines: bool = True,
                   baseline_repeats: int = 1, paper_mode: bool = False, bias: float = BIAS["default"],
                   verify: bool = True, ray: bool = False, workers: int | None = None,
                   cpus_per_worker: int | None = None, progress: Callable[[int, int], None] | None = None,
                   **codec_kwargs: Any) -> CorpusResult:
    """Measure each sample of `inputs` (files, or with `text_field` corpus documents) with each
    model, appending one row per sample and model (and per classic compressor) to `jsonl`, and
    skipping those already there; returns the figures pooled over every row of the file.

    `models` are names or paths (on Ray, every node must resolve them; None: the embedded
    default); `codec_kwargs` go to each model's `Codec` (context, batch, device, dtype). With
    `ray`, a `llmzip.distributed.WorkerPool` of `workers` actors (`cpus_per_worker` CPUs each
    where there are no GPUs) measures the samples, one model after the other; else this process
    does, loading each model once if it has anything to do. `progress(bytes measured, tokens)`
    counts the whole run.
    """
    path = Path(jsonl)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    done: set[tuple[str, str, int | None]] = set()
    rows_before = 0
    for key, record in _records(path):
        rows_before += 1
        done.add((key, record.file, record.sample))
    run = dict(bias=bias, paper_mode=paper_mode, verify=verify)
    classic_key = options_key(baselines=True, sample_bytes=sample_bytes)
    meter = _Meter(progress)
    written = 0
    with open(path, "a", encoding="utf-8") as out:
        for spec in models or (None,):
            spec = None if spec is None else str(spec)
            key = options_key(model=spec, sample_bytes=sample_bytes, paper_mode=paper_mode, bias=bias, **codec_kwargs)

            def todo() -> Iterator[tuple[tuple, int]]:
                for sample in iter_samples(inputs, text_field, sample_bytes):
                    model = (key, sample.file, sample.index) not in done
                    classic = baselines and (classic_key, sample.file, sample.index) not in done
                    if model or classic:
                        yield (sample, spec, run, model, baseline_repeats if classic else 0), len(sample.data)

            pool = dict(workers=workers, cpus_per_worker=cpus_per_worker or 1) if ray else None
            for _, records in _execute(todo(), spec, codec_kwargs, pool, meter):
                for record in records:
                    row_key = key if record.kind == "llmzip" else classic_key
                    out.write(json.dumps(jsonable({"options": row_key, **record.as_dict()}), allow_nan=False) + "\n")
                    done.add((row_key, record.file, record.sample))
                    written += 1
                out.flush()
            meter.next_model()
    classic = _Pooled()

    def every_record() -> Iterator[BenchRecord]:
        for _, record in _records(path):
            classic.add(record)
            yield record

    pooled = summarize_models(every_record())
    return CorpusResult(rows_before, written, pooled, classic.rows())


def _execute(items: Iterator[tuple[tuple, int]], spec: str | None, codec_kwargs: dict[str, Any],
             pool_options: dict[str, Any] | None, meter: _Meter) -> Iterator[tuple[tuple, list[BenchRecord]]]:
    """`_measure` on each item, results in order: on a Ray pool with `pool_options` (started only
    if there is work), or (None) here with the model loaded when first needed."""
    from ..distributed import Worker, WorkerPool

    first = next(items, None)
    if first is None:
        return
    items = itertools.chain([first], items)
    if pool_options is not None:
        with WorkerPool(spec, **pool_options, **codec_kwargs) as pool:
            yield from pool.map(_measure, items, meter)
        return
    worker = Worker(spec, codec_kwargs)
    done = tokens = 0
    for args, weight in items:
        worker.listener = lambda fraction, t: meter(done + int(fraction * weight), tokens + t)
        result, used = worker.call(_measure, *args)
        done += weight
        tokens += used
        yield args, result


def jsonable(value: Any) -> Any:
    """`value` with non-finite floats as None, which JSON has no number for."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
