"""The ``llmzip bench`` command: measure llmzip's real sizes, estimate and speed beside classic compressors.

    llmzip bench FILES_OR_FOLDERS... [-m MODEL]... [--context N] [--batch N] [--device D]
                 [--dtype T] [--threads N] [--repeats N] [--sample-bytes N] [--no-baselines]
                 [--paper] [--bias NAME_OR_NUMBER] [--sweep 128,256,512] [--json PATH] [--csv PATH]
                 [--plot DIR] [-q]

Prints a table on standard output, one row per model or compressor per file. Exit codes: 0 ok,
1 data, model or file error, 2 usage error.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from .capacity import BIAS

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class _Usage(Exception):
    pass


def add_bench_parser(sub) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "bench", help="measure llmzip (real size, estimate, speed) beside gzip, bzip2, xz, zstd, brotli",
        description="Compress each file with each model (round trip verified) and with the classic "
                    "compressors, and report real bits per byte, the model's cross-entropy estimate, the "
                    "coding overhead, speed, memory and information capacity.")
    p.add_argument("inputs", nargs="*", metavar="FILE_OR_FOLDER", help="files, or folders of files")
    p.add_argument("-m", "--model", action="append", default=None, metavar="MODEL",
                   help="model folder, .gguf file or hub id; repeat for several (default: the embedded SmolLM2-135M)")
    p.add_argument("--context", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--batch", type=int, default=None, help="windows per model call (default: 16 on CPU, 32 on GPU)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU if present)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="model dtype (default: float32 on CPU, bfloat16 on GPU)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--sample-bytes", type=int, default=None, metavar="N",
                   help="measure only the first N bytes of each file")
    p.add_argument("--no-baselines", dest="baselines", action="store_false",
                   help="skip gzip, bzip2, xz, zstd and brotli")
    p.add_argument("--repeats", type=int, default=3, help="runs of each classic compressor; times are medians (default 3)")
    p.add_argument("--paper", action="store_true",
                   help="also compute the paper's per-sample information capacity (1,024-token samples, estimate)")
    p.add_argument("--bias", default="default",
                   help=f"information capacity bias: a number or one of {', '.join(BIAS)} (default: default = {BIAS['default']})")
    p.add_argument("--keep-line-ends", action="store_true",
                   help="code line ends as they are, to measure a model on the bytes exactly as given "
                        "(default: as llmzip compress does, a block whose line ends are all CRLF is coded as LF text, "
                        "and a hard-wrapped block's line breaks inside paragraphs as spaces)")
    p.add_argument("--sweep", default=None, metavar="C1,C2,...",
                   help="also measure each model on each file at these contexts")
    p.add_argument("--json", default=None, metavar="PATH", help="write every field and the environment as JSON")
    p.add_argument("--csv", default=None, metavar="PATH", help="write every field as CSV (one row per record)")
    p.add_argument("--plot", default=None, metavar="DIR", help="write PNG charts into DIR")
    p.add_argument("--text-field", default=None, metavar="NAME",
                   help="the inputs are .jsonl, .jsonl.gz or .parquet corpora with one document per line or row, "
                        "its text in field NAME: each document is measured as a sample of its own")
    p.add_argument("--jsonl", default=None, metavar="PATH",
                   help="append one JSON row per sample and compressor to PATH as each is measured; a rerun skips "
                        "the rows already there, and the figures pooled over all rows are printed")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="measure on a Ray cluster (with --jsonl): started here when no ADDRESS is given, 'auto' to "
                        "join the cluster of this machine; needs pip install 'llmzip[ray]'")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="Ray workers per model (default: one per GPU of the cluster, else one per --threads CPUs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no table")
    return p


# ---------------------------------------------------------------------------------------------
# Parsing helpers


def _parse_bias(text: str) -> float:
    if text in BIAS:
        return BIAS[text]
    try:
        value = float(text)
    except ValueError:
        raise _Usage(f"--bias must be a number or one of {', '.join(BIAS)}, not {text!r}") from None
    if not math.isfinite(value):
        raise _Usage("--bias must be finite")
    return value


def _parse_sweep(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise _Usage(f"--sweep takes positive integers separated by commas, not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise _Usage(f"--sweep takes positive integers separated by commas, not {text!r}")
    return values


def _check(args) -> None:
    if args.ray is not None:
        from ..distributed import ray_address

        args.ray = ray_address(args.ray, args.inputs)
    if not args.inputs:
        raise _Usage("no input files given")
    if args.ray is not None and not args.jsonl:
        raise _Usage("--ray writes one row per sample and model: add --jsonl PATH (a rerun skips the rows there)")
    if args.jsonl:
        extra = [o for o, v in (("--sweep", args.sweep), ("--json", args.json), ("--csv", args.csv),
                                ("--plot", args.plot)) if v]
        if extra:
            raise _Usage(f"{extra[0]} needs every record in memory; with --jsonl the rows are in the JSONL file")
    if args.sweep and args.text_field:
        raise _Usage("--sweep measures whole files, not the documents of --text-field")
    for option in ("workers", "context", "batch", "sample_bytes", "repeats", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise _Usage(f"--{option.replace('_', '-')} must be a positive number")


# ---------------------------------------------------------------------------------------------
# Progress


class _Bar:
    """One tqdm bar on stderr per phase, only when stderr is a terminal and -q is not given."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None
        self.key = None

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        key = (p.phase, p.compressor, p.file)
        if key != self.key:
            self.close()
            from tqdm import tqdm

            self.bar = tqdm(total=p.total_bytes, unit="B", unit_scale=True, leave=False, dynamic_ncols=True,
                            file=sys.stderr, desc=f"{p.phase} {Path(p.file).name} [{p.compressor}]")
            self.key = key
            self.started = time.perf_counter()
        self.bar.n = min(p.done_bytes, p.total_bytes)
        rate = p.tokens / max(1e-9, time.perf_counter() - self.started)
        self.bar.set_postfix_str(f"{p.tokens} tok, {rate:.0f} tok/s", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.key = None


# ---------------------------------------------------------------------------------------------
# Output


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _si(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    left = {0, 1}
    lines = ["  ".join(h.ljust(w) if i in left else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def format_records(records) -> str:
    """The readable table: one row per model or compressor per file."""
    header = ["file", "compressor", "bytes", "tokens", "B/tok", "compressed", "header", "side", "bpb",
              "est bpb", "overhead", "comp B/s", "dec B/s", "comp tok/s", "dec tok/s", "IC real", "IC est",
              "verified"]
    rows = []
    for r in records:
        name = Path(r.file).name + ("" if r.sample is None else f"#{r.sample}")
        if r.skipped:
            rows.append([name, r.compressor, str(r.original_bytes)] + ["-"] * 14 + ["skipped"])
            continue
        rows.append([
            name, r.compressor, str(r.original_bytes), _fmt(r.tokens, "d"),
            _fmt(r.bytes_per_token, ".2f"), _fmt(r.compressed_bytes, "d"), _fmt(r.header_bytes, "d"),
            _fmt(r.side_bytes, "d"), _fmt(r.bits_per_byte, ".3f"), _fmt(r.estimate_bits_per_byte, ".3f"),
            "-" if r.overhead is None else f"{100 * r.overhead:+.2f}%",
            _si(r.compress_bytes_per_s), _si(r.decompress_bytes_per_s),
            _fmt(r.compress_tokens_per_s, ".1f"), _fmt(r.decompress_tokens_per_s, ".1f"),
            _fmt(r.capacity_real, ".4f"), _fmt(r.capacity_estimate, ".4f"),
            "yes" if r.round_trip_verified else "no",
        ])
    return _table(rows, header)


def _format_models(summary: list[dict]) -> str:
    header = ["model", "settings", "files", "tokens", "FLOPs/tok", "ts", "real b/tok", "est b/tok",
              "IC real", "IC est", "paper IC"]
    rows = [[s["compressor"], s["settings"], str(s["files"]), str(s["tokens"]), f"{s['flops_per_token']:.3e}",
             f"{s['text_bits_per_token']:.3f}", f"{s['real_bits_per_token']:.3f}",
             f"{s['estimate_bits_per_token']:.3f}", f"{s['capacity_real']:.4f}", f"{s['capacity_estimate']:.4f}",
             _fmt(s.get("paper_capacity"), ".4f")] for s in summary]
    return _table(rows, header)


def _format_sweep(records) -> str:
    header = ["file", "model", "context", "bpb", "est bpb", "overhead", "comp tok/s", "dec tok/s", "FLOPs/tok"]
    rows = [[Path(r.file).name, r.compressor, str(r.context), _fmt(r.bits_per_byte, ".3f"),
             _fmt(r.estimate_bits_per_byte, ".3f"), "-" if r.overhead is None else f"{100 * r.overhead:+.2f}%",
             _fmt(r.compress_tokens_per_s, ".1f"), _fmt(r.decompress_tokens_per_s, ".1f"),
             f"{r.flops_per_token:.3e}"] for r in records]
    return _table(rows, header)


def _failed(exc: Exception) -> int:
    """A measurement's error as one line on stderr, and the exit code."""
    name = getattr(exc, "filename", None) if isinstance(exc, OSError) else None
    text = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    print(f"llmzip: {name + ': ' if name else ''}{text}", file=sys.stderr)
    return EXIT_ERROR


def _write_json(path: Path, payload: dict) -> None:
    from .corpus import jsonable  # with the measuring modules, loaded by the time anything is written

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(payload), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_csv(path: Path, records, env: dict) -> None:
    from .bench import BenchRecord
    import dataclasses

    names = [f.name for f in dataclasses.fields(BenchRecord)]
    env_cols = {f"env_{k}": (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in env.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["record"] + names + list(env_cols))
        writer.writeheader()
        for section, rs in records:
            for r in rs:
                row = {"record": section, **r.as_dict(), **env_cols}
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    os.replace(tmp, path)


def write_plots(folder: Path, records, summary: list[dict]) -> list[Path]:
    """bits_per_byte.png (grouped bars: files x compressors) and capacity_vs_flops.png (scatter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    files = list(dict.fromkeys(Path(r.file).name for r in records))
    compressors = list(dict.fromkeys(r.compressor for r in records if r.bits_per_byte is not None and not r.skipped))
    values = {(Path(r.file).name, r.compressor): r.bits_per_byte for r in records
              if r.bits_per_byte is not None and not r.skipped}
    fig, ax = plt.subplots(figsize=(max(7.5, 3.2 + 0.35 * len(files) * max(1, len(compressors))), 4.5))
    width = 0.8 / max(1, len(compressors))
    for j, comp in enumerate(compressors):
        xs = [i + (j - (len(compressors) - 1) / 2) * width for i in range(len(files))]
        ys = [values.get((f, comp), float("nan")) for f in files]
        ax.bar(xs, ys, width=width, label=comp)
    ax.set_xticks(range(len(files)))
    ax.set_xticklabels(files, rotation=15 if len(files) > 3 else 0)
    ax.set_ylabel("bits per byte (real compressed size)")
    ax.set_title("Bits per byte by file and compressor (lower is better)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = folder / "bits_per_byte.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for i, s in enumerate(summary):
        color = colors[i % len(colors)]
        label = f"{s['compressor']} (ctx {s['context']})"
        x = s["flops_per_token"]
        ax.plot([x, x], [s["capacity_real"], s["capacity_estimate"]], color=color, lw=0.8, alpha=0.6)
        ax.scatter([x], [s["capacity_real"]], marker="o", s=50, color=color, label=f"{label}: real size")
        ax.scatter([x], [s["capacity_estimate"]], marker="x", s=50, color=color, label=f"{label}: estimate")
        if s.get("paper_capacity") is not None:
            ax.scatter([s["paper_flops_per_token"]], [s["paper_capacity"]], marker="^", s=50, color=color,
                       label=f"{s['compressor']}: paper definition (estimate, F at 1,024)")
    ax.set_xscale("log")
    xs = sorted({s["flops_per_token"] for s in summary})  # ticks; the paper's points sit just right
    every = xs + [s["paper_flops_per_token"] for s in summary if s.get("paper_capacity") is not None]
    if xs:
        from matplotlib.ticker import NullFormatter

        ax.set_xlim(min(every) / 1.25, max(every) * 1.25)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xs)
        tilt = len(xs) > 1
        ax.set_xticklabels([f"{x:.3g}" for x in xs], rotation=30 if tilt else 0, ha="right" if tilt else "center",
                           fontsize="small")
    ax.set_xlabel("forward FLOPs per token (log scale)")
    ax.set_ylabel("information capacity")
    ax.set_title("Information capacity against FLOPs per token")
    ax.grid(alpha=0.3)
    if summary:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path = folder / "capacity_vs_flops.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# The command


def run_bench(args) -> int:
    """Run ``llmzip bench`` from parsed arguments; returns the exit code."""
    from ..errors import LLMZipError

    try:
        _check(args)
        bias = _parse_bias(args.bias)
        sweep = _parse_sweep(args.sweep)
    except _Usage as exc:
        print(f"llmzip: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.ray is not None:
        from ..distributed import require_ray
        from ..errors import MissingExtraError

        try:
            require_ray()
        except MissingExtraError as exc:
            print(f"llmzip: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.jsonl:
        return _run_corpus(args, bias)
    from .bench import bench, context_sweep, environment, expand_inputs, summarize_models

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    models = args.model or [None]
    bar = _Bar(not args.quiet)
    started = time.perf_counter()
    try:
        try:
            files = expand_inputs(args.inputs)
        except FileNotFoundError as exc:
            print(f"llmzip: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if not files:
            print("llmzip: no input files", file=sys.stderr)
            return EXIT_ERROR
        records = bench(files, models, context=args.context, batch=args.batch, device=args.device,
                        dtype=args.dtype, sample_bytes=args.sample_bytes, baselines=args.baselines,
                        baseline_repeats=args.repeats, paper_mode=args.paper, bias=bias, text_field=args.text_field,
                        keep_line_ends=args.keep_line_ends, progress=bar)
        sweep_records = []
        if sweep:
            for spec in models:
                for f in files:
                    sweep_records.extend(context_sweep(f, spec, sweep, batch=args.batch, device=args.device,
                                                       dtype=args.dtype, sample_bytes=args.sample_bytes,
                                                       bias=bias, keep_line_ends=args.keep_line_ends,
                                                       progress=bar))
    except (LLMZipError, ValueError, RuntimeError, OSError) as exc:
        bar.close()
        return _failed(exc)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started

    llm = [r for r in records if r.kind == "llmzip"]
    env = environment(device=llm[0].device if llm else args.device, dtype=llm[0].dtype if llm else args.dtype)
    summary = summarize_models(records)
    if not args.quiet:
        print(format_records(records))
        if summary:
            print()
            print(_format_models(summary))
        if sweep_records:
            print()
            print(_format_sweep(sweep_records))
    try:
        if args.json:
            payload = {
                "options": {"inputs": [str(x) for x in args.inputs], "models": [m for m in models],
                            "context": args.context, "batch": args.batch, "device": args.device,
                            "dtype": args.dtype, "sample_bytes": args.sample_bytes, "baselines": args.baselines,
                            "repeats": args.repeats, "threads": args.threads, "paper": args.paper, "bias": bias,
                            "sweep": sweep, "text_field": args.text_field},
                "environment": env,
                "seconds": elapsed,
                "records": [r.as_dict() for r in records],
                "models": summary,
                "sweep": [r.as_dict() for r in sweep_records],
            }
            _write_json(Path(args.json), payload)
        if args.csv:
            _write_csv(Path(args.csv), [("bench", records), ("sweep", sweep_records)], env)
        if args.plot:
            write_plots(Path(args.plot), records, summary)
    except OSError as exc:
        name = getattr(exc, "filename", None)
        print(f"llmzip: {name + ': ' if name else ''}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _run_corpus(args, bias: float) -> int:
    """`bench --jsonl` (with or without --ray): rows appended as measured, the rest skipped on a
    rerun, the figures pooled over every row printed."""
    from ..cli import _ProgressBar
    from ..codec import Progress
    from ..errors import LLMZipError
    from .corpus import measure_corpus

    started_ray = False
    bar = _ProgressBar(not args.quiet, None, "bench")
    try:
        if args.ray is not None:
            from ..distributed import connect

            started_ray = connect(None if args.ray == "local" else args.ray)
        elif args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        result = measure_corpus(
            args.inputs, args.jsonl, args.model or [None], text_field=args.text_field,
            sample_bytes=args.sample_bytes, baselines=args.baselines, baseline_repeats=args.repeats,
            paper_mode=args.paper, bias=bias, ray=args.ray is not None, workers=args.workers,
            cpus_per_worker=args.threads, progress=lambda done, tokens: bar(Progress(done, tokens)),
            context=args.context, batch=args.batch, device=args.device, dtype=args.dtype,
            keep_line_ends=args.keep_line_ends)
    except (LLMZipError, ValueError, RuntimeError, OSError) as exc:
        bar.close()
        return _failed(exc)
    finally:
        bar.close()
        if started_ray:
            import ray

            ray.shutdown()
    if not args.quiet:
        print(f"{args.jsonl}: {result.rows_before} rows were there, {result.rows_written} written")
        print(format_pooled(result.models, result.baselines))
    return EXIT_OK


def format_pooled(models: list[dict], baselines: list[dict]) -> str:
    """Bits per byte and information capacity pooled over every row: sums of bytes and tokens, not
    means of ratios."""
    header = ["compressor", "settings", "samples", "bytes", "compressed", "bpb", "est bpb", "IC real", "IC est",
              "paper IC"]
    rows = [[s["compressor"], s["settings"], str(s["files"]), str(s["original_bytes"]), str(s["compressed_bytes"]),
             f"{s['bits_per_byte']:.4f}", f"{s['estimate_bits_per_byte']:.4f}", f"{s['capacity_real']:.4f}",
             f"{s['capacity_estimate']:.4f}", _fmt(s.get("paper_capacity"), ".4f")] for s in models]
    rows += [[b["compressor"], "", str(b["files"]), str(b["original_bytes"]), str(b["compressed_bytes"]),
              _fmt(b["bits_per_byte"], ".4f"), "-", "-", "-", "-"] for b in baselines]
    return _table(rows, header)
