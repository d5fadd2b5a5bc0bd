"""bench/line_ends.py runs end to end (a tiny model, a few hundred bytes) and make_results.py
renders what it wrote: a benchmark that cannot run is a benchmark nobody can rerun."""
from __future__ import annotations

import json

from test_concurrency_script import _script


def test_line_ends_script_measures_every_way_and_renders(llama_dir, alice, tmp_path):
    crlf, lf, plain = tmp_path / "crlf.txt", tmp_path / "lf.txt", tmp_path / "plain.txt"
    crlf.write_bytes(alice[:1600])
    lf.write_bytes(alice[:1600].replace(b"\r\n", b"\n"))
    plain.write_bytes(b"  an indented line of verse\n" * 20)  # no soft breaks: every LF is before a blank
    out = tmp_path / "line_ends.json"
    assert _script("line_ends").main([str(crlf), str(lf), str(plain), "--model", str(llama_dir), "--bytes", "1500",
                                      "--level", "1", "--threads", "1", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["settings"]["level"] == 1 and saved["command"].endswith(f"--out {out}")
    with_crlf, with_lf, without = saved["rows"]
    assert with_crlf["crlf"] == with_crlf["lf"] == with_crlf["filtered"]["line_ends"] > 0
    assert with_crlf["line_ends"]["line_ends"] == with_crlf["filtered"]["line_ends"]
    assert with_crlf["filtered"]["tokens"] < with_crlf["line_ends"]["tokens"] < with_crlf["kept"]["tokens"]
    assert with_crlf["line_ends"]["wrapped_blocks"] == 0 and with_crlf["filtered"]["wrapped_blocks"] == 1
    assert with_crlf["soft_breaks"] > 0 and with_lf["soft_breaks"] > 0 and with_crlf["filtered"]["wrap_record_bytes"] >= 2
    assert with_lf["crlf"] == 0 and with_lf["filtered"]["line_ends"] == 0
    assert with_lf["line_ends"]["bytes"] == with_lf["kept"]["bytes"]  # no CRLF: the same file
    assert with_lf["filtered"]["tokens"] < with_lf["line_ends"]["tokens"]
    assert without["soft_breaks"] == 0 and without["kept"]["bytes"] == without["filtered"]["bytes"]
    # every soft break of a block the filter takes is joined or kept as an LF; none in the others
    for row in (with_crlf, with_lf):
        assert row["joined_breaks"] > 0 and row["joined_breaks"] + row["kept_breaks"] == row["soft_breaks"]
    assert without["joined_breaks"] == without["kept_breaks"] == 0
    make_results = _script("make_results")
    section = make_results.line_ends_section(out)
    assert "The line filters" in section and "crlf.txt" in section and "not used" in section
    assert f"{with_crlf['gain_percent']:+.2f}%" in section and f"{with_lf['reflow_gain_percent']:+.2f}%" in section
    assert "Whole files" not in section
    assert f"{with_lf['soft_breaks']:,} ({with_lf['joined_breaks']:,} / {with_lf['kept_breaks']:,})" in section
    saved["settings"]["bytes"] = 0  # a run on whole files, beside the run on slices
    (tmp_path / "line_ends_whole.json").write_text(json.dumps(saved))
    both = make_results.line_ends_section(out)
    assert "The first 1,500 bytes of each file" in both and "Whole files" in both
    assert both.count(f"{with_lf['reflow_gain_percent']:+.2f}%") == 2 * section.count(f"{with_lf['reflow_gain_percent']:+.2f}%")
    assert "Not run yet" in make_results.line_ends_section(tmp_path / "missing.json")
