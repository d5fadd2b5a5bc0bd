"""Ray scaling on this machine: one process against Ray pools of 1 and 2 CPU workers, in one run.

    python bench/ray_scaling.py ../shared/corpus/alice29.txt --bytes 4096 --block-size 1024 \
        --repeats 3 --out bench/results/ray_scaling.json

The first BYTES of the file, cut into blocks of BLOCK_SIZE, are compressed and decompressed with
the default model (portable engine) by one process with one torch thread, then by a local Ray pool
of 1 and of 2 workers (one CPU and one thread each). Every file must be the single process's, byte
for byte, and every round trip exact. Times are medians of --repeats runs, the pool started
(models loaded, integer models built) before timing; the pool start is reported apart.

It also measures what bounds the driver whatever the number of workers, on this machine: cutting
the input into blocks, writing coded blocks in order, and sending a 1 MiB block to an actor and
getting a coded block's worth of bytes back through Ray's object store (one node: no network).
docs/scaling.md turns these into the 8 and 64 GPU estimates.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import llmzip  # noqa: I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.measure.bench import cpu_model, environment


def _busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (all processes), from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _process_cpu(worker, report) -> float:
    """Run in an actor: its process's CPU seconds."""
    return time.process_time()


def _our_cpu_seconds(ray, pool) -> float:
    """CPU seconds of this process and of the pool's actors (Ray's own daemons not included)."""
    own = time.process_time()
    if pool is None:
        return own
    answers = ray.get([actor.call.remote(_process_cpu) for actor in pool.pool.actors])  # (result, tokens)
    return own + sum(cpu for cpu, _ in answers)


def _median_run(fn, repeats: int, ray=None, pool=None) -> tuple[float, list[float], float, object]:
    """Median wall time of `repeats` runs, every run's, and the CPU seconds that other processes
    (and Ray's daemons) took from the machine meanwhile."""
    times, result, others = [], None, 0.0
    for _ in range(repeats):
        busy, ours = _busy_cpu_seconds(), _our_cpu_seconds(ray, pool)
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
        others += (_busy_cpu_seconds() - busy) - (_our_cpu_seconds(ray, pool) - ours)
    return statistics.median(times), times, others, result


def _driver_bounds(ray, header) -> dict:
    """Bytes per second of the driver's own work, each alone (no model)."""
    from llmzip.container import ALL_TEXT_SIDE, Block, ContainerWriter
    from llmzip.distributed import _cut

    mib = 1 << 20
    data = (Path(llmzip.__file__).parent.joinpath("codec.py").read_bytes() * 2000)[: 64 * mib]
    started = time.perf_counter()
    blocks = sum(1 for _ in _cut(io.BytesIO(data), mib))
    cut = len(data) / (time.perf_counter() - started)

    class Sink(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            return len(b)

    coded = Block(raw_len=mib, raw_crc=0, n_tokens=mib // 4, side=ALL_TEXT_SIDE,
                  streams=[bytes(4096)] * (mib // 5 // 4096))  # about 1.6 bits per byte
    writer = ContainerWriter(Sink(), header)
    started = time.perf_counter()
    for _ in range(256):
        writer.add(coded)
    writer.close()
    write = 256 * mib / (time.perf_counter() - started)

    @ray.remote(num_cpus=1)
    class Echo:
        def code(self, block: bytes) -> bytes:
            return bytes(len(block) // 5)

    echo = Echo.remote()
    ray.get(echo.code.remote(b"warm up"))
    payload = os.urandom(mib)
    started = time.perf_counter()
    for _ in range(64):
        ray.get(echo.code.remote(payload))
    transfer = 64 * mib / (time.perf_counter() - started)
    ray.kill(echo)
    return {"cut_bytes_per_s": cut, "cut_blocks": blocks, "writer_bytes_per_s": write,
            "ray_round_trip_bytes_per_s": transfer,
            "note": "each alone, on this machine; the round trip sends 1 MiB to one actor on this node and gets "
                    "205 KiB back (a coded block at 1.6 bits per byte), one block at a time"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, nargs="?", default=Path("../shared/corpus/alice29.txt"))
    parser.add_argument("--bytes", type=int, default=4096, help="first BYTES of the file (default 4096)")
    parser.add_argument("--block-size", type=int, default=1024, help="bytes per block (default 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="pool sizes to measure (default 1,2)")
    parser.add_argument("--model", default=None, help="model (default: the embedded default)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray_scaling.json")
    args = parser.parse_args(argv)

    import ray
    from llmzip.distributed import RayCodec

    data = args.file.read_bytes()[: args.bytes]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    # Ray sets each actor's OMP_NUM_THREADS to its CPUs; the single process gets one thread too.
    load_before = os.getloadavg()
    rows = []

    torch.set_num_threads(1)
    codec = llmzip.Codec(args.model, device="cpu", threads=1)
    codec.portable  # built before timing, as the pools build theirs
    compress_s, compress_all, compress_others, (blob, stats) = _median_run(
        lambda: codec.compress_with_stats(data, block_bytes=args.block_size), args.repeats)
    decompress_s, decompress_all, decompress_others, restored = _median_run(lambda: codec.decompress(blob),
                                                                           args.repeats)
    if restored != data:
        raise SystemExit("round trip failed in the single process: the benchmark stops here")
    rows.append({"run": "one process, 1 thread", "workers": 0, "compress_seconds": compress_s,
                 "decompress_seconds": decompress_s, "compress_all": compress_all, "decompress_all": decompress_all,
                 "others_cpu_seconds": compress_others + decompress_others})
    print(f"one process: compress {compress_s:.1f} s, decompress {decompress_s:.1f} s; others took "
          f"{compress_others + decompress_others:.0f} CPU-seconds meanwhile", flush=True)

    for workers in [int(w) for w in args.workers.split(",")]:
        started = time.perf_counter()
        pool = RayCodec(args.model, workers=workers, device="cpu")
        start_s = time.perf_counter() - started
        try:
            compress_s, compress_all, compress_others, out = _median_run(
                lambda: pool.compress(data, block_bytes=args.block_size), args.repeats, ray, pool)
            decompress_s, decompress_all, decompress_others, back = _median_run(
                lambda: pool.decompress(out), args.repeats, ray, pool)
        finally:
            pool.close()
        if out != blob or back != data:
            raise SystemExit(f"{workers} worker(s): not the single process's file, or no exact round trip")
        rows.append({"run": f"Ray, {workers} worker(s) x 1 CPU", "workers": workers, "pool_start_seconds": start_s,
                     "compress_seconds": compress_s, "decompress_seconds": decompress_s,
                     "compress_all": compress_all, "decompress_all": decompress_all, "identical": True,
                     "others_cpu_seconds": compress_others + decompress_others})
        print(f"{workers} worker(s): start {start_s:.1f} s, compress {compress_s:.1f} s, "
              f"decompress {decompress_s:.1f} s; others took {compress_others + decompress_others:.0f} "
              "CPU-seconds meanwhile", flush=True)
        time.sleep(2)  # let Ray free the pool's CPUs

    bounds = _driver_bounds(ray, codec.file_header())
    load_after = os.getloadavg()
    ray.shutdown()
    base = rows[0]
    for r in rows:
        for way in ("compress", "decompress"):
            r[f"{way}_bytes_per_s"] = len(data) / r[f"{way}_seconds"]
            r[f"{way}_tokens_per_s"] = stats.tokens / r[f"{way}_seconds"]
            r[f"{way}_speedup"] = base[f"{way}_seconds"] / r[f"{way}_seconds"]
    env = environment("cpu", "float32")
    result = {
        "command": " ".join(["bench/ray_scaling.py", *sys.argv[1:]]) if argv is None else "bench/ray_scaling.py",
        "date": env["date"],
        "environment": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "torch": torch.__version__, "ray": ray.__version__, "llmzip": llmzip.__version__,
                        "llmzip_git": env["llmzip_git"], "load_average_before": load_before,
                        "load_average_after": load_after},
        "settings": {"file": args.file.name, "bytes": len(data), "block_size": args.block_size,
                     "blocks": stats.blocks, "tokens": stats.tokens, "repeats": args.repeats,
                     "model": codec.model.name, "engine": codec.engine,
                     "compressed_bytes": len(blob), "bits_per_byte": 8 * len(blob) / len(data)},
        "rows": rows,
        "driver_bounds": bounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("| run | compress s | decompress s | compress x | decompress x | others' CPU-s |")
    for r in rows:
        print(f"| {r['run']} | {r['compress_seconds']:.1f} | {r['decompress_seconds']:.1f} | "
              f"{r['compress_speedup']:.2f} | {r['decompress_speedup']:.2f} | {r['others_cpu_seconds']:.0f} |")
    print(json.dumps(bounds, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
