"""bench/concurrency.py runs end to end (a tiny model, a few hundred bytes) and make_results.py
renders what it wrote: a benchmark that cannot run is a benchmark nobody can rerun."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from llmzip import _openmp

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_concurrency_script_times_every_arm(gpt2_dir, tmp_path, capsys):
    out = tmp_path / "concurrency.json"
    result = _script("concurrency").main(["--model", str(gpt2_dir), "--bytes", "150", "--repeats", "1",
                                          "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["outputs_identical"] and saved["settings"]["input_bytes"] == 150
    assert saved["settings"]["engine"] == "transformers" and saved["settings"]["torch_threads"] >= 1
    others = saved["environment"]["other_processes_cpu_seconds"]
    assert others is None or others >= 0
    for arm in ("llmzip", "sleeping", "spinning"):
        a = saved["arms"][arm]
        assert len(a["runs"]["alone"]) == 1 and len(a["runs"]["side_by_side"]) == 2
        assert a["alone"]["median_wall_seconds"] > 0 and a["ratio"] > 0
        assert a["alone"]["median_coding_seconds"] is not None
    spins = tuple(result["arms"][arm]["openmp_spin_count"] for arm in ("llmzip", "sleeping", "spinning"))
    if spins != (None, None, None):  # libgomp reports it: llmzip's short spin, none, OpenMP's default
        assert spins == (int(_openmp.SPIN_COUNT), 0, 300_000)
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ") and "torch" in printed and "ratio" in printed

    make_results = _script("make_results")
    section = make_results.concurrency_section(out)
    assert "Two llmzip processes side by side" in section and f"{a['ratio']:.2f}" in section
    assert "Not run yet" in make_results.concurrency_section(tmp_path / "missing.json")
