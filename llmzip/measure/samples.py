"""What `llmzip bench` measures: whole files, or the documents of JSONL and Parquet corpora.

Measurement corpora (the information-capacity paper's evaluation sets among them) come as JSONL or
Parquet files with one document per line or row and its text in a named field. With a text field
each document is a sample of its own, coded as its own .llmz; without one, each file is a sample.
Samples are read lazily, one file or document at a time, so a corpus larger than memory streams.
"""
from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingExtraError

CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


@dataclass(frozen=True)
class Sample:
    """One thing to measure: a file, or one document of a corpus file."""

    file: str  # the path as found
    index: int | None  # the document's number in its file, from 0 (blank JSONL lines not counted); None: the whole file
    data: bytes  # what is measured: the file's or document's first `sample_bytes` bytes (UTF-8 for text)
    size: int  # the whole file's or document's bytes


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder stands for the files in it and below it, sorted by path.

    Hidden files (names starting with a dot) in folders are skipped. A missing path raises
    FileNotFoundError.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return files


def iter_samples(inputs: Iterable[str | os.PathLike], text_field: str | None = None,
                 sample_bytes: int | None = None) -> Iterator[Sample]:
    """The samples of `inputs` (files or folders) in order: each file, or with `text_field` each
    document of each .jsonl, .jsonl.gz or .parquet file (any other file is refused)."""
    files = expand_inputs(inputs)
    if not files:
        raise FileNotFoundError("no input files")
    if text_field is not None:
        others = [str(p) for p in files if not p.name.endswith(CORPUS_SUFFIXES)]
        if others:
            raise ValueError(f"{others[0]}: --text-field reads {', '.join(CORPUS_SUFFIXES)} files only")
    for path in files:
        if text_field is None:
            size = path.stat().st_size
            with open(path, "rb") as f:
                data = f.read() if sample_bytes is None else f.read(sample_bytes)
            yield Sample(str(path), None, data, size)
            continue
        read = _parquet_texts if path.name.endswith(".parquet") else _jsonl_texts
        for index, text in enumerate(read(path, text_field)):
            yield Sample(str(path), index, text if sample_bytes is None else text[:sample_bytes], len(text))


def _as_bytes(value: object, where: str, field: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise ValueError(f"{where}: field {field!r} is {type(value).__name__}, not text")


def _jsonl_texts(path: Path, field: str) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{where}: not a JSON line ({exc})") from None
            if not isinstance(row, dict) or field not in row:
                raise ValueError(f"{where}: no field {field!r} (name the text field with --text-field)")
            yield _as_bytes(row[field], where, field)


def _parquet_texts(path: Path, field: str) -> Iterator[bytes]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("reading Parquet needs pyarrow: pip install 'llmzip[ray]' (or pyarrow alone)") from None
    with pq.ParquetFile(path) as table:
        names = table.schema_arrow.names
        if field not in names:
            raise ValueError(f"{path}: no column {field!r} (it has {', '.join(names)})")
        row = 0
        for batch in table.iter_batches(columns=[field], batch_size=1024):
            for value in batch.column(0).to_pylist():
                yield _as_bytes(value, f"{path}: row {row}", field)
                row += 1
