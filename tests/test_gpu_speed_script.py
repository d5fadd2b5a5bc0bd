"""bench/gpu_speed.py runs end to end (on the CPU here, with a tiny model): a benchmark that
cannot run is a benchmark nobody can rerun."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str = "gpu_speed"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_speed_script_reports_every_figure(llama_dir, tmp_path, alice, capsys):
    text = tmp_path / "text.txt"
    text.write_bytes(alice[:1500])
    out = tmp_path / "speed.json"
    result = _script().main([str(text), "--mib", "0.002", "--random-weights", str(llama_dir), "--device", "cpu",
                             "--context", "32", "--batch", "4", "--engine", "static", "--repeats", "1",
                             "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["input_bytes"] == result["input_bytes"] == int(0.002 * 2**20)
    assert saved["settings"]["engine"] == "static-v1" and saved["static_engine"]
    for direction in ("compress", "decompress"):
        assert saved[direction]["bytes_per_second"] > 0 and saved[direction]["tokens_per_second"] > 0
        shares = saved["shares"][direction]
        assert 0 < shares["model"] < 1 and 0 <= shares["kernels"] < 1 and 0 <= shares["coder"] < 1
    floor = saved["floor"]
    assert floor["step_bytes"] > floor["weight_bytes"] > 0 and floor["step_flops"] > 0
    assert floor["bound"] in ("memory", "compute") and floor["compress_gap"] > 0
    assert "random weights" in saved["model"]
    assert "floor" in capsys.readouterr().out

    # bench/make_results.py renders the run into RESULTS.md, and says so plainly when there is none.
    section = _script("make_results").gpu_speed_section(out)
    assert "| compress |" in section and "| floor |" in section and "round trip verified" in section
    assert "Not yet measured" in _script("make_results").gpu_speed_section(tmp_path / "missing.json")
