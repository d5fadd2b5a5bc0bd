"""Coding on a Ray cluster: blocks sent to a pool of actors, each holding the model once.

A file's blocks are independent, so any machine with the model can code any of them. The driver
(the process calling this module) never loads the model: it cuts the input into exactly the blocks
the single-process compressor cuts (`codec.split_blocks`), sends each to a free actor, and writes
the coded blocks in order through `ContainerWriter` as they come back. It holds at most `window`
blocks (sent, or coded and waiting for an earlier one), so memory is bounded and the output
streams whatever the input's size. Decompression sends blocks (found through the block index of a
seekable file, else read front to back) and writes the decoded data in order.

With the portable engine every actor computes the same integers on any CPU or GPU, so the file is
byte for byte what `Codec.compress` writes. Each coded block comes back with the header its actor
writes, and a block coded under another header than the file's (a float engine on another kind
of device) is refused, never written.

Failures: an actor that dies (its process crashed or was killed, its node was lost) is replaced
by a new one, and the block it held goes to the next free actor, at most `max_attempts` times.
The driver does this itself rather than through Ray's own task retries, which announce each
retry on the driver's terminal. Errors in the data or the model are not retried: the llmzip
exception the actor raised is raised here.

Ray is an optional extra (`pip install 'llmzip[ray]'`); this module imports it only when used.
"""
from __future__ import annotations

import collections
import heapq
import io
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from .codec import BLOCK_BYTES, Codec, Progress, ProgressCallback, Stats, split_blocks
from .container import Block, ContainerWriter, Header, StreamReader, crc32, header_bytes, read_index
from .errors import ChecksumError, LLMZipError, MissingExtraError, UnsupportedParameterError
from .portable import PORTABLE_ENGINE

log = logging.getLogger(__name__)

RAY_EXTRA = "pip install 'llmzip[ray]'"
POLL_SECONDS = 0.5  # how often actors are asked for their progress, when someone is watching
START_WAIT_SECONDS = 30.0  # for resources that other work still holds (Ray frees a killed actor's late)
_ADDRESS = re.compile(r"(ray://)?[\w.\-]+:[0-9]+|\[[0-9a-fA-F:]+\]:[0-9]+")
# The Stats fields an actor counts for the blocks it codes (the driver counts framing and sizes).
_SUMMED = ("tokens", "text_bytes", "side_bytes", "stream_bytes", "blocks", "cross_entropy_bits", "quantized_bits",
           "model_seconds", "quantize_seconds", "coder_seconds")


def require_ray() -> ModuleType:
    """The `ray` module, or a MissingExtraError that says what to install."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def is_address(text: str) -> bool:
    """Whether a `--ray` value names a cluster (auto, local, host:port, ray://host:port) rather
    than being the first input file that argparse took for the option's value."""
    return text in ("auto", "local") or bool(_ADDRESS.fullmatch(text))


def ray_address(value: str | None, inputs: list[str]) -> str | None:
    """`--ray`'s address as the command means it. Given without one, argparse takes the first input
    for its value: that input goes back to the front of `inputs`, and Ray is started here ("local")."""
    if value is None or is_address(value):
        return value
    inputs.insert(0, value)
    return "local"


def connect(address: str | None = None) -> bool:
    """Use the Ray this process is connected to, else join `address` ("auto": the cluster this
    machine belongs to; "host:port" or "ray://host:port"), else (None or "local") start one here.

    Returns True when this call started or joined Ray, so that the caller shuts it down. Ray's
    own output stays off the terminal: workers' output is not forwarded, only errors are logged,
    the results of a dead worker's tasks (dropped on purpose: the block is sent again) are not
    reported as unhandled, and a local Ray sends no usage statistics, unless the environment
    (RAY_IGNORE_UNHANDLED_ERRORS, RAY_USAGE_STATS_ENABLED) says otherwise.
    (Ray reads these settings from the environment of the process that starts it.)
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    # Results of tasks whose actor died are dropped on purpose (the item is sent again).
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    options: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address in (None, "", "local"):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        options.update(include_dashboard=False)
    else:
        options.update(address=address)
    try:
        ray.init(**options)
    except ConnectionError as exc:
        reason = str(exc).split(". ")[0].rstrip(".")
        raise LLMZipError(f"cannot reach the Ray cluster at {address!r} ({reason}): start it with 'ray start "
                          "--head', or give --ray no address to start one for this command alone") from None
    return True


# ---------------------------------------------------------------------------------------------
# The actor: one model, any number of calls


class Worker:
    """One actor's state: a Codec, loaded on first use, and the progress of the call it is
    running, readable (`progress`) while the call runs. Also usable in-process, where `listener`
    hears each progress report."""

    def __init__(self, model: str | None, codec_kwargs: dict[str, Any]):
        self._spec = (model, codec_kwargs)
        self._codec: Codec | None = None
        self.load_seconds = 0.0
        self._progress = (0.0, 0)
        self.listener: Callable[[float, int], None] | None = None

    def codec(self) -> Codec:
        if self._codec is None:
            started = time.perf_counter()
            model, kwargs = self._spec
            self._codec = Codec(model, **kwargs)
            self.load_seconds = time.perf_counter() - started
        return self._codec

    def ready(self) -> bytes:
        """Load the model (and build the portable engine's integer model, so that the first block
        does not wait for it); the header this actor's codec writes."""
        codec = self.codec()
        if codec.engine == PORTABLE_ENGINE:
            codec.portable
        return header_bytes(codec.file_header())

    def call(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, int]:
        """fn(worker, report, *args) and the tokens it reported; report(fraction, tokens) is what
        `progress` returns meanwhile."""
        self._progress = (0.0, 0)

        def report(fraction: float, tokens: int) -> None:
            self._progress = (fraction, tokens)
            if self.listener is not None:
                self.listener(fraction, tokens)

        result = fn(self, report, *args)
        return result, self._progress[1]

    def progress(self) -> tuple[float, int]:
        return self._progress


_actor_classes: dict[int, Any] = {}


def _actor_class(ray: ModuleType) -> Any:
    """The actor class, made once per Ray module (two threads: `progress` answers during `call`)."""
    key = id(ray)
    if key not in _actor_classes:
        _actor_classes[key] = ray.remote(max_concurrency=2)(Worker)
    return _actor_classes[key]


def _retryable(ray: ModuleType) -> tuple[type[BaseException], ...]:
    """Failures of a process or node, not of the work: the item goes to another actor."""
    names = ("RayActorError", "WorkerCrashedError", "ObjectLostError", "OutOfMemoryError", "NodeDiedError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def _raised_in_actor(ray: ModuleType, exc: BaseException) -> BaseException:
    """The exception an actor's code raised (an LLMZipError stays one), not Ray's wrapper of it."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        return cause
    return LLMZipError(f"a Ray worker failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


# ---------------------------------------------------------------------------------------------
# The pool


class WorkerPool:
    """Ray actors that each load `Codec(model, **codec_kwargs)` once, and `map`, which runs a
    function on them over a stream of items and returns the results in order.

    `model` is what `load_model` takes, as each node can resolve it (None: the embedded default;
    a folder or .gguf path present on every node; a hub id). `workers` defaults to one per GPU of
    the cluster when it has GPUs (and `device` is not "cpu"), else one per `cpus_per_worker` CPUs.
    `window` bounds the items held at once (default: twice the workers). Connects to Ray (a
    local one, unless already connected) if needed. Close it (or use `with`) to free the actors.
    """

    def __init__(self, model: str | os.PathLike | None = None, *, workers: int | None = None,
                 cpus_per_worker: int = 1, window: int | None = None, max_attempts: int = 3,
                 **codec_kwargs: Any):
        self._ray = ray = require_ray()
        connect()
        if cpus_per_worker < 1 or (workers is not None and workers < 1) or max_attempts < 1:
            raise UnsupportedParameterError("workers, CPUs per worker and attempts must be positive")
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise UnsupportedParameterError("a Ray pool loads its model on every node: pass a model name or path, "
                                            "not a loaded model")
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        device = codec_kwargs.get("device")
        device = "auto" if device is None else str(device)
        if device == "auto":
            self.gpus = gpus > 0
        elif device == "cpu":
            self.gpus = False
        elif device.startswith("cuda"):
            if not gpus:
                raise UnsupportedParameterError(f"device {device}: the Ray cluster has no GPUs")
            self.gpus = True
            codec_kwargs["device"] = "cuda"  # each actor sees its own GPU as cuda:0
        else:
            raise UnsupportedParameterError(f"device {device!r}: Ray workers run on cpu or cuda")
        if not self.gpus and codec_kwargs.get("threads") is None:
            # Explicit, so that a float engine's header (which records threads) is the same on every actor.
            codec_kwargs["threads"] = cpus_per_worker
        capacity = gpus if self.gpus else cpus // cpus_per_worker
        each = "" if self.gpus else f" at {cpus_per_worker} CPU(s) each"
        if workers is not None and workers > capacity:
            have = f"{gpus} GPU(s)" if self.gpus else f"{cpus} CPU(s)"
            raise UnsupportedParameterError(f"{workers} workers do not fit the Ray cluster's {have}{each}")
        self.size = workers or max(1, self._free(cpus_per_worker) or capacity)
        # Ray would queue actors that do not fit what is free (another pool holds it) for ever.
        deadline = time.monotonic() + START_WAIT_SECONDS
        while self._free(cpus_per_worker) < self.size:
            if time.monotonic() > deadline:
                raise UnsupportedParameterError(
                    f"the Ray cluster has room for {self._free(cpus_per_worker)} worker(s){each}, not {self.size}: "
                    "other work holds the rest; ask for fewer workers, or wait for it to end")
            time.sleep(0.1)
        self.window = window or 2 * self.size
        self.max_attempts = max_attempts
        self._options = dict(num_cpus=cpus_per_worker, num_gpus=1 if self.gpus else 0, max_restarts=0)
        if model is not None and Path(model).exists():
            model = Path(model).resolve()  # actors do not run in this directory
        self._spec = (None if model is None else str(model), dict(codec_kwargs))
        self.retried = 0  # items sent again after their actor died
        self.replaced = 0  # actors started in place of dead ones
        self.actors: list[Any] = []
        try:
            self.actors = [self._start() for _ in range(self.size)]
            headers = self._get([a.ready.remote() for a in self.actors])
        except BaseException:
            self.close()
            raise
        self.header = headers[0]  # what every actor's codec writes (as header_bytes)
        if any(h != self.header for h in headers):
            self.close()
            raise UnsupportedParameterError(
                "the Ray workers would write different headers (a float engine on different kinds of device): "
                "use the portable engine, or workers of one kind")

    def _free(self, cpus_per_worker: int) -> int:
        """Workers that fit the cluster's resources free now."""
        free = self._ray.available_resources()
        return int(free.get("GPU", 0)) if self.gpus else int(free.get("CPU", 0)) // cpus_per_worker

    def _start(self) -> Any:
        return _actor_class(self._ray).options(**self._options).remote(*self._spec)

    def _get(self, refs: list[Any]) -> list[Any]:
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayError as exc:
            raise _raised_in_actor(self._ray, exc) from None

    def _replace(self, actor: Any) -> Any:
        """Kill `actor` (if it still lives) and start another in its place."""
        self._kill(actor)
        if actor in self.actors:
            self.actors.remove(actor)
        new = self._start()
        self.actors.append(new)
        self.replaced += 1
        return new

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # already gone
            pass

    def close(self) -> None:
        """Stop the actors (their model memory is freed)."""
        for actor in self.actors:
            self._kill(actor)
        self.actors = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def map(self, fn: Callable[..., Any], items: Iterable[tuple[tuple, int]],
            progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[tuple, Any]]:
        """Run `fn(worker, report, *args)` in the actors for each `(args, weight)` of `items`
        (read lazily, at most `window` held), yielding `(args, result)` in the items' order.

        `fn` must be a module-level function (Ray sends it by name). `progress(done, tokens)`
        counts done weight, finished items' and the running ones' reported fractions included,
        never going back (a retried item's partial progress is not counted twice).
        """
        ray = self._ray
        if not self.actors:
            raise UnsupportedParameterError("this Ray pool is closed")
        retryable = _retryable(ray)
        source = iter(items)
        held: dict[int, tuple[tuple, int]] = {}  # index -> (args, weight), until yielded
        finished: dict[int, Any] = {}
        queue: list[int] = []  # indices to send, lowest first (retried items go before new ones)
        running: dict[Any, tuple[int, Any]] = {}  # task -> (index, actor)
        polls: dict[Any, Any] = {}  # progress request -> actor
        partial: dict[int, tuple[float, int]] = {}  # running index -> (fraction, tokens)
        attempts: collections.Counter[int] = collections.Counter()
        idle = collections.deque(self.actors)
        taken = written = done_weight = tokens_done = shown = 0
        exhausted = False
        last_poll = time.monotonic()
        try:
            while True:
                while idle and (queue or not exhausted):
                    if not queue:
                        if taken - written >= self.window:
                            break
                        try:
                            held[taken] = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                        heapq.heappush(queue, taken)
                        taken += 1
                    k = heapq.heappop(queue)
                    actor = idle.popleft()
                    running[actor.call.remote(fn, *held[k][0])] = (k, actor)
                if not running and exhausted and not queue:
                    break
                ready, _ = ray.wait(list(running) + list(polls), num_returns=1,
                                    timeout=POLL_SECONDS if progress is not None else None)
                for ref in ready:
                    if ref in polls:
                        actor = polls.pop(ref)
                        try:
                            value = ray.get(ref)
                        except ray.exceptions.RayError:
                            continue  # the actor died: its task reports that
                        for k, a in running.values():
                            if a is actor:
                                partial[k] = value
                        continue
                    k, actor = running.pop(ref)
                    partial.pop(k, None)
                    try:
                        result, tokens = ray.get(ref)
                    except retryable as exc:
                        attempts[k] += 1
                        if attempts[k] >= self.max_attempts:
                            raise LLMZipError(f"item {k} failed on {attempts[k]} Ray workers; the last: "
                                              f"{str(exc).splitlines()[0]}") from None
                        log.warning("a Ray worker died (%s); its work goes to a new one", type(exc).__name__)
                        idle.append(self._replace(actor))
                        heapq.heappush(queue, k)
                        self.retried += 1
                        continue
                    except ray.exceptions.RayError as exc:
                        raise _raised_in_actor(ray, exc) from None
                    finished[k] = result
                    done_weight += held[k][1]
                    tokens_done += tokens
                    idle.append(actor)
                while written in finished:
                    args, _ = held.pop(written)
                    yield args, finished.pop(written)
                    written += 1
                if progress is not None:
                    now = time.monotonic()
                    if now - last_poll >= POLL_SECONDS:
                        last_poll = now
                        asked = set(map(id, polls.values()))
                        for _, actor in running.values():
                            if id(actor) not in asked:
                                polls[actor.progress.remote()] = actor
                    partial_weight = sum(int(f * held[k][1]) for k, (f, _) in partial.items() if k in held)
                    shown = max(shown, done_weight + partial_weight)
                    progress(shown, tokens_done + sum(t for _, t in partial.values()))
        finally:
            # Left early (an error, or the caller stopped): an actor still coding an item would
            # take the next call alongside it, so it is replaced instead.
            for _, actor in running.values():
                try:
                    self._replace(actor)
                except Exception:  # Ray itself is going away
                    pass


# ---------------------------------------------------------------------------------------------
# What the actors run (module-level: Ray sends functions by name)


def _encode(worker: Worker, report: Callable[[float, int], None], data: bytes) -> tuple[Block, Stats, bytes]:
    codec = worker.codec()
    stats = Stats()
    block = codec.encode_block(data, stats, lambda p: report(p.input_bytes / max(1, len(data)), p.tokens))
    return block, stats, header_bytes(codec.file_header())


def _decode(worker: Worker, report: Callable[[float, int], None], header: Header, block: Block) -> tuple[bytes, Stats]:
    codec = worker.codec()
    codec.check_header(header)
    stats = Stats()
    data = codec.decode_block(block, header, stats, lambda p: report(p.input_bytes / max(1, block.raw_len), p.tokens))
    return data, stats


def _add(total: Stats, part: Stats) -> None:
    for name in _SUMMED:
        setattr(total, name, getattr(total, name) + getattr(part, name))


def _cut(source: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    """The blocks StreamCompressor cuts a stream into, read one block at a time."""
    pending = bytearray()
    while chunk := source.read(block_bytes):
        pending += chunk
        while len(pending) >= block_bytes:
            first = next(split_blocks(bytes(pending[:block_bytes]), block_bytes))
            del pending[: len(first)]
            yield first
    if pending:
        yield bytes(pending)


# ---------------------------------------------------------------------------------------------
# Compress and decompress


class RayCodec:
    """`Codec`'s compress and decompress calls, with the blocks coded by a `WorkerPool`.

    Takes `Codec`'s arguments (model as a name or path) plus the pool's (`workers`,
    `cpus_per_worker`, `window`, `max_attempts`). A file it writes decodes with `Codec`, and
    the reverse. `stats.extra["ray"]` says how many workers ran and how many items were retried.
    """

    def __init__(self, model: str | os.PathLike | None = None, *, workers: int | None = None,
                 cpus_per_worker: int = 1, window: int | None = None, max_attempts: int = 3, **codec_kwargs: Any):
        self.pool = WorkerPool(model, workers=workers, cpus_per_worker=cpus_per_worker, window=window,
                               max_attempts=max_attempts, **codec_kwargs)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> "RayCodec":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _extra(self, stats: Stats, retried_before: int) -> None:
        stats.extra["ray"] = {"workers": self.pool.size, "gpus": self.pool.gpus,
                              "retried": self.pool.retried - retried_before}

    def _progress(self, progress: ProgressCallback | None, offset: int = 0) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, tokens: progress(Progress(offset + done, tokens))

    def compress_stream(self, source: BinaryIO, target: BinaryIO, progress: ProgressCallback | None = None,
                        block_bytes: int = BLOCK_BYTES) -> Stats:
        """Compress a readable binary stream into a writable one, as `Codec.compress_stream` does."""
        from .container import MAX_BLOCK_RAW_BYTES

        if not 1 <= block_bytes <= MAX_BLOCK_RAW_BYTES:
            raise UnsupportedParameterError(f"block_bytes must be between 1 and {MAX_BLOCK_RAW_BYTES}, "
                                            f"not {block_bytes}")
        started, retried = time.perf_counter(), self.pool.retried
        header, _ = StreamReader(io.BytesIO(self.pool.header)).read_header()
        writer = ContainerWriter(target, header)
        stats = Stats(header_bytes=writer.bytes_written)
        if progress is not None:
            progress(Progress(0, 0))
        items = (((data,), len(data)) for data in _cut(source, block_bytes))
        for (data,), (block, part, coded_under) in self.pool.map(_encode, items, self._progress(progress)):
            if coded_under != self.pool.header:
                raise UnsupportedParameterError(
                    "a Ray worker coded a block under other settings than the file's (a float engine on another "
                    "kind of device): use the portable engine, or workers of one kind")
            framed = writer.add(block)
            side = block.side_bytes(writer.version)
            _add(stats, part)
            stats.blocks += 1
            stats.side_bytes += side
            stats.header_bytes += framed - side - sum(len(s) for s in block.streams)
        if progress is not None:
            progress(Progress(writer.raw_total, stats.tokens))
        stats.header_bytes += writer.close()
        stats.original_bytes = writer.raw_total
        stats.compressed_bytes = writer.bytes_written
        stats.seconds = time.perf_counter() - started
        self._extra(stats, retried)
        return stats

    def compress(self, data: bytes, progress: ProgressCallback | None = None, *,
                 block_bytes: int = BLOCK_BYTES) -> bytes:
        return self.compress_with_stats(data, progress, block_bytes=block_bytes)[0]

    def compress_with_stats(self, data: bytes, progress: ProgressCallback | None = None, *,
                            block_bytes: int = BLOCK_BYTES) -> tuple[bytes, Stats]:
        out = io.BytesIO()
        stats = self.compress_stream(io.BytesIO(data), out, progress, block_bytes)
        return out.getvalue(), stats

    def iter_decompress_range(self, source: BinaryIO, start: int = 0, end: int | None = None,
                              progress: ProgressCallback | None = None,
                              stats: Stats | None = None) -> Iterator[bytes]:
        """Yield bytes [start, end) of the original in order, its blocks decoded in parallel.

        A seekable file with a block index sends only the blocks that hold the range, read through
        the index; otherwise blocks are read front to back (each checked to be the next one), those
        before the range skipped without decoding. Progress counts bytes of the .llmz file.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range {start}:{'' if end is None else end}")
        stats = stats if stats is not None else Stats()
        started, retried = time.perf_counter(), self.pool.retried
        seekable = getattr(source, "seekable", None)
        index = read_index(source) if seekable is not None and seekable() else None
        reader: StreamReader | None = None
        if index is not None:
            header = index.header
            stop = index.total_len if end is None else min(end, index.total_len)
            k0 = index.locate(start) if start < stop else len(index)
            wanted = range(k0, next((k for k in range(k0, len(index)) if index.raw_starts[k] >= stop), len(index)))
            offset = index.offsets[k0] - index.start if wanted else 0

            def blocks() -> Iterator[tuple[tuple, int]]:
                for k in wanted:
                    yield (header, index.read_block(source, k)), index.sizes[k]
        else:
            reader = StreamReader(source)
            header, offset = reader.read_header()
            sizes = [offset]  # the bytes read: header, then each block's

            def blocks() -> Iterator[tuple[tuple, int]]:
                for block, size in reader.blocks(header):
                    sizes.append(size)
                    if end is not None and block.raw_start >= end:
                        return
                    if block.raw_start + block.raw_len > start:
                        yield (header, block), size
        total_crc = 0
        for (_, block), (data, part) in self.pool.map(_decode, blocks(), self._progress(progress, offset)):
            _add(stats, part)
            total_crc = crc32(data, total_crc)
            piece = data[max(0, start - block.raw_start) : None if end is None else max(0, end - block.raw_start)]
            stats.original_bytes += len(piece)
            yield piece
        if index is not None and start == 0 and end is None:  # the whole file
            stats.compressed_bytes = source.seek(0, io.SEEK_END) - index.start
        elif reader is not None and reader.total_len is not None:  # read to its end
            stats.compressed_bytes = sum(sizes) + reader.tail_size
            trailer = reader.trailer  # versions 1 and 2: the whole original's length and CRC-32
            if start == 0 and trailer is not None and (trailer.total_len, trailer.total_crc) != (
                    stats.original_bytes, total_crc):
                raise ChecksumError("corrupted file: the decoded data does not match the stored length and checksum")
        stats.header_bytes = max(0, stats.compressed_bytes - stats.side_bytes - stats.stream_bytes)
        if progress is not None and stats.compressed_bytes:
            progress(Progress(stats.compressed_bytes, stats.tokens))
        stats.seconds = time.perf_counter() - started
        self._extra(stats, retried)

    def decompress_stream(self, source: BinaryIO, target: BinaryIO, progress: ProgressCallback | None = None) -> Stats:
        """Decompress a readable binary stream into a writable one, as `Codec.decompress_stream` does."""
        stats = Stats()
        for piece in self.iter_decompress_range(source, 0, None, progress, stats):
            target.write(piece)
        return stats

    def decompress(self, blob: bytes, progress: ProgressCallback | None = None) -> bytes:
        out = io.BytesIO()
        self.decompress_stream(io.BytesIO(blob), out, progress)
        return out.getvalue()

    def decompress_range(self, source: bytes | BinaryIO, start: int, end: int | None = None,
                         progress: ProgressCallback | None = None) -> bytes:
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(source)
        return b"".join(self.iter_decompress_range(source, start, end, progress))


__all__ = ["RAY_EXTRA", "RayCodec", "Worker", "WorkerPool", "connect", "is_address", "ray_address", "require_ray"]
