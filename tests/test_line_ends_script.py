"""bench/line_ends.py runs end to end (a tiny model, a few hundred bytes) and make_results.py
renders what it wrote: a benchmark that cannot run is a benchmark nobody can rerun."""
from __future__ import annotations

import json

from test_concurrency_script import _script


def test_line_ends_script_measures_both_ways_and_renders(llama_dir, alice, tmp_path):
    crlf, lf = tmp_path / "crlf.txt", tmp_path / "lf.txt"
    crlf.write_bytes(alice[:700])
    lf.write_bytes(alice[:700].replace(b"\r\n", b"\n"))
    out = tmp_path / "line_ends.json"
    assert _script("line_ends").main([str(crlf), str(lf), "--model", str(llama_dir), "--bytes", "600", "--level", "1",
                                      "--threads", "1", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["settings"]["level"] == 1 and saved["command"].endswith(f"--out {out}")
    with_crlf, with_lf = saved["rows"]
    assert with_crlf["crlf"] == with_crlf["lf"] == with_crlf["filtered"]["line_ends"] > 0
    assert with_crlf["filtered"]["tokens"] < with_crlf["kept"]["tokens"]
    assert with_lf["crlf"] == 0 and with_lf["filtered"]["line_ends"] == 0
    assert with_lf["filtered"]["bytes"] == with_lf["kept"]["bytes"]  # nothing to filter: the same file
    make_results = _script("make_results")
    section = make_results.line_ends_section(out)
    assert "The line-end filter" in section and "crlf.txt" in section
    assert f"{with_crlf['gain_percent']:+.2f}%" in section
    assert "Not run yet" in make_results.line_ends_section(tmp_path / "missing.json")
