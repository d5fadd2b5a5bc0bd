"""Write bench/RESULTS.md and bench/results/readme_table.md from the JSON files `llmzip bench` wrote.

    python bench/make_results.py --write
    python bench/make_results.py --record-run RUN.json --start T0 --end T1 --slice N --script S -- CMD...

Every figure in the output is read from bench/results/*.json; nothing here is typed in by hand.
The run scripts (cpu_results.sh, gemma_results.sh) call both forms.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BASELINES = ["gzip", "bzip2", "xz", "zstd", "brotli"]
RUNS = [
    ("cpu_smollm2", "SmolLM2-135M on the Canterbury English texts", "bench/cpu_results.sh"),
    ("cpu_gemma", "A second model: Gemma-3-270M beside SmolLM2-135M on the same bytes", "bench/gemma_results.sh"),
]


# ---------------------------------------------------------------------------------------------
# Formatting


def f(value, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:+.2f}%"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or ("l" + "r" * (len(header) - 1))
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def short(path: str) -> str:
    return Path(path).name


def rel(path: str) -> str:
    try:
        r = os.path.relpath(os.path.realpath(path), ROOT)
    except ValueError:
        return path
    return r if not r.startswith("../../") else path


def model_label(name: str) -> str:
    if name.startswith("SmolLM2"):
        return "SmolLM2-135M"
    if name.lower().startswith("gemma-3-270m"):
        return "Gemma-3-270M"
    return name


# ---------------------------------------------------------------------------------------------
# Tables


def pooled(records: list[dict], compressor: str) -> dict | None:
    rs = [r for r in records if r["compressor"] == compressor and not r["skipped"]]
    if not rs:
        return None
    orig = sum(r["original_bytes"] for r in rs)
    comp = sum(r["compressed_bytes"] for r in rs)
    out = {"original_bytes": orig, "compressed_bytes": comp, "bits_per_byte": 8 * comp / orig}
    if rs[0]["kind"] == "llmzip":
        ce = math.fsum(r["cross_entropy_bits"] for r in rs)
        stream = sum(r["stream_bytes"] for r in rs)
        out.update(tokens=sum(r["tokens"] for r in rs), text_bytes=sum(r["text_bytes"] for r in rs),
                   header_bytes=sum(r["header_bytes"] for r in rs), side_bytes=sum(r["side_bytes"] for r in rs),
                   stream_bytes=stream, estimate_bits_per_byte=ce / orig, overhead=8 * stream / ce - 1,
                   total_overhead=8 * comp / ce - 1)
        out["bytes_per_token"] = out["text_bytes"] / out["tokens"]
    return out


def bpb_table(data: dict) -> str:
    records = data["records"]
    files = list(dict.fromkeys(r["file"] for r in records))
    models = list(dict.fromkeys(r["compressor"] for r in records if r["kind"] == "llmzip"))
    base = [b for b in BASELINES if any(r["compressor"] == b and not r["skipped"] for r in records)]
    header = ["file (slice)"] + [f"llmzip {model_label(m)}" for m in models] + base
    rows = []
    for file in files:
        rs = {r["compressor"]: r for r in records if r["file"] == file}
        any_r = next(iter(rs.values()))
        rows.append([f"{short(file)} (first {any_r['original_bytes']:,} of {any_r['file_bytes']:,} B)"]
                    + [f(rs[m]["bits_per_byte"]) for m in models] + [f(rs[b]["bits_per_byte"]) for b in base])
    total = sum(r["original_bytes"] for r in records if r["compressor"] == (models or base)[0])
    rows.append([f"**all {len(files)} slices** ({total:,} B)"]
                + [f(pooled(records, m)["bits_per_byte"]) for m in models]
                + [f(pooled(records, b)["bits_per_byte"]) for b in base])
    settings = {b: next(r["settings"] for r in records if r["compressor"] == b) for b in base}
    note = "\n\nClassic compressor settings: " + "; ".join(f"{b} {settings[b]}" for b in base) + "."
    skipped = [r for r in records if r["skipped"]]
    if skipped:
        note += "\n\nSkipped: " + "; ".join(sorted({f"{r['compressor']} ({r['skipped']})" for r in skipped}))
    return table(header, rows) + note


def full_baselines_table(path: Path) -> str:
    records = json.loads(path.read_text())["records"]
    files = list(dict.fromkeys(r["file"] for r in records))
    base = [b for b in BASELINES if any(r["name"] == b and not r["skipped"] for r in records)]
    rows = []
    for file in files:
        rs = {r["name"]: r for r in records if r["file"] == file}
        rows.append([f"{short(file)} (all {next(iter(rs.values()))['input_size']:,} B)"]
                    + [f(rs[b]["bits_per_byte"]) for b in base])
    return table(["whole file"] + base, rows)


def detail_table(data: dict) -> str:
    records = data["records"]
    header = ["file", "model", "tokens", "bytes/token", "compressed B", "header B", "side B", "stream B",
              "real bpb", "estimate bpb", "overhead", "overhead incl. header+side", "verified"]
    rows = []
    files = list(dict.fromkeys(r["file"] for r in records))
    models = list(dict.fromkeys(r["compressor"] for r in records if r["kind"] == "llmzip"))
    for m in models:
        for file in files:
            for r in records:
                if r["file"] == file and r["compressor"] == m:
                    rows.append([short(file), model_label(m), str(r["tokens"]), f(r["bytes_per_token"], ".2f"),
                                 str(r["compressed_bytes"]), str(r["header_bytes"]), str(r["side_bytes"]),
                                 str(r["stream_bytes"]), f(r["bits_per_byte"]), f(r["estimate_bits_per_byte"]),
                                 pct(r["overhead"]), pct(r["total_overhead"]),
                                 "yes" if r["round_trip_verified"] else "NO"])
        p = pooled(records, m)
        rows.append(["**all**", model_label(m), str(p["tokens"]), f(p["bytes_per_token"], ".2f"),
                     str(p["compressed_bytes"]), str(p["header_bytes"]), str(p["side_bytes"]),
                     str(p["stream_bytes"]), f(p["bits_per_byte"]), f(p["estimate_bits_per_byte"]),
                     pct(p["overhead"]), pct(p["total_overhead"]), ""])
    return table(header, rows, "ll" + "r" * 10 + "l")


def speed_table(data: dict) -> str:
    records = data["records"]
    header = ["file", "compressor", "compress B/s", "compress tok/s", "decompress B/s", "decompress tok/s",
              "compress s", "decompress s", "peak RSS MiB"]
    rows = []
    for r in records:
        if r["skipped"]:
            continue
        llm = r["kind"] == "llmzip"
        rss = r.get("host_peak_rss_bytes")
        rows.append([short(r["file"]), model_label(r["compressor"]) if llm else r["compressor"],
                     f(r["compress_bytes_per_s"], ",.0f"), f(r["compress_tokens_per_s"], ".1f") if llm else "",
                     f(r["decompress_bytes_per_s"], ",.0f"), f(r["decompress_tokens_per_s"], ".1f") if llm else "",
                     f(r["compress_seconds"], ".2f" if llm else ".4f"),
                     f(r["decompress_seconds"], ".2f" if llm else ".4f"),
                     f(rss / 2**20, ".0f") if (llm and rss) else ""])
    return table(header, rows, "ll" + "r" * 7)


def speed_summary(data: dict) -> str:
    """Median over files of each compressor's speeds."""
    import statistics

    records = [r for r in data["records"] if not r["skipped"]]
    names = list(dict.fromkeys(r["compressor"] for r in records))
    header = ["compressor", "compress B/s (median over files)", "compress tok/s", "decompress B/s",
              "decompress tok/s", "load s"]
    rows = []
    for n in names:
        rs = [r for r in records if r["compressor"] == n]
        llm = rs[0]["kind"] == "llmzip"

        def med(key):
            vals = [r[key] for r in rs if r.get(key) is not None]
            return statistics.median(vals) if vals else None

        rows.append([model_label(n) if llm else n, f(med("compress_bytes_per_s"), ",.0f"),
                     f(med("compress_tokens_per_s"), ".1f") if llm else "",
                     f(med("decompress_bytes_per_s"), ",.0f"), f(med("decompress_tokens_per_s"), ".1f") if llm else "",
                     f(rs[0].get("load_seconds"), ".1f") if llm else ""])
    return table(header, rows)


def capacity_table(data: dict) -> str:
    header = ["model", "context", "tokens", "FLOPs/token", "log2 F", "ts (text bits/token)", "real bits/token",
              "estimate bits/token", "IC from real size", "IC from estimate"]
    rows = [[model_label(s["compressor"]), str(s["context"]), str(s["tokens"]), f(s["flops_per_token"], ".4g"),
             f(s["log2_flops_per_token"], ".3f"), f(s["text_bits_per_token"]), f(s["real_bits_per_token"]),
             f(s["estimate_bits_per_token"]), f(s["capacity_real"], ".4f"), f(s["capacity_estimate"], ".4f")]
            for s in data["models"]]
    out = table(header, rows)
    paper = [s for s in data["models"] if s.get("paper_capacity") is not None]
    if paper:
        header = ["model", "samples", "FLOPs/token at 1,024", "mean ts", "mean nll (bits/token)", "IC (paper definition)"]
        rows = [[model_label(s["compressor"]), str(s["paper_samples"]), f(s["paper_flops_per_token"], ".4g"),
                 f(s["paper_text_bits_per_token"]), f(s["paper_nll_bits_per_token"]), f(s["paper_capacity"], ".4f")]
                for s in paper]
        out += "\n\nThe paper's own definition on the same bytes (an estimate, never coded):\n\n" + table(header, rows)
    return out


def environment_block(data: dict, run: dict | None) -> str:
    env = data["environment"]
    opts = data["options"]
    lines = [
        f"- date (UTC): {env['date']}",
        f"- machine: {env['cpu']}; {env['cpu_usable']} usable CPU cores; "
        f"{f(env.get('memory_bytes', 0) / 2**30, '.1f')} GiB memory; GPU: {env['gpu'] or 'none'}",
        f"- torch threads: {env['torch_threads']}; device {env['device']}; dtype {env['dtype']}",
        f"- software: llmzip {env['llmzip']}"
        + (f" (git {env['llmzip_git']})" if env.get("llmzip_git") else "")
        + f", torch {env['torch']}, transformers {env['transformers']}, "
        f"constriction {env['constriction']}, numpy {env['numpy']}, Python {env['python']}, {env['platform']}",
        "- load average when the run ended (1, 5, 15 min): "
        + ", ".join(f"{x:.2f}" for x in env.get("load_average") or []),
        f"- settings: context {opts['context']}, batch {opts['batch'] or 'default (16 on CPU)'}, "
        f"first {opts['sample_bytes']:,} bytes of each file, classic compressors timed {opts['repeats']} times "
        f"(median), information capacity bias {opts['bias']}",
    ]
    if run:
        lines.append(f"- wall time of the whole script: {run['seconds'] / 60:.1f} min "
                     f"(llmzip bench itself: {data['seconds'] / 60:.1f} min)")
        lines.append(f"- command: `{run['script']}`, which ran\n\n  ```\n  {run['llmzip_command']}\n  ```")
    return "\n".join(lines)


def notes(data: dict) -> str:
    """Where the real size goes beyond the estimate, per model, from the pooled figures."""
    records = data["records"]
    models = list(dict.fromkeys(r["compressor"] for r in records if r["kind"] == "llmzip"))
    lines = []
    for m in models:
        p = pooled(records, m)
        comp = p["compressed_bytes"]
        lines.append(f"- {model_label(m)}: of {comp:,} compressed bytes, {p['header_bytes']:,} "
                     f"({100 * p['header_bytes'] / comp:.1f}%) are header, block framing and trailer, "
                     f"{p['side_bytes']:,} ({100 * p['side_bytes'] / comp:.1f}%) side bytes, "
                     f"{p['stream_bytes']:,} the coded stream; the stream is {100 * p['overhead']:+.2f}% "
                     f"over the model's estimate.")
    gemma = [m for m in models if model_label(m) == "Gemma-3-270M" and pooled(records, m)["side_bytes"] > 8]
    if gemma:
        lines.append("- Gemma's side bytes are mostly its newlines: its tokenizer declares `\\n` and runs of "
                     "newlines as *added* tokens that are not special, and llmzip's token table "
                     "(`build_token_table`) leaves every added token out, so each newline goes raw into the "
                     "side channel instead of being coded. Including non-special added tokens in the table "
                     "would code them.")
    return "\n".join(lines)


def headline(data: dict) -> str:
    records = data["records"]
    models = list(dict.fromkeys(r["compressor"] for r in records if r["kind"] == "llmzip"))
    xz = pooled(records, "xz")
    base = {b: pooled(records, b) for b in BASELINES}
    best_b = min((b for b in base if base[b]), key=lambda b: base[b]["bits_per_byte"])
    parts = []
    for m in models:
        p = pooled(records, m)
        parts.append(f"{model_label(m)} {p['bits_per_byte']:.3f} bits/byte (estimate {p['estimate_bits_per_byte']:.3f}, "
                     f"coding overhead {100 * p['overhead']:+.2f}%)")
    s = "Over all slices together: " + "; ".join(parts)
    if xz:
        s += f"; xz -9e {xz['bits_per_byte']:.3f}"
    s += f"; best classic compressor {best_b} {base[best_b]['bits_per_byte']:.3f}."
    return s


# ---------------------------------------------------------------------------------------------
# Documents


def run_section(key: str, title: str, script: str) -> str:
    json_path, run_path, err_path = (RESULTS / f"{key}.json", RESULTS / f"{key}.run.json",
                                     RESULTS / f"{key}.error.txt")
    out = [f"## {title}", ""]
    if err_path.is_file() and err_path.read_text().strip():
        out += [f"`{script}` failed; its error, verbatim:", "", "```", err_path.read_text().strip(), "```", ""]
        if not json_path.is_file():
            return "\n".join(out)
        out += ["The figures below are from an earlier successful run.", ""]
    if not json_path.is_file():
        return "\n".join(out + [f"Not run yet: run `{script}`.", ""])
    data = json.loads(json_path.read_text())
    run = json.loads(run_path.read_text()) if run_path.is_file() else None
    out += [environment_block(data, run), "", headline(data), "",
            "### Bits per byte (real compressed size, everything included; lower is better)", "",
            bpb_table(data), ""]
    full = RESULTS / f"{key.split('_', 1)[0]}_baselines_full.json"
    if key == "cpu_smollm2" and full.is_file():
        out += ["A few KiB give the classic compressors little history to match; on the whole files "
                "(`bench/full_baselines.py`, same settings) they do better:", "",
                full_baselines_table(full), ""]
    out += ["### llmzip in detail", "",
            "`real bpb` is 8 x the .llmz size / input bytes. `estimate bpb` is the model's own cross-entropy "
            "(-log2 p of every coded token from its float probabilities), with no header and no side bytes. "
            "`overhead` is the range-coder stream over that estimate (quantized probabilities plus coder "
            "flushes); the last column also counts header, framing and side bytes.", "",
            detail_table(data), "", notes(data), "",
            "### Speed", "",
            "Wall clock, CPU. llmzip: one compress and one verifying decompress per file (model loading not "
            "included; `load s` is separate). Classic compressors: median of the repeats. Timings on this "
            "shared machine are noisy (the load average of each run is in its settings above); the medians "
            "over files are:", "",
            speed_summary(data), "",
            "<details><summary>Per file</summary>", "", speed_table(data), "", "</details>", "",
            "### Information capacity", "",
            "IC = (ts - compressed bits per token + bias) / log2(FLOPs per token) (arXiv 2511.08066), over all "
            "slices pooled: ts = 8 x text bytes / tokens; the compressed side is the real .llmz size or the "
            "codec's cross-entropy estimate; FLOPs per token at the codec's context "
            "(`llmzip.measure.flops`).", "",
            capacity_table(data), "",
            "The bias is the paper's constant for data sets it does not name; it shifts every model's "
            "score on a data set alike, so what these rows show is the gap between the real size and the "
            "estimate (the header, side bytes and coding overhead, charged per token), not values to set "
            "beside the paper's published ones.", ""]
    plots = RESULTS / f"plots_{key.split('_', 1)[1]}"
    if plots.is_dir():
        out += [f"Charts: `{rel(str(plots / 'bits_per_byte.png'))}`, "
                f"`{rel(str(plots / 'capacity_vs_flops.png'))}`.", ""]
    return "\n".join(out)


def replot() -> None:
    """Redraw each run's charts from its JSON (the same function `llmzip bench --plot` uses)."""
    try:
        from llmzip.measure.bench import BenchRecord
        from llmzip.measure.cli import write_plots
    except ImportError:
        return
    for key, _, _ in RUNS:
        path = RESULTS / f"{key}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            write_plots(RESULTS / f"plots_{key.split('_', 1)[1]}", [BenchRecord(**r) for r in data["records"]],
                        data["models"])


def pending_or_results(path: Path, title: str, pending: str) -> tuple[list[str], dict | None]:
    """A section's heading and the results in `path`, or, where they are not there yet, the heading
    and the line `pending` that says how to produce them (and None)."""
    lines = [f"## {title}", ""]
    if not path.is_file():
        return lines + [pending], None
    return lines, json.loads(path.read_text())


def gpu_speed_section(path: Path) -> str:
    """The end-to-end speed run of bench/gpu_speed.py, or a plain statement that there is none."""
    lines, r = pending_or_results(path, "Speed on a GPU (`bench/gpu_speed.py`)",
                                  "Not yet measured: no GPU was lent to the task that produced these results. The command, "
                                  "on a machine with a CUDA GPU: `python bench/gpu_speed.py ../shared/corpus/*.txt --out "
                                  "bench/results/gpu_speed.json` (add `--random-weights FOLDER` where the real weights cannot "
                                  "travel), then `python bench/make_results.py --write`.")
    if r is None:
        return "\n".join(lines) + "\n"
    env, settings, floor = r["environment"], r["settings"], r["floor"]
    lines += [
        f"- model: {r['model']}, {env['dtype']}, context {settings['context']}, batch {settings['batch']} "
        f"({settings['stream_windows']} windows per stream), engine {settings['engine']}, "
        f"quantizer {settings['quantizer']}",
        f"- machine: {', '.join(env['gpu'] or []) or env['cpu']}; torch {env['torch']}, triton {env['triton']}, "
        f"transformers {env['transformers']}; measured {env['date']}",
        f"- input: {r['input_bytes']:,} bytes, {r['tokens']:,} tokens, {r['bits_per_byte']:.3f} bits/byte; "
        f"round trip verified",
        "",
    ]
    rows = []
    for direction in ("compress", "decompress"):
        d, sh = r[direction], r["shares"][direction]
        rows.append([direction, f(d["bytes_per_second"] / 1e6, ".4g"), f(d["tokens_per_second"], ",.0f"),
                     *(f"{100 * sh[k]:.0f}%" for k in ("model", "kernels", "coder", "other")),
                     f(r["floor"][f"{direction}_gap"], ".1f")])
    rows.append(["floor", f(floor["bytes_per_second"] / 1e6, ".4g"), f(floor["tokens_per_second"], ",.0f"),
                 "", "", "", "", "1.0"])
    lines.append(table(["", "MB/s", "tokens/s", "model", "kernels", "coder", "other", "x floor"], rows))
    m = r["measured"]
    lines += ["", f"Medians of {len(r['compress']['seconds'])} runs. Time shares come from a separate pass "
              "that synchronizes the GPU around each phase. The floor is a {bound}-bound step: "
              "{mb:.1f} MB read (weights and every window's KV cache) at the measured copy bandwidth "
              "{bw:.0f} GB/s, against {gf:.1f} GFLOP at the measured {tf:.1f} TFLOP/s.".format(
                  bound=floor["bound"], mb=floor["step_bytes"] / 1e6, bw=m["copy_read_bytes_per_second"] / 1e9,
                  gf=floor["step_flops"] / 1e9, tf=m["matmul_flops_per_second"] / 1e12)]
    return "\n".join(lines) + "\n"


def concurrency_section(path: Path) -> str:
    """bench/concurrency.py: one llmzip alone against two side by side, with and without spinning threads."""
    lines = ["## Two llmzip processes side by side (`bench/concurrency.py`)", ""]
    if path.is_file():
        lines[0] += f", engine {json.loads(path.read_text())['settings']['engine']}"
    else:
        lines.append("Not run yet: `python bench/concurrency.py --out bench/results/concurrency.json`, then "
                     "`python bench/make_results.py --write`.")
        return "\n".join(lines) + "\n"
    r = json.loads(path.read_text())
    env, settings = r["environment"], r["settings"]
    load = env.get("load_average_before") or []
    lines += [
        f"- date (UTC): {env['date']}; machine: {env['cpu']}, {env['cpu_usable']} usable CPU cores; "
        f"load average before the run: {', '.join(f'{x:.2f}' for x in load) or '-'}",
        f"- software: llmzip {env['llmzip']}" + (f" (git {env['llmzip_git']})" if env.get("llmzip_git") else "")
        + f", torch {env['torch']}, transformers {env['transformers']}, Python {env['python']}",
        f"- input: first {settings['input_bytes']:,} bytes of `{settings['input']}`; model {settings['model']}, "
        f"engine {settings['engine']}, {settings.get('torch_threads', settings['threads'])} torch threads "
        "(its default: one per core); "
        f"{settings['repeats']} repeat(s), medians",
        f"- command: `{r['command']}` ({r['seconds'] / 60:.1f} min); other processes used "
        + ("an unknown amount of" if env.get("other_processes_cpu_seconds") is None else
           f"{env['other_processes_cpu_seconds']:.0f}") + " CPU-seconds of the machine during the run",
        "",
    ]
    labels = {"llmzip": "llmzip's default (a short spin, set before torch loads)",
              "sleeping": "sleeping at once (OMP_WAIT_POLICY=PASSIVE set by the user)",
              "spinning": "OpenMP's default (torch loaded before llmzip)"}
    rows = []
    for arm, a in r["arms"].items():
        rows.append([labels.get(arm, arm), str(a["openmp_spin_count"]), f(a["alone"]["median_wall_seconds"], ".1f"),
                     f(a["side_by_side"]["median_wall_seconds"], ".1f"), f(a["ratio"], ".2f"),
                     f(a["alone"]["median_coding_seconds"], ".1f"),
                     f(a["side_by_side"]["median_coding_seconds"], ".1f")])
    lines.append(table(["threads wait by", "OpenMP spin count", "one alone, s", "each of two side by side, s",
                        "ratio", "coding s, alone", "coding s, side by side"], rows))
    lines += ["", "Each time is a whole `llmzip compress` process, start-up and model loading included; "
              "\"coding s\" is the codec's own time from its report. A ratio of 2.0 is two runs sharing the "
              "cores fairly. The spin count is what libgomp reported at start-up (0: a waiting thread sleeps "
              "at once). Outputs of all runs identical: " + ("yes." if r["outputs_identical"] else "**NO**.")]
    return "\n".join(lines) + "\n"


def software(env: dict) -> str:
    """torch and llmzip (with the commit, where recorded) a run used, and numba where recorded."""
    commit = f" (commit {env['llmzip_git']})" if env.get("llmzip_git") else ""
    return f"torch {env['torch']}, llmzip {env['llmzip']}{commit}" + (f", numba {env['numba']}" if env.get("numba") else "")


def portable_section(path: Path) -> str:
    """bench/portable_engine.py: the portable integer engine against the float engine, same run, same threads."""
    lines, r = pending_or_results(path, "Portable engine against the float engine (`bench/portable_engine.py`)",
                                  "Not run yet: `python bench/portable_engine.py ../shared/corpus/{alice29,asyoulik,lcet10,"
                                  "plrabn12}.txt --out bench/results/portable_engine.json`, then `python bench/make_results.py "
                                  "--write`.")
    if r is None:
        return "\n".join(lines) + "\n"
    env, settings = r["environment"], r["settings"]
    lines += [
        f"- date: {r['date']}; machine: {env['cpu']} (ATen capability {env['cpu_capability']}), "
        f"{env['threads']} torch threads for both engines; {software(env)}",
        f"- first {settings['bytes']:,} bytes of each file, context {settings['context']}, model {settings['model']}; "
        f"float engine: transformers, float32, every window stepped in both directions; portable engine: the same "
        f"windows from BOS (level 1) with its default mixer, full-sequence forwards to compress, stepping to "
        f"decompress (its element-wise chains as fused numba loops on the CPU, from commit c4bc111 on; the "
        f"decoding step's attention, linear layers and norms as loops of their own from af04e66 and 57b79be on); "
        f"{settings['repeats']} run(s) each, medians",
        f"- command: `{r['command']}`; building the integer model from the float weights took "
        f"{r['portable_build_seconds']:.1f} s (once per loaded model, not in the timings)",
    ]
    if "load_average" in r:
        load = r["load_average"]
        lines.append(f"- load average (1, 5, 15 min) before the run {', '.join(f'{x:.2f}' for x in load['before'])}, "
                     f"after it {', '.join(f'{x:.2f}' for x in load['after'])}")
    lines.append("")
    rows = []
    for row in r["rows"]:
        rows.append([row["file"], row["engine"], f(row["bits_per_byte"], ".4f"), f(row["stream_bits_per_byte"], ".4f"),
                     f(row["estimate_bits_per_byte"], ".4f"), f(row["compress_tokens_per_s"], ".1f"),
                     f(row["decompress_tokens_per_s"], ".1f")])
    for name, summary in r["summary"].items():
        rows.append(["**all files**", name, f(summary["bits_per_byte"], ".4f"), f(summary["stream_bits_per_byte"], ".4f"),
                     "", f(summary["compress_tokens_per_s"], ".1f"), f(summary["decompress_tokens_per_s"], ".1f")])
    lines.append(table(["file", "engine", "bits/byte (file)", "bits/byte (streams)", "estimate", "compress tok/s",
                        "decompress tok/s"], rows))
    ratio = r["portable_over_float"]
    lines += ["", f"Portable over float: bits per byte x{ratio['bits_per_byte']:.4f} (whole files) and "
              f"x{ratio['stream_bits_per_byte']:.4f} (coded streams alone); compression x{ratio['compress_tokens_per_s']:.2f} "
              f"and decompression x{ratio['decompress_tokens_per_s']:.2f} the tokens per second. Every file was "
              "decompressed and compared with its input."]
    if "compress_tokens_per_cpu_s" in ratio:
        cpu = {name: summary for name, summary in r["summary"].items()}
        lines += ["", "Per CPU-second of the process (all threads; what each engine costs, whatever share of the "
                  "shared cores it got): " + "; ".join(
                      f"{name} compresses {s['compress_tokens_per_cpu_s']:.1f} and decompresses "
                      f"{s['decompress_tokens_per_cpu_s']:.1f} tokens" for name, s in cpu.items())
                  + f", portable over float x{ratio['compress_tokens_per_cpu_s']:.2f} and "
                  f"x{ratio['decompress_tokens_per_cpu_s']:.2f}."]
    return "\n".join(lines) + "\n"


# Published whole-file figures of the two anchors (bits per byte), as bench/RESULTS.md quotes them.
ANCHORS = [
    ("ts_zip (RWKV-169M, 8-bit weights)", "alice29.txt 1.142; enwik8 1.106", "https://bellard.org/ts_zip/"),
    ("Nacrith (SmolLM2-135M from ~500 MB of GGUF weights, + n-gram, adaptive bias head, match model, mixer; "
     "2,048-token context)", "alice29.txt 0.918; enwik8 0.939", "arXiv 2602.19626"),
]


def levels_plot(r: dict, target: Path) -> bool:
    """Bits per byte against compression and decompression tokens per second, one point per level."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in ((axes[0], "compress_tokens_per_s", "compression"),
                           (axes[1], "decompress_tokens_per_s", "decompression")):
        xs = [lv[key] for lv in r["levels"]]
        ys = [lv["bits_per_byte"] for lv in r["levels"]]
        ax.plot(xs, ys, "o-")
        for lv, x, y in zip(r["levels"], xs, ys):
            ax.annotate(f"-{lv['level']}", (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(f"{label} tokens/s ({r['environment']['threads']} CPU threads)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("real bits per byte (whole files)")
    fig.suptitle(f"llmzip levels, {r['settings']['model']}, portable engine, {r['environment']['cpu']}")
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return True


def levels_section(path: Path) -> str:
    """bench/levels.py: every compression level's real size and speed, in one run."""
    lines, r = pending_or_results(path, "Compression levels (`bench/levels.py`)",
                                  "Not run yet: `python bench/levels.py ../shared/corpus/{alice29,asyoulik,lcet10,plrabn12}.txt`, then "
                                  "`python bench/make_results.py --write`.")
    if r is None:
        return "\n".join(lines) + "\n"
    env, settings = r["environment"], r["settings"]
    decode_files = ", ".join(settings["decode_files"])
    lines += [
        f"- date: {r['date']}; machine: {env['cpu']} (ATen capability {env['cpu_capability']}), {env['threads']} "
        f"torch threads; {software(env)}; model {settings['model']}, engine {settings['engine']}",
        f"- compression: the first {settings['bytes']:,} bytes of {', '.join(settings['files'])}; bits per byte "
        f"pooled over them, whole .llmz files (header included). Decompression: the first "
        f"{settings['decode_bytes']:,} bytes of {decode_files}, decoded and compared with the input.",
        f"- command: `{r['command']}`",
        "",
    ]
    rows = []
    for lv in r["levels"]:
        default = " (default)" if lv["level"] == settings["default_level"] else ""
        rows.append([f"-{lv['level']}{default}", str(lv["context"]), str(lv["carry"]), f"{lv['lane_tokens']:,}",
                     lv.get("mixer", MIXER_BEFORE_ADAPT), f(lv["bits_per_byte"], ".4f"), f(lv["stream_bits_per_byte"], ".4f"),
                     f(lv["estimate_bits_per_byte"], ".4f"), f(lv["compress_tokens_per_s"], ".1f"),
                     f(lv["decompress_tokens_per_s"], ".1f")])
    lines.append(table(["level", "context", "carried", "lane tokens", "mixer", "bits/byte (file)", "bits/byte (streams)",
                        "estimate", "compress tok/s", "decompress tok/s"], rows))
    if levels_plot(r, RESULTS / "levels.png"):
        lines += ["", "![bits per byte against tokens per second, per level](results/levels.png)"]
    whole = path.with_name("levels_whole.json")
    if whole.is_file():
        w = json.loads(whole.read_text())
        lines += ["", f"Whole files ({w['date']}, `{w['command']}`):", ""]
        whole_rows = [(lv, row) for lv in w["levels"] for row in lv["rows"]]
        decoded = [row for _, row in whole_rows if row.get("decode_bytes") == row["original_bytes"]]
        lines.append(table(["level", "context", "carried", "mixer", "file", "bytes", "llmzip bytes", "bits/byte (file)",
                            "bits/byte (streams)", "compress tok/s", "decompress tok/s"],
                           [[f"-{lv['level']}", str(lv["context"]), str(lv["carry"]), lv.get("mixer", MIXER_BEFORE_ADAPT),
                             row["file"], f"{row['original_bytes']:,}",
                             f"{row['compressed_bytes']:,}",
                             f(8 * row["compressed_bytes"] / row["original_bytes"], ".4f"),
                             f(8 * row["stream_bytes"] / row["original_bytes"], ".4f"),
                             f(row["tokens"] / row["compress_seconds"], ".1f") if decoded else "",
                             f(row["decode_tokens"] / row["decompress_seconds"], ".1f") if row in decoded else ""]
                            for lv, row in whole_rows]))
        note = ((f"Every file with a decompression speed was decoded whole and compared with its input; "
                 f"machine: {w['environment']['cpu']}, {w['environment']['torch_threads']} threads, load average "
                 f"when the run ended {', '.join(f'{x:.2f}' for x in w['environment']['load_average'])}. ")
                if decoded else
                "(Sized, not decoded or timed: this run shared the machine with other work. Each level's "
                "round trip is in the sweep above.) ")
        lines += ["", note + "The classic compressors on the same whole file: "
                  + "; ".join(f"{name} {b['bits_per_byte']:.4f}" for name, b in w["baselines"].items())
                  + ". The anchors' alice29.txt figures: ts_zip 1.142, Nacrith 0.918 (quoted below)."]
    lines += ["", "The classic compressors on the same slices (pooled):", ""]
    lines.append(table(["compressor", "settings", "bits/byte"],
                       [[name, b["settings"], f(b["bits_per_byte"], ".4f")] for name, b in r["baselines"].items()]))
    lines += ["", "Published figures of the anchors (whole files, not these slices; quoted, not measured here):", ""]
    lines.append(table(["compressor", "bits/byte", "source"], [list(a) for a in ANCHORS]))
    lines += ["", "Per file:", ""]
    rows = []
    for lv in r["levels"]:
        for row in lv["rows"]:
            decode = (f(row["decode_tokens"] / row["decompress_seconds"], ".1f") if row["decode_tokens"] else "")
            rows.append([f"-{lv['level']}", row["file"], f(8 * row["compressed_bytes"] / row["original_bytes"], ".4f"),
                         f(row["tokens"] / row["compress_seconds"], ".1f"), decode])
    lines.append(table(["level", "file", "bits/byte (file)", "compress tok/s", "decompress tok/s"], rows))
    return "\n".join(lines) + "\n"


def boundary_section(path: Path) -> str:
    """bench/block_boundary.py: what a lane start and a block boundary cost at the default level."""
    lines, r = pending_or_results(path, "Block and lane boundaries (`bench/block_boundary.py`)",
                                  "Not run yet: `python bench/block_boundary.py ../shared/corpus/alice29.txt`.")
    if r is None:
        return "\n".join(lines) + "\n"
    env, st = r["environment"], r["settings"]
    tokens_per_byte = r["rows"][0]["tokens"] / st["bytes"]
    lanes_per_mib = tokens_per_byte * (1 << 20) / st["lane_tokens"]
    lines += [
        f"- date: {r['date']}; machine: {env['cpu']}, {env['threads']} torch threads; torch {env['torch']}, "
        f"llmzip {env['llmzip']}; model {st['model']}",
        f"- the first {st['bytes']:,} bytes of {st['file']} at level -{st['level']} (context {st['context']}, "
        f"carried {st['carry']}, lanes of {st['lane_tokens']:,} tokens), sized three ways; command: `{r['command']}`",
        "",
        table(["layout", "blocks", "lanes", "tokens", "bytes", "bits/byte"],
              [[row["layout"], str(row["blocks"]), str(row["lanes"]), str(row["tokens"]), str(row["compressed_bytes"]),
                f(row["bits_per_byte"], ".4f")] for row in r["rows"]]),
        "",
        f"A lane start costs {r['bytes_per_lane_start']:.1f} bytes. Cutting the text into two blocks (one lane each) "
        f"costs {r['bytes_per_block_boundary']} bytes more than one block of the same two lanes (framing, index entry, "
        f"and where the second lane starts): over a block of the default {st['default_block_bytes'] >> 20} MiB, "
        f"{r['block_boundary_share_of_default_block']:.5f} bits per byte. At this level's {lanes_per_mib:.0f} lane starts "
        f"per MiB of such text (its {tokens_per_byte:.3f} tokens per byte), lane starts cost "
        f"{8 * lanes_per_mib * r['bytes_per_lane_start'] / (1 << 20):.4f} bits per byte.",
    ]
    return "\n".join(lines) + "\n"


MIXER_BEFORE_ADAPT = "match-v1"  # every level's default mixer until adapt-v1 (runs before then did not record it)


def mixer_section(path: Path) -> str:
    """bench/mixer.py: what the match model and the logit bias gain, per kind of text."""
    lines, r = pending_or_results(path, "The match model and the logit bias (`bench/mixer.py`)",
                                  "Not run yet: `python bench/mixer.py bench/data/dpkg.log llmzip/codec.py FORMAT.md "
                                  "../shared/corpus/alice29.txt`.")
    if r is None:
        return "\n".join(lines) + "\n"
    env, st = r["environment"], r["settings"]
    none, match, *adapts = st["mixers"]  # runs before adapt-v2 measured one bias rule
    lines += [
        f"- date: {r['date']}; machine: {env['cpu']}, {env['threads']} torch threads; {software(env)}; "
        f"model {st['model']}, level -{st['level']}",
        f"- the first {st['bytes']:,} bytes of each file, compressed without a mixer, with {match} (the match model) "
        f"and with {' and '.join(adapts)} (a logit bias learned while coding, plus the match model), each stream mixed "
        f"or adapted only where that codes it shorter; whole .llmz files; command: `{r['command']}`",
        "",
        table(["file", "bytes", "tokens", "no mixer bits/byte", f"{match} bits/byte", "gain"]
              + [heading for adapt in adapts for heading in (f"{adapt} bits/byte", "gain")]
              + [f"streams matched / adapted ({adapts[-1]})", "xz -9e bits/byte", f"seconds ({' / '.join(st['mixers'])})"],
              [[row["file"], f"{row['bytes']:,}", f"{row['tokens']:,}", f(row[none]["bits_per_byte"], ".4f"),
                f(row[match]["bits_per_byte"], ".4f"), f"{row[match]['gain_percent']:+.2f}%"]
               + [cell for adapt in adapts for cell in (f(row[adapt]["bits_per_byte"], ".4f"),
                                                          f"{row[adapt]['gain_percent']:+.2f}%")]
               + [f"{row['mixed_streams']}/{row['streams']} / {row['adapted_streams']}/{row['streams']}",
                  f(row["xz_bits_per_byte"], ".3f"), " / ".join(f"{row[m]['seconds']:.0f}" for m in st["mixers"])]
               for row in r["rows"]]),
        "",
        "Gains are against no mixer. The LLM already sees its window (1,024 tokens at the default level, half of them "
        "carried), so the match model pays where text repeats beyond it, as logs and code do. The logit bias pays "
        "where a text's own vocabulary (names, spelling, recurring words) differs from what the model expects overall, "
        "and more the longer the text: it learns from every coded token of its stream. Each stream's flag symbol says "
        "which of the four ways coded it (neither, match, bias, both): the shortest.",
    ]
    return "\n".join(lines) + "\n"


def line_ends_section(path: Path) -> str:
    """bench/line_ends.py: what coding CRLF text as LF, and hard-wrapped lines as paragraphs, gains;
    its run on slices (`path`) and, where there is one, on whole files (line_ends_whole.json)."""
    lines, r = pending_or_results(path, "The line filters (`bench/line_ends.py`)",
                                  "Not run yet: `python bench/line_ends.py ../shared/corpus/{alice29,asyoulik,lcet10,"
                                  "plrabn12}.txt`, then `python bench/make_results.py --write`.")
    if r is None:
        return "\n".join(lines) + "\n"
    lines += [
        "Each file compressed three ways: every byte coded as it is (`--keep-line-ends`); with the line-end filter "
        "only (format version 6: a block whose line ends are all CRLF is coded as LF text); and as llmzip "
        "compresses by default, with the reflow filter as well (a hard-wrapped block's soft line breaks coded as "
        "spaces, plus its wrap record, counted in the size). The default file decompressed and compared with the "
        "input.",
    ]
    whole = path.with_name("line_ends_whole.json")
    for run in [r] + ([json.loads(whole.read_text())] if whole.is_file() else []):
        env, st = run["environment"], run["settings"]
        scope = f"The first {st['bytes']:,} bytes of each file" if st["bytes"] else "Whole files"
        lines += [
            "",
            f"{scope}: {run['date']}; "
            f"machine: {env['cpu']}, {env['threads']} torch threads; {software(env)}; model {st['model']}, "
            f"level -{st['level']}; command: `{run['command']}`",
            "",
            _line_filters_table(run["rows"]),
        ]
    lines += [
        "",
        "With CRLF line ends the model reads text like its training text, usually in fewer tokens to code (and to "
        "decode). Joining a hard-wrapped paragraph's lines saves a token per line and lets the model read "
        "sentences whole; the wrap record puts the breaks back and is used only where it is small beside the "
        "breaks it joins (at least 4 per byte, each break left as an LF counted as a byte: a break where the line "
        "would still fit stays as it is). A file that neither filter takes is coded the same each way.",
    ]
    return "\n".join(lines) + "\n"


def _soft_breaks(row: dict) -> str:
    """All soft breaks, and (runs from 2026-12-05 on) how many the reflow filter joined and kept."""
    if "joined_breaks" not in row:
        return f"{row['soft_breaks']:,}"
    return f"{row['soft_breaks']:,} ({row['joined_breaks']:,} / {row['kept_breaks']:,})"


def _line_filters_table(rows: list[dict]) -> str:
    return table(["file", "bytes", "CRLF / LF", "soft breaks (joined / kept as LF)", "kept bits/byte (tokens)",
                  "line ends (tokens)", "both (tokens)", "wrap record", "line ends gain", "reflow gain", "total gain",
                  "compress tok/s (kept / both)"],
                 [[row["file"], f"{row['bytes']:,}", f"{row['crlf']:,} / {row['lf']:,}", _soft_breaks(row),
                   f"{f(row['kept']['bits_per_byte'], '.4f')} ({row['kept']['tokens']:,})",
                   f"{f(row['line_ends']['bits_per_byte'], '.4f')} ({row['line_ends']['tokens']:,})",
                   f"{f(row['filtered']['bits_per_byte'], '.4f')} ({row['filtered']['tokens']:,})",
                   f"{row['filtered']['wrap_record_bytes']:,} bytes" if row["filtered"]["wrapped_blocks"] else "not used",
                   f"{row['line_ends_gain_percent']:+.2f}%", f"{row['reflow_gain_percent']:+.2f}%",
                   f"{row['gain_percent']:+.2f}%",
                   f"{row['kept']['tokens_per_s']:.1f} / {row['filtered']['tokens_per_s']:.1f}"] for row in rows])


def write() -> None:
    replot()
    # One concurrency run per engine: concurrency.json, concurrency_ENGINE.json, ...
    concurrency = sorted(RESULTS.glob("concurrency*.json")) or [RESULTS / "concurrency.json"]
    sections = ([run_section(*r) for r in RUNS] + [gpu_speed_section(RESULTS / "gpu_speed.json")]
                + [concurrency_section(path) for path in concurrency]
                + [portable_section(RESULTS / "portable_engine.json")] + [levels_section(RESULTS / "levels.json"), boundary_section(RESULTS / "block_boundary.json"),
                   mixer_section(RESULTS / "mixer.json"), line_ends_section(RESULTS / "line_ends.json")])
    doc = [
        "# llmzip benchmark results",
        "",
        "Generated by `bench/make_results.py` from the JSON files in `bench/results/`, which "
        "`bench/cpu_results.sh`, `bench/gemma_results.sh`, `bench/gpu_speed.py`, `bench/concurrency.py` and "
        "`bench/portable_engine.py`, `bench/levels.py`, `bench/block_boundary.py`, `bench/mixer.py` and "
        "`bench/line_ends.py` "
        "write; do not edit by hand. Every llmzip output here was decompressed and compared with its input, "
        "except in the concurrency section, which compares the outputs of its runs with each other.",
        "",
        ("GPU speed is in the last section." if (RESULTS / "gpu_speed.json").is_file() else
         "**GPU figures are not yet measured**: no GPU was lent to the task that produced these results.")
        + " Device and dtype of each run are in its settings below.",
        "",
        "**Timings are noisy.** The machine (2 cores) is shared with other work; each run states the load "
        "average when it ended. "
        "Each llmzip figure is a single compress and a single decompress; the classic compressors' times are "
        "medians of 3 runs; speed tables give medians over files. Sizes and bits per byte are exact and do "
        "not depend on load.",
        "",
        "How the paper's definition is computed here (`--paper`): the file's tokens are cut into samples of "
        "BOS + 1,023 tokens, each sample's first token (BOS) is dropped, ts is averaged per sample and the "
        "nll over all scored tokens, from one full-sequence forward pass per sample, FLOPs at 1,024 tokens. "
        "It is an estimate like the paper's, and the paper's documents are JSONL lines, not slices of one "
        "file (see `llmzip/measure/capacity.py`).",
        "",
        *sections,
    ]
    (HERE / "RESULTS.md").write_text("\n".join(doc).rstrip() + "\n", encoding="utf-8")
    smol = RESULTS / "cpu_smollm2.json"
    if smol.is_file():
        data = json.loads(smol.read_text())
        opts = data["options"]
        env = data["environment"]
        readme = [f"Bits per byte on the first {opts['sample_bytes']:,} bytes of each Canterbury text "
                  f"({env['cpu']} CPU, {env['cpu_usable']} cores, float32, context {opts['context']}; "
                  f"measured {data.get('date', env.get('date', ''))[:10] or 'see RESULTS.md'} by `bench/cpu_results.sh`, details in "
                  f"`bench/RESULTS.md`):", "", bpb_table(data), "", headline(data), ""]
        (RESULTS / "readme_table.md").write_text("\n".join(readme), encoding="utf-8")


def record_run(path: Path, start: float, end: float, slice_bytes: int, script: str, cmd: list[str]) -> None:
    cmd = list(cmd)
    if cmd and Path(cmd[0]).name.startswith("python"):
        cmd[0] = "python"  # whichever interpreter $PYTHON named
    shown = " ".join(rel(c) if os.path.exists(c) else c for c in cmd)
    payload = {
        "script": script.strip(),
        "llmzip_command": shown,
        "start": datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat(timespec="seconds"),
        "end": datetime.datetime.fromtimestamp(end, datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": end - start,
        "slice_bytes": slice_bytes,
    }
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="write bench/RESULTS.md and bench/results/readme_table.md")
    p.add_argument("--record-run", type=Path, help="write a run record (command and wall time) to this path")
    p.add_argument("--start", type=float)
    p.add_argument("--end", type=float)
    p.add_argument("--slice", type=int)
    p.add_argument("--script", default="")
    p.add_argument("cmd", nargs="*")
    args = p.parse_args(argv)
    if args.record_run:
        record_run(args.record_run, args.start, args.end, args.slice, args.script, args.cmd)
    if args.write:
        write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
