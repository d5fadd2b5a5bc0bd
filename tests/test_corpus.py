"""`llmzip bench --text-field` (JSONL and Parquet corpora, a document per sample) and `--jsonl`
(rows as they are measured, a rerun skipping what is there, figures pooled over every row),
in this process: no Ray needed."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from llmzip.cli import main
from llmzip.measure.bench import bench, summarize_models
from llmzip.measure.corpus import measure_corpus
from llmzip.measure.samples import iter_samples

CONTEXT = 64
DOCS = ["The quick brown fox jumps over the lazy dog. " * 3, "naïve café, déjà vu\n" * 4, "", "Alice was beginning"]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: d, "meta": i}) + "\n" for i, d in enumerate(docs)), encoding="utf-8")
    return path


def test_documents_of_jsonl_and_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    _jsonl(tmp_path / "a.jsonl", DOCS[:2])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": DOCS[2]}) + "\n\n" + json.dumps({"text": DOCS[3]}) + "\n")
    pq.write_table(pa.table({"text": DOCS, "n": list(range(4))}), tmp_path / "c.parquet", row_group_size=3)
    samples = list(iter_samples([tmp_path], "text", sample_bytes=30))
    assert [(Path(s.file).name, s.index) for s in samples] == (
        [("a.jsonl", 0), ("a.jsonl", 1), ("b.jsonl.gz", 0), ("b.jsonl.gz", 1)] + [("c.parquet", i) for i in range(4)])
    assert [s.size for s in samples] == [len(d.encode()) for d in DOCS * 2]
    assert [s.data for s in samples] == [d.encode()[:30] for d in DOCS * 2]


def test_corpus_errors(tmp_path):
    _jsonl(tmp_path / "a.jsonl", DOCS[:1], field="content")
    with pytest.raises(ValueError, match=r"a.jsonl:1: no field 'text'"):
        list(iter_samples([tmp_path / "a.jsonl"], "text"))
    (tmp_path / "b.jsonl").write_text('{"text": 5}\n')
    with pytest.raises(ValueError, match="is int, not text"):
        list(iter_samples([tmp_path / "b.jsonl"], "text"))
    (tmp_path / "notes.txt").write_text("plain")
    with pytest.raises(ValueError, match="notes.txt: --text-field reads"):
        list(iter_samples([tmp_path], "content"))


def test_bench_measures_each_document(tmp_path, llama, llama_dir, capsys):
    corpus = _jsonl(tmp_path / "docs.jsonl", DOCS)
    records = bench([corpus], [llama], context=CONTEXT, text_field="text", baselines=False)
    assert [(r.sample, r.original_bytes) for r in records] == [(i, len(d.encode())) for i, d in enumerate(DOCS)]
    assert all(r.round_trip_verified for r in records)
    assert main(["bench", str(corpus), "--text-field", "text", "-m", str(llama_dir), "--context", str(CONTEXT),
                 "--no-baselines"]) == 0
    assert "docs.jsonl#3" in capsys.readouterr().out


def test_rows_resume_and_pool(tmp_path, llama_dir):
    corpus = _jsonl(tmp_path / "docs.jsonl", DOCS[:2])
    rows = tmp_path / "out" / "rows.jsonl"
    options = dict(text_field="text", baseline_repeats=1, context=CONTEXT)
    first = measure_corpus([corpus], rows, [str(llama_dir)], **options)
    assert (first.rows_before, first.rows_written) == (0, 2 * 6)  # the model and five classic compressors
    # The run was killed while writing a row: the torn line is cut off, and only new work is done.
    with open(rows, "a") as f:
        f.write('{"options": "x", "file"')
    _jsonl(corpus, DOCS)
    seen = []
    second = measure_corpus([corpus], rows, [str(llama_dir)], progress=lambda d, t: seen.append(d), **options)
    assert (second.rows_before, second.rows_written) == (12, 12)
    assert seen and seen == sorted(seen) and seen[-1] == sum(len(d.encode()) for d in DOCS[2:])
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    llm = [r for r in written if r["kind"] == "llmzip"]
    assert [r["sample"] for r in llm] == [0, 1, 2, 3]
    # Pooled over every row: sums, as summarize_models gives them from the records.
    from llmzip.measure.bench import BenchRecord

    (pooled,) = second.models
    fields = set(BenchRecord.__dataclass_fields__)
    expected = summarize_models(BenchRecord(**{k: v for k, v in r.items() if k in fields}) for r in written)
    assert pooled == expected[0] and pooled["files"] == 3  # the empty document has no tokens
    assert {b["compressor"] for b in second.baselines} == {"gzip", "bzip2", "xz", "zstd", "brotli"}
    # Other settings are other rows: a different context measures everything again.
    third = measure_corpus([corpus], rows, [str(llama_dir)], text_field="text", baselines=False, context=32)
    assert third.rows_written == 4 and len(third.models) == 2


def test_cli_jsonl_usage(tmp_path, capsys):
    corpus = _jsonl(tmp_path / "docs.jsonl", DOCS[:1])
    rows = str(tmp_path / "rows.jsonl")
    assert main(["bench", str(corpus), "--jsonl", rows, "--json", str(tmp_path / "r.json")]) == 2
    assert main(["bench", "--jsonl", rows]) == 2  # no inputs
    assert main(["bench", str(corpus), "--text-field", "text", "--sweep", "32,64"]) == 2
    assert main(["bench", "--ray", str(corpus)]) == 2  # --ray writes rows: it needs --jsonl
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("llmzip: ") for line in err)
    for option in ("--workers", "--context", "--batch", "--sample-bytes", "--repeats", "--threads"):
        assert main(["bench", str(corpus), option, "0"]) == 2
        assert capsys.readouterr().err.strip() == f"llmzip: {option} must be a positive number"
