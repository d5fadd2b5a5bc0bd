"""One `llmzip compress` alone against two side by side, as llmzip runs them, with threads that
sleep at once and with OpenMP's default spinning, in one command.

    python bench/concurrency.py [FILE] [--bytes 512] [--model M] [--engine E] [--repeats 2] \
        [--out bench/results/concurrency.json]

Why: torch's CPU threads are OpenMP threads, and OpenMP by default lets a thread that has finished
its share spin for a few milliseconds before it sleeps. Two llmzip processes on a 2-core machine then
burn the cores each other needs. A thread that sleeps at once must be woken for every tensor
operation, which costs one process alone much of its second core. llmzip sets a short spin before
torch loads (OMP_WAIT_POLICY=PASSIVE with GOMP_SPINCOUNT, llmzip/_openmp.py); this script measures
what each choice buys and what it costs.

Three arms, each timed alone and as two concurrent runs of the same command on the same input:
- "llmzip": `python -m llmzip.cli compress`, as a user runs it (OpenMP variables unset, so llmzip
  chooses its short spin);
- "sleeping": the same CLI with OMP_WAIT_POLICY=PASSIVE set by the caller, which llmzip leaves
  alone: threads sleep at once;
- "spinning": the same CLI in a process that imports torch before llmzip, so that OpenMP keeps its
  default policy: what every run did before llmzip set the policy.
Runs take torch's default thread count (one per core), as a user's do. Each time is a whole process,
wall clock: start-up and model loading included; the codec's own seconds (its report) are recorded
beside it. Arms alternate within each repeat so that a change in the machine's load hits both.
Every output is compared: the policy changes how threads wait, never the bytes.

Prints the machine's CPU, torch's version, the median times and the ratio of two concurrent runs
to one alone (2.0 would be a fair share of the cores), and writes every run to --out as JSON;
`bench/make_results.py --write` renders that file into bench/RESULTS.md. Any OpenMP variables in
the caller's environment are removed for the runs, so that llmzip's default is what is measured.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_INPUT = ROOT / "tests" / "data" / "alice_head.txt"
# A process that loads torch before llmzip: OpenMP is initialised with its own default wait policy.
SPINNING_MAIN = "import sys, torch; from llmzip.cli import main; sys.exit(main())"
# A process whose waiting threads sleep at once: a user's OMP_WAIT_POLICY=PASSIVE, which llmzip
# leaves alone (llmzip's choice before it spun briefly).
SLEEPING_MAIN = ("import os, sys; os.environ['OMP_WAIT_POLICY'] = 'PASSIVE'; "
                 "from llmzip.cli import main; sys.exit(main())")
ARMS = {
    "llmzip": ["-m", "llmzip.cli"],
    "sleeping": ["-c", SLEEPING_MAIN],
    "spinning": ["-c", SPINNING_MAIN],
}
_REPORT = re.compile(r"bits/byte, ([0-9.]+) s")
_SPIN = re.compile(r"GOMP_SPINCOUNT = '(\d+)'")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time one llmzip compress alone and two side by side.")
    p.add_argument("file", nargs="?", type=Path, default=DEFAULT_INPUT,
                   help=f"text to compress (default: {DEFAULT_INPUT.relative_to(ROOT)})")
    p.add_argument("--bytes", type=int, default=512, help="compress the first N bytes of FILE (default 512)")
    p.add_argument("--model", default=None, help="model spec (default: the embedded SmolLM2-135M)")
    p.add_argument("--engine", default=None, help="llmzip's --engine (default: its own choice)")
    p.add_argument("--repeats", type=int, default=2, help="alone and side-by-side runs per arm (default 2)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"arms to run, of {', '.join(ARMS)} (default: all)")
    p.add_argument("--out", type=Path, default=None, help="write every run and the medians here as JSON")
    args = p.parse_args(argv)
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown or not args.arms:
        p.error(f"unknown arm(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ARMS)}")
    if args.bytes < 1 or args.repeats < 1:
        p.error("--bytes and --repeats must be positive")
    return args


def cpu_model() -> str:
    # Not llmzip.measure.bench.cpu_model: importing llmzip here would set OMP_WAIT_POLICY for the
    # child processes this script times, including the arm that must spin.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def child_env() -> dict[str, str]:
    """The caller's environment without OpenMP settings, plus a request to print OpenMP's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    # libgomp prints its settings (spin count included) to stderr as it starts: which policy ran.
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    return env


def run_once(arm: str, source: Path, options: list[str], env: dict[str, str]) -> dict:
    """One whole `llmzip compress` process: wall seconds, the codec's seconds, its output."""
    cmd = [sys.executable, *ARMS[arm], "compress", "-v", "-c", *options, str(source)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"concurrency: {arm} run failed ({proc.returncode}):\n{err}")
    report = _REPORT.search(err)
    spin = _SPIN.search(err)
    return {"wall_seconds": wall, "coding_seconds": float(report.group(1)) if report else None,
            "openmp_spin_count": int(spin.group(1)) if spin else None, "output": proc.stdout}


def run_side_by_side(arm: str, source: Path, options: list[str], env: dict[str, str], n: int = 2) -> list[dict]:
    """`n` identical runs started together; each one's own wall time."""
    results: list[dict | None] = [None] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = run_once(arm, source, options, env)
        except BaseException as exc:  # a SystemExit from a failed run, re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def summarize(runs: list[dict]) -> dict:
    walls = [r["wall_seconds"] for r in runs]
    coding = [r["coding_seconds"] for r in runs if r["coding_seconds"] is not None]
    return {"median_wall_seconds": statistics.median(walls),
            "median_coding_seconds": statistics.median(coding) if coding else None}


def busy_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy since boot (all processes), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this script and the runs it waited for."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    data = args.file.read_bytes()[: args.bytes]
    if not data:
        raise SystemExit(f"concurrency: {args.file} is empty")
    env = child_env()
    options = (["--model", args.model] if args.model else []) + (["--engine", args.engine] if args.engine else [])
    started = time.time()
    load_before = load_average()
    busy_before, ours_before = busy_cpu_seconds(), own_cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="llmzip-concurrency-") as tmp:
        source = Path(tmp) / args.file.name
        source.write_bytes(data)
        # Untimed: converts the default model into the cache if needed and warms the file cache.
        warm = run_once(args.arms[0], source, options, env)
        runs: dict[str, dict[str, list[dict]]] = {arm: {"alone": [], "side_by_side": []} for arm in args.arms}
        for _ in range(args.repeats):
            for arm in args.arms:
                runs[arm]["alone"].append(run_once(arm, source, options, env))
                runs[arm]["side_by_side"].extend(run_side_by_side(arm, source, options, env))
        packed = Path(tmp) / "out.llmz"
        packed.write_bytes(warm["output"])
        info = subprocess.run([sys.executable, "-m", "llmzip.cli", "info", str(packed)], capture_output=True,
                              env=env, cwd=ROOT)
    busy_after, ours_after = busy_cpu_seconds(), own_cpu_seconds()
    # What other processes took from the machine meanwhile: the timings are only as clean as this.
    others = (None if busy_before is None or busy_after is None else
              max(0.0, (busy_after - busy_before) - (ours_after - ours_before)))
    threads = re.search(rb"threads (\d+)", info.stdout)
    # The file records threads only where they change its numbers (0 for the portable engine):
    # how many the runs actually used is torch's count in a process started like theirs.
    torch_threads = subprocess.run([sys.executable, "-c", "import llmzip, torch; print(torch.get_num_threads())"],
                                   capture_output=True, env=env, cwd=ROOT, text=True).stdout.strip()
    engine = re.search(rb"engine ([^,\s]+)", info.stdout)
    outputs = {r["output"] for arm in runs.values() for rs in arm.values() for r in rs} | {warm["output"]}
    arms = {}
    for arm, by_mode in runs.items():
        alone, pair = summarize(by_mode["alone"]), summarize(by_mode["side_by_side"])
        spins = {r["openmp_spin_count"] for rs in by_mode.values() for r in rs}
        arms[arm] = {
            "alone": alone, "side_by_side": pair,
            "ratio": pair["median_wall_seconds"] / alone["median_wall_seconds"],
            "openmp_spin_count": spins.pop() if len(spins) == 1 else sorted(spins, key=str),
            "runs": {mode: [{k: v for k, v in r.items() if k != "output"} for r in rs]
                     for mode, rs in by_mode.items()},
        }
    result = {
        "environment": {
            "date": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(), "cpu_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "torch": version("torch"), "transformers": version("transformers"), "llmzip": version("llmzip"),
            "llmzip_git": git_commit(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_before": load_before, "load_average_after": load_average(),
            "other_processes_cpu_seconds": others,
        },
        "settings": {
            "input": str(args.file.resolve().relative_to(ROOT)) if args.file.resolve().is_relative_to(ROOT)
            else str(args.file),
            "input_bytes": len(data), "model": args.model or "default (SmolLM2-135M)",
            "threads": int(threads.group(1)) if threads else None,
            "torch_threads": int(torch_threads) if torch_threads.isdigit() else None,
            "engine": engine.group(1).decode() if engine else None, "repeats": args.repeats,
            "compressed_bytes": len(warm["output"]),
        },
        "outputs_identical": len(outputs) == 1,
        "seconds": time.time() - started,
        "arms": arms,
        "command": "python bench/concurrency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    report(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if not result["outputs_identical"]:
        raise SystemExit("concurrency: the runs' outputs differ")
    return result


def report(result: dict) -> None:
    env, settings = result["environment"], result["settings"]
    print(f"machine: {env['cpu']}, {env['cpu_usable']} usable cores; torch {env['torch']}, "
          f"transformers {env['transformers']}; load average before {env['load_average_before']}")
    print(f"input: {settings['input_bytes']} bytes of {settings['input']}; model {settings['model']}, "
          f"engine {settings['engine']}, {settings['torch_threads']} torch threads; {settings['repeats']} repeat(s)")
    print(f"{'arm':<10} {'spin count':>12} {'alone s':>9} {'2 side by side s':>17} {'ratio':>6}")
    for arm, r in result["arms"].items():
        print(f"{arm:<10} {str(r['openmp_spin_count']):>12} {r['alone']['median_wall_seconds']:>9.1f} "
              f"{r['side_by_side']['median_wall_seconds']:>17.1f} {r['ratio']:>6.2f}")
    others = env["other_processes_cpu_seconds"]
    print(f"outputs identical: {'yes' if result['outputs_identical'] else 'NO'}; whole script "
          f"{result['seconds']:.0f} s; other processes used "
          + ("?" if others is None else f"{others:.0f} CPU-seconds meanwhile"))


if __name__ == "__main__":
    main()
