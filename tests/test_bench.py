"""`llmzip bench`: the library function, the context sweep and the command, with the tiny models."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from llmzip.filters import to_line_feeds
from llmzip.measure.bench import BenchRecord, bench, context_sweep, environment, run_record, summarize_models
from llmzip.measure.capacity import BIAS, information_capacity

DATA = Path(__file__).parent / "data"

SLICE = 1500
BASELINES = {"gzip", "bzip2", "xz", "zstd", "brotli"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny models gain nothing from threads, and on a busy 2-core machine threads that wait
    for each other make every small matrix product ~10x slower: run this module on one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Two small inputs in a folder: the slice of alice_head, and a file with non-text bytes."""
    folder = tmp_path_factory.mktemp("bench-in")
    shutil.copy(DATA / "alice_head.txt", folder / "alice_head.txt")
    (folder / "mixed.bin").write_bytes((DATA / "alice_head.txt").read_bytes()[:300] + bytes(range(256)))
    return folder


@pytest.fixture(scope="module")
def records(sample, llama, gpt2):
    return bench([sample], [llama, gpt2], context=64, batch=2, sample_bytes=SLICE, baseline_repeats=1)


def test_records_per_file_and_compressor(records, sample):
    files = sorted(str(p) for p in sample.iterdir())
    assert sorted({r.file for r in records}) == files
    for f in files:
        rs = [r for r in records if r.file == f]
        assert [r.kind for r in rs[:2]] == ["llmzip", "llmzip"]
        assert {r.compressor for r in rs if r.kind == "baseline"} == BASELINES


def test_llmzip_fields_are_consistent(records):
    llm = [r for r in records if r.kind == "llmzip"]
    assert len(llm) == 4
    for r in llm:
        assert r.round_trip_verified
        assert r.original_bytes == min(SLICE, r.file_bytes)
        assert r.compressed_bytes == r.header_bytes + r.side_bytes + r.stream_bytes
        assert r.header_bytes > 0 and r.stream_bytes > 0
        assert r.bits_per_byte == pytest.approx(8 * r.compressed_bytes / r.original_bytes)
        assert r.estimate_bits_per_byte == pytest.approx(r.cross_entropy_bits / r.original_bytes)
        assert r.overhead == pytest.approx(8 * r.stream_bytes / r.cross_entropy_bits - 1)
        assert r.bytes_per_token == pytest.approx(r.text_bytes / r.tokens)
        assert r.context == 64 and r.batch == 2
        assert r.compress_tokens_per_s > 0 and r.decompress_tokens_per_s > 0
        assert r.compress_bytes_per_s == pytest.approx(r.original_bytes / r.compress_seconds)
        assert r.host_peak_rss_bytes > 0 and r.host_peak_rss_scope in ("run", "process")
        assert r.device_peak_bytes is None  # CPU
        # information capacity from the real size and from the estimate, by the formula
        ts = 8 * r.text_bytes / r.tokens
        assert r.text_bits_per_token == pytest.approx(ts)
        assert r.real_bits_per_token == pytest.approx(8 * r.compressed_bytes / r.tokens)
        assert r.estimate_bits_per_token == pytest.approx(r.cross_entropy_bits / r.tokens)
        assert r.bias == BIAS["default"]
        assert r.capacity_real == pytest.approx(
            (ts - r.real_bits_per_token + r.bias) / math.log2(r.flops_per_token))
        assert r.capacity_estimate == pytest.approx(
            information_capacity(ts, r.estimate_bits_per_token, r.flops_per_token, r.bias))
        # The real size pays for header and side bytes beyond the coded streams. The estimate is the
        # LLM's own cross-entropy, without the logit bias the default mixer learns (recorded in the
        # settings), so with a tiny random model the real size can fall below it.
        assert r.real_bits_per_token > 8 * r.stream_bytes / r.tokens
        assert r.settings.endswith("mixer adapt-v2" if "int-v1" in r.settings else "mixer none")  # portable or float engine
    mixed = [r for r in llm if r.file.endswith("mixed.bin")]
    assert all(r.side_bytes > 0 for r in mixed)


def test_baseline_records(records):
    for r in records:
        if r.kind != "baseline" or r.skipped:
            continue
        assert r.round_trip_verified
        assert r.bits_per_byte == pytest.approx(8 * r.compressed_bytes / r.original_bytes)
        assert r.tokens is None and r.capacity_real is None
        assert r.compress_bytes_per_s > 0


def test_summary_pools_files(records):
    summary = summarize_models(records)
    assert len(summary) == 2
    for s in summary:
        rs = [r for r in records if r.compressor == s["compressor"] and r.kind == "llmzip"]
        assert s["tokens"] == sum(r.tokens for r in rs)
        ts = 8 * sum(r.text_bytes for r in rs) / s["tokens"]
        real = 8 * sum(r.compressed_bytes for r in rs) / s["tokens"]
        assert s["capacity_real"] == pytest.approx(information_capacity(ts, real, s["flops_per_token"], s["bias"]))


def test_paper_mode_and_bias(llama, alice):
    from llmzip.measure.bench import paper_estimate

    path = DATA / "alice_head.txt"
    (rec,) = bench([path], [llama], context=64, batch=2, sample_bytes=SLICE, baselines=False,
                   paper_mode=True, bias=-5.0)
    assert rec.bias == -5.0
    # One sample: BOS and every token of the LF text, BOS dropped. The paper's samples keep the soft
    # line breaks that the codec's reflow filter joins (its record has no place in them), and ts
    # counts the original's bytes, CRs included.
    data = path.read_bytes()[:SLICE]
    lf_tokens = len(llama.tokenizer.encode(to_line_feeds(data))[0])
    assert rec.paper_samples == 1 and rec.paper_scored_tokens == lf_tokens > rec.tokens
    assert rec.paper_text_bits_per_token == pytest.approx(8 * len(data) / lf_tokens)
    assert rec.paper_capacity == pytest.approx(information_capacity(
        rec.paper_text_bits_per_token, rec.paper_nll_bits_per_token, rec.paper_flops_per_token, -5.0))
    # the full-sequence estimate is close to the codec's step-by-step one (same model, longer window),
    # per byte: the codec codes the joined text in fewer tokens
    assert rec.paper_nll_bits_per_token * lf_tokens == pytest.approx(rec.estimate_bits_per_token * rec.tokens,
                                                                     rel=0.05)
    # samples of at most 1,024 tokens, BOS first: 2,500 tokens make 3 samples, every token scored
    ids = llama.tokenizer.encode(alice)[0][:2500]
    est = paper_estimate(llama, ids, BIAS["default"])
    assert est.samples == 3 and est.scored_tokens == 2500


def test_context_sweep(llama):
    rs = context_sweep(DATA / "alice_head.txt", llama, [32, 64], batch=2, sample_bytes=800)
    assert [r.context for r in rs] == [32, 64]
    assert all(isinstance(r, BenchRecord) and r.round_trip_verified for r in rs)
    assert rs[0].flops_per_token < rs[1].flops_per_token
    assert rs[0].original_bytes == rs[1].original_bytes == 800


def test_environment():
    env = environment("cpu", "float32")
    for key in ("llmzip", "torch", "transformers", "constriction", "python", "platform", "cpu", "torch_threads"):
        assert env[key] is not None
    json.dumps(env)


def test_git_revision_is_dirty_for_code_not_for_results(tmp_path):
    """A bench run writes bench/results/: the next run of a series still names clean code clean."""
    import subprocess

    from llmzip.measure.bench import _git_revision

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "bench" / "results" / "run.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    clean = _git_revision(tmp_path / "bench")
    assert clean is not None and len(clean) == 12 and not clean.endswith("+dirty")
    (tmp_path / "bench" / "results" / "run.json").write_text('{"new": 1}\n')
    assert _git_revision(tmp_path / "bench") == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert _git_revision(tmp_path / "bench") == clean + "+dirty"


def test_cli_writes_json_csv_and_plots(tmp_path, llama_dir, gpt2_dir, capsys):
    from llmzip.cli import main

    src = tmp_path / "in.txt"
    src.write_bytes((DATA / "alice_head.txt").read_bytes()[:1200])
    out_json, out_csv, plots = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "plots"
    code = main(["bench", str(src), "-m", str(llama_dir), "-m", str(gpt2_dir), "--context", "64", "--batch", "2",
                 "--repeats", "1", "--paper", "--sweep", "32,64", "--json", str(out_json), "--csv", str(out_csv),
                 "--plot", str(plots), "-q"])
    assert code == 0
    assert capsys.readouterr().out == ""  # -q: no table
    payload = json.loads(out_json.read_text())
    assert payload["environment"]["torch_threads"] >= 1
    kinds = [r["kind"] for r in payload["records"]]
    assert kinds.count("llmzip") == 2 and kinds.count("baseline") == 5
    assert all(r["round_trip_verified"] for r in payload["records"] if not r["skipped"])
    assert all(r["paper_capacity"] is not None for r in payload["records"] if r["kind"] == "llmzip")
    assert len(payload["models"]) == 2
    assert [r["context"] for r in payload["sweep"]] == [32, 64, 32, 64]
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 + 4
    assert {"bits_per_byte", "capacity_real", "env_cpu", "record"} <= set(rows[0])
    for name in ("bits_per_byte.png", "capacity_vs_flops.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table_and_errors(tmp_path, llama_dir, capsys):
    from llmzip.cli import main

    src = tmp_path / "in.txt"
    src.write_bytes(b"hello bench " * 20)
    assert main(["bench", str(src), "-m", str(llama_dir), "--context", "32", "--no-baselines"]) == 0
    out = capsys.readouterr().out
    assert "in.txt" in out and "bpb" in out and "gzip" not in out

    assert main(["bench", str(src), "-m", str(llama_dir), "--sweep", "a,b"]) == 2
    assert main(["bench", str(src), "-m", str(llama_dir), "--bias", "nope"]) == 2
    assert main(["bench", str(src), "--context", "0"]) == 2
    assert main(["bench", str(tmp_path / "missing.txt"), "-m", str(llama_dir)]) == 1
    assert main(["bench", str(src), "-m", str(tmp_path / "no-model")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("llmzip: ") for line in err)


def test_run_record_heads_every_bench_script_json():
    """bench/ scripts start their JSON with the command that reruns them, the date, and the machine
    and versions, with the threads they were asked for (what bench/RESULTS.md quotes)."""
    import sys

    record = run_record(3, ["a.txt", "--bytes", "10"])
    assert record["command"].endswith(" a.txt --bytes 10") and record["command"].startswith(Path(sys.argv[0]).as_posix())
    assert len(record["date"]) == 10
    environment = record["environment"]
    assert environment["threads"] == 3 and environment["cpu_capability"]
    assert {"cpu", "torch", "llmzip", "python"} <= environment.keys()
