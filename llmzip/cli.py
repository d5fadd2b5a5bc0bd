"""The `llmzip` command: a thin layer over the library in the conventions of gzip and xz.

Exit codes: 0 success, 1 data, model or file error, 2 usage error, 130 interrupted.
Errors are one line on stderr; set LLMZIP_DEBUG=1 to see a traceback for an unexpected one.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import logging
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from . import __version__
from .container import ADAPT_MIXER, COUNTED_MIXER, MAX_BLOCK_RAW_BYTES, MIXER_CODES, NO_MIXER, Header, StreamReader
from .errors import LLMZipError
from .info import FileInfo, decode_settings, inspect

SUFFIX = ".llmz"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger("llmzip")


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit code 2)."""


class FileError(Exception):
    """A per-file problem that is not llmzip's data or model (exit code 1)."""


# ---------------------------------------------------------------------------------------------
# Argument parsing

_SIZE = re.compile(r"([0-9]+)([KMG]?)(?:I?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str, option: str) -> int:
    """A byte count with an optional binary suffix, as xz takes them: 65536, 64K, 64KiB, 1M, 2G."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"{option}: {text!r} is not a size in bytes (e.g. 65536, 64K, 1M)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_range(text: str) -> tuple[int, int | None]:
    """START:END, bytes of the original as a Python slice takes them (either end may be left out)."""
    if text.count(":") != 1:
        raise UsageError(f"--range: {text!r} is not START:END (e.g. 0:4096, 1M:2M, 100:)")
    first, last = text.split(":")
    start = parse_size(first, "--range") if first.strip() else 0
    end = parse_size(last, "--range") if last.strip() else None
    if end is not None and end < start:
        raise UsageError(f"--range: the end {end} is before the start {start}")
    return start, end


# The libraries that decide a file's bits (torch, transformers) and its stream format (constriction).
VERSIONED_LIBRARIES = ("torch", "transformers", "constriction")


def version_text() -> str:
    """llmzip's version and its libraries', one per line, as `xz --version` names liblzma's.

    A .llmz file decodes only with the numbers it was encoded with, and those depend on these
    libraries' versions as much as on llmzip's: a bug report needs all four.
    """
    lines = [f"llmzip {__version__}"]
    for name in VERSIONED_LIBRARIES:
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """argparse's own version action rewraps its text into one paragraph; this keeps the lines."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit()


def _add_model_options(p: argparse.ArgumentParser, coding: bool) -> None:
    p.add_argument("-m", "--model", help="model folder, .gguf file or hub id (default: the embedded SmolLM2-135M)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the file's, or a GPU if present)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="model dtype (default: float32 on CPU, bfloat16 on GPU; a file's own when decompressing)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: torch's; a float engine's file records them and decodes with the same)"
                   if coding else "CPU threads for a portable file (default: torch's; a float engine's file decodes "
                                  "with the threads it records)")
    if coding:
        from .levels import BEST, DEFAULT_LEVEL, FASTEST, LEVELS

        levels = p.add_mutually_exclusive_group()
        for level, layout in LEVELS.items():
            levels.add_argument(f"-{level}", dest="level", action="store_const", const=level,
                                help=argparse.SUPPRESS if FASTEST < level < BEST else None)
        levels.add_argument("--fast", dest="level", action="store_const", const=FASTEST,
                            help=f"fastest compression and decompression (-{FASTEST}); -{FASTEST} ... -{BEST} choose "
                                 f"a level, default -{DEFAULT_LEVEL}; decompression reads it from the file")
        levels.add_argument("--best", dest="level", action="store_const", const=BEST,
                            help=f"best compression (-{BEST}), slowest to decompress")
        p.add_argument("--context", type=int, default=None,
                       help="tokens each model call sees per window, carried context included (default: the level's)")
        p.add_argument("--carry", type=int, default=None,
                       help="tokens of context carried into each window after a lane's first (default: the level's)")
        p.add_argument("--lane-tokens", type=int, default=None,
                       help="tokens per lane, the unit a decoder goes through window after window (default: the level's)")
        p.add_argument("--keep-line-ends", action="store_true",
                       help="code line ends as they are (default: a block whose line ends are all CRLF is coded "
                            "as LF text, and a hard-wrapped block's line breaks inside paragraphs as spaces, which "
                            "the model predicts better; both are restored exactly when decompressing)")
        p.add_argument("--mixer", choices=MIXER_CODES, default=None,
                       help=f"what adapts the LLM's frequencies to the text: {ADAPT_MIXER} (a logit bias learned "
                            f"while coding at a rate per token, plus the match model; the portable engine's default "
                            f"from level 2), adapt-v1 (the bias at one rate), {MIXER_CODES[0]} (a match model that "
                            "predicts repeats of earlier text; level 1's default) or none")
        p.add_argument("--batch", type=int, default=None,
                       help="windows per model call (portable engine: 1 on CPU, on GPU from free memory, not "
                            "recorded; float engines: 16 on CPU, on GPU from free memory up to 512, recorded)")
        p.add_argument("--quantizer", default="auto", choices=["auto", "int-v1", "torch-v1", "triton-v1"],
                       help="logits-to-frequencies implementation (default: int-v1 with the portable engine; "
                            "else triton-v1 on GPU, torch-v1 on CPU)")
        p.add_argument("--engine", default="auto", choices=["auto", "portable", "transformers", "static"],
                       help="model engine (default: portable, exact integers that decode on any CPU or GPU, for "
                            "Llama, Qwen2 and Mistral models; else static with CUDA graphs on GPU for Llama-type "
                            "models, else transformers)")


def _add_block_options(p: argparse.ArgumentParser, compressing: bool) -> None:
    if compressing:
        p.add_argument("--block-size", metavar="SIZE", default=None,
                       help="input bytes per block, e.g. 256K or 4M (default 1M): smaller blocks make "
                            "--range decode less, at a small cost in size")
    else:
        p.add_argument("--range", metavar="START:END", default=None,
                       help="decode only bytes START to END of the original (e.g. 1M:2M, 100:); only the blocks "
                            "holding them are decoded. Writes to standard output unless -o is given; keeps the input")


def _add_io_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE", help="input files; none or '-' reads standard input")
    p.add_argument("-o", "--output", help="output file (one input only); '-' for standard output")
    p.add_argument("-c", "--stdout", action="store_true", help="write to standard output, keep input files")
    p.add_argument("-k", "--keep", action="store_true", help="keep (don't delete) input files")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no report")
    p.add_argument("-v", "--verbose", action="store_true", help="also report the cross-entropy estimate and overhead")


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="code the blocks in parallel on a Ray cluster: started here when no ADDRESS is given, "
                        "'auto' to join the cluster of this machine, or host:port; needs pip install 'llmzip[ray]'")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --ray: workers, each with the model loaded once (default: one per GPU of the cluster, "
                        "else one per CPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmzip", description="Lossless compression with a language model.")
    parser.add_argument("-V", "--version", action=_VersionAction,
                        help="show the versions of llmzip, torch, transformers and constriction, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    comp = sub.add_parser("compress", aliases=["c"], help="compress files (FILE -> FILE.llmz)")
    _add_io_options(comp)
    _add_block_options(comp, compressing=True)
    _add_model_options(comp, coding=True)
    _add_ray_options(comp)
    dec = sub.add_parser("decompress", aliases=["d"], help="decompress files (FILE.llmz -> FILE)")
    _add_io_options(dec)
    _add_block_options(dec, compressing=False)
    _add_model_options(dec, coding=False)
    _add_ray_options(dec)
    test = sub.add_parser("test", aliases=["t"], help="decompress files and check them, writing nothing (gzip -t)")
    test.add_argument("files", nargs="*", metavar="FILE", help="input files; none or '-' reads standard input")
    test.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    test.add_argument("-v", "--verbose", action="store_true", help="name each file that passes, with its sizes")
    _add_model_options(test, coding=False)
    _add_ray_options(test)
    test.set_defaults(output=None, stdout=False, keep=True, force=False)
    info = sub.add_parser("info", help="show what a .llmz file says about itself")
    info.add_argument("files", nargs="+", metavar="FILE")
    from .measure.cli import add_bench_parser

    add_bench_parser(sub)
    return parser


# ---------------------------------------------------------------------------------------------
# Output handling: temporary file, renamed only on success


@contextlib.contextmanager
def _atomic_output(path: Path, force: bool, like: Path | None) -> Iterator[BinaryIO]:
    if path.exists() and not force:
        raise FileError(f"{path}: already exists; use -f to overwrite")
    if path.exists() and path.is_dir():
        raise FileError(f"{path}: is a directory")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if like is not None:  # as xz and zstd do: the input's permissions and times go to the output
            with contextlib.suppress(OSError):
                source = like.stat()
                os.chmod(tmp, source.st_mode & 0o7777)
                os.utime(tmp, ns=(source.st_atime_ns, source.st_mtime_ns))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Progress and reports


class _ProgressBar:
    """A tqdm bar on stderr, only when stderr is a terminal and -q is not given."""

    def __init__(self, enabled: bool, total: int | None, label: str):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr,
                            leave=False, dynamic_ncols=True)
        self.started = time.perf_counter()

    def __call__(self, progress) -> None:
        if self.bar is not None:
            self.bar.n = progress.input_bytes
            rate = progress.tokens / max(1e-9, time.perf_counter() - self.started)
            self.bar.set_postfix_str(f"{progress.tokens} tokens, {rate:.0f} tok/s", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _report(name: str, stats, verbose: bool) -> None:
    line = (f"{name}: {stats.original_bytes} -> {stats.compressed_bytes} bytes, "
            f"{stats.bits_per_byte:.3f} bits/byte, {stats.seconds:.1f} s")
    if verbose and stats.original_bytes:
        ce_bpb = stats.cross_entropy_bits / stats.original_bytes
        line += (f"\n  tokens {stats.tokens} ({stats.text_bytes} bytes as text, {stats.side_bytes} side bytes), "
                 f"header and framing {stats.header_bytes} bytes"
                 f"\n  cross-entropy estimate {ce_bpb:.3f} bits/byte; coded stream {8 * stats.stream_bytes} bits, "
                 f"overhead {100 * stats.overhead:+.3f}% over the estimate")
        ray = stats.extra.get("ray")
        if ray:
            kind = "GPU" if ray["gpus"] else "CPU"
            line += (f"\n  {stats.blocks} block(s) on {ray['workers']} Ray worker(s) ({kind}), "
                     f"{ray['retried']} resent after a worker died")
    print(line, file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Commands


def _open_input(name: str) -> tuple[BinaryIO, Path | None]:
    if name == "-":
        return sys.stdin.buffer, None
    path = Path(name)
    if path.is_dir():
        raise FileError(f"{name}: is a directory -- ignored")
    try:
        return open(path, "rb"), path
    except OSError as exc:
        raise FileError(f"{name}: {exc.strerror or exc}") from None


def _output_path(args, in_path: Path | None, compressing: bool) -> Path | None:
    """None means standard output."""
    if args.stdout or (args.output == "-") or (in_path is None and not args.output):
        return None
    if args.range is not None and not args.output:
        return None  # a piece of the original never takes the original's name
    if args.output:
        return Path(args.output)
    assert in_path is not None
    if compressing:
        if in_path.name.endswith(SUFFIX) and not args.force:
            raise FileError(f"{in_path}: already has {SUFFIX} suffix -- unchanged (use -f to compress anyway)")
        return in_path.with_name(in_path.name + SUFFIX)
    if not in_path.name.endswith(SUFFIX) or in_path.name == SUFFIX:
        raise FileError(f"{in_path}: unknown suffix -- ignored (use -o to name the output)")
    return in_path.with_name(in_path.name[: -len(SUFFIX)])


class _Codecs:
    """Load each model configuration once per command, however many files it serves (with --ray:
    a pool of Ray workers in place of each Codec, one pool at a time)."""

    def __init__(self, args):
        self.args = args
        self._cache: dict = {}
        self._ray_started = False
        if args.ray is not None:
            from .distributed import connect

            self._ray_started = connect(None if args.ray == "local" else args.ray)

    def get(self, device: str | None, dtype: str | None):
        from .codec import Codec

        key = (device, dtype)
        if key not in self._cache:
            a = self.args
            kwargs = dict(device=device, dtype=dtype, threads=a.threads)
            if a.command in ("compress", "c"):
                kwargs.update(preset=a.level, context=a.context, carry=a.carry, lane_tokens=a.lane_tokens,
                              mixer=a.mixer, batch=a.batch, quantizer=a.quantizer, engine=a.engine,
                              keep_line_ends=a.keep_line_ends)
            self._cache[key] = (Codec if a.ray is None else self._ray_codec)(a.model, **kwargs)
        return self._cache[key]

    def _ray_codec(self, model, **kwargs):
        from .distributed import RayCodec

        self.close_pools()  # each pool takes the whole cluster
        return RayCodec(model, workers=self.args.workers, **kwargs)

    def close_pools(self) -> None:
        for codec in self._cache.values():
            if hasattr(codec, "close"):
                codec.close()
        self._cache.clear()

    def close(self) -> None:
        self.close_pools()
        if self._ray_started:
            import ray

            ray.shutdown()


class _Discard(io.RawIOBase):
    """Where `llmzip test` writes: every block is decoded and checked, and nothing is kept."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def _process_one(args, name: str, codecs: _Codecs) -> None:
    compressing = args.command in ("compress", "c")
    testing = args.command in ("test", "t")
    opened, in_path = _open_input(name)
    source = opened
    try:
        out_path = None if testing else _output_path(args, in_path, compressing)
        if out_path is None and compressing and sys.stdout.isatty() and not args.force:
            raise FileError("compressed data not written to a terminal; use -f to force, or -o FILE")
        if out_path is not None and in_path is not None and (_same_file(in_path, out_path) or
                                                             in_path.resolve() == out_path.resolve()):
            raise FileError(f"{name}: input and output are the same file")
        label = in_path.name if in_path else "stdin"
        total = in_path.stat().st_size if in_path else None
        if compressing:
            codec = codecs.get(args.device, args.dtype)
        else:
            header, source = _peek_header(source)
            file_device, file_dtype = decode_settings(header)
            codec = codecs.get(args.device or file_device, args.dtype or file_dtype)
        bar = _ProgressBar(not args.quiet, total, label)

        def run(target: BinaryIO):
            if compressing:
                return codec.compress_stream(source, target, bar, args.block_size)
            if args.range is not None:
                return _decompress_range(codec, source, target, bar, args.range)
            return codec.decompress_stream(source, target, bar)

        try:
            if testing:
                stats = run(_Discard())
            elif out_path is None:
                stats = run(sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                with _atomic_output(out_path, args.force, None if args.range else in_path) as target:  # a piece is new
                    stats = run(target)
        finally:
            bar.close()
    finally:
        if opened is not sys.stdin.buffer:
            opened.close()
    if compressing and not args.quiet:
        _report(label, stats, args.verbose)
    elif testing and args.verbose:  # gzip -tv: a line for each file that passes
        print(f"{label}: OK ({stats.compressed_bytes} -> {stats.original_bytes} bytes, {stats.seconds:.1f} s)",
              file=sys.stderr)
    elif args.verbose and not args.quiet and args.range is not None:
        print(f"{label}: {stats.original_bytes} bytes from {stats.blocks} block(s), {stats.seconds:.1f} s",
              file=sys.stderr)
    elif args.verbose and not args.quiet:
        print(f"{label}: {stats.compressed_bytes} -> {stats.original_bytes} bytes, {stats.seconds:.1f} s",
              file=sys.stderr)
    if in_path is not None and out_path is not None and not args.keep and args.range is None:
        in_path.unlink()


def _decompress_range(codec, source: BinaryIO, target: BinaryIO, progress, byte_range: tuple[int, int | None]):
    from .codec import Stats

    stats = Stats()
    for piece in codec.iter_decompress_range(source, *byte_range, progress=progress, stats=stats):
        target.write(piece)
    return stats


class _Replayed(io.RawIOBase):
    """A stream that serves bytes already read ahead, then the rest of the original stream."""

    def __init__(self, prefix: bytes, rest: BinaryIO):
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data, self._prefix = self._prefix + self._rest.read(), b""
            return data
        head, self._prefix = self._prefix[:n], self._prefix[n:]
        return head + (self._rest.read(n - len(head)) if len(head) < n else b"")


class _Recorder:
    def __init__(self, source: BinaryIO):
        self.source = source
        self.seen = bytearray()

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.seen += data
        return data


def _peek_header(source: BinaryIO) -> tuple[Header, BinaryIO]:
    """Read the header (to choose device and dtype) and return a stream that starts over: the
    same file, rewound, when it can seek (so that --range can use the block index), else a replay."""
    if source.seekable():
        start = source.tell()
        header, _ = StreamReader(source).read_header()
        source.seek(start)
        return header, source
    recorder = _Recorder(source)
    header, _ = StreamReader(recorder).read_header()  # type: ignore[arg-type]
    return header, _Replayed(bytes(recorder.seen), source)  # type: ignore[return-value]


def _cmd_info(args) -> int:
    status = EXIT_OK
    for name in args.files:
        try:
            with open(name, "rb") as f:
                info = inspect(f)
        except OSError as exc:
            print(f"llmzip: {name}: {exc.strerror or exc}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        except LLMZipError as exc:
            print(f"llmzip: {name}: {exc}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        print(_describe(name, info))
    return status


_MIXER_DESCRIPTIONS = {
    MIXER_CODES[0]: "a match model mixed into the model's frequencies",
    "adapt-v1": "a logit bias learned while coding, and a match model mixed into the frequencies",
    COUNTED_MIXER: "a logit bias learned while coding at a rate per token, and a match model mixed into the "
                   "frequencies",
}


def _describe(name: str, info: FileInfo) -> str:
    """Everything the file records (fields left at their defaults included), then its blocks."""
    h = info.header
    fingerprint = h.model_fingerprint.hex()
    rows = [
        ("file", name),
        ("format", f"version {h.version}"),
        ("model", f"{h.model_name} (fingerprint {fingerprint})" if h.model_name
         else f"fingerprint {fingerprint} (name not recorded)"),
        ("tokenizer", h.tokenizer_fingerprint.hex() if h.tokenizer_fingerprint
         else "covered by the model fingerprint"),
        ("original", f"{info.original_bytes} bytes"),
        ("compressed", f"{info.compressed_bytes} bytes ({info.bits_per_byte:.3f} bits/byte)"),
        ("parts", f"{info.stream_bytes} coded, {info.side_bytes} side, {info.overhead_bytes} header and framing "
                  f"(header {info.header_size}, end {info.tail_size})"),
        ("tokens", f"{info.tokens} in {info.blocks} block(s)"),
        ("layout", f"windows of {h.context} tokens, {h.carry} of them carried context, lanes of {h.lane_size} "
                   f"tokens, {h.windows_per_stream()} lanes per stream" if h.carry or h.lane_size != h.context
         else f"windows of {h.context} tokens, each from BOS, {h.windows_per_stream()} per stream"),
        ("mixer", h.mixer if h.mixer == NO_MIXER else f"{h.mixer} ({_MIXER_DESCRIPTIONS.get(h.mixer, 'unknown to this llmzip')})"),
        ("parameters", f"batch {h.batch}, "
                       f"dtype {h.dtype}, device {h.device_class}, threads {h.threads}, engine {h.engine}, "
                       f"attention {h.attention}, quantizer {h.quantizer}, precision {h.precision} bits, "
                       f"BOS id {h.bos_id}"),
        ("coder", h.coder),
        ("software", h.software or "not recorded (the portable engine's numbers do not depend on it)"),
    ]
    if h.extra:
        rows.append(("extra", ", ".join(f"{k}={v}" for k, v in sorted(h.extra.items()))))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if info.block_list:
        table = [("block", "offset", "size", "start", "length", "CRLF", "wrap", "tokens", "streams", "side", "crc32")]
        for k, b in enumerate(info.block_list):
            wrap = f"{b.wrap_width}/{b.wrap_exceptions}" if b.wrap_width else "-"
            table.append((str(k), str(b.offset), str(b.size), str(b.raw_start), str(b.raw_len), str(b.line_ends),
                          wrap, str(b.tokens), str(b.streams), str(b.side_bytes), f"{b.raw_crc:08x}"))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines += ["  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table]
    return "\n".join(lines)


def _check_usage(args) -> None:
    if args.ray is not None:
        from .distributed import ray_address

        args.ray = ray_address(args.ray, args.files)
    if not args.files:
        args.files = ["-"]
    if args.output and len(args.files) > 1:
        raise UsageError("-o names one output; give one input file")
    if args.files.count("-") > 1:
        raise UsageError("standard input can be read only once")
    for name in ("context", "batch", "threads"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be a positive number")
    args.range = getattr(args, "range", None)  # decompress only
    args.block_size = getattr(args, "block_size", None)  # compress only
    if args.block_size is None:
        if args.command in ("compress", "c"):
            from .codec import BLOCK_BYTES

            args.block_size = BLOCK_BYTES
    else:
        args.block_size = parse_size(args.block_size, "--block-size")
        if not 1 <= args.block_size <= MAX_BLOCK_RAW_BYTES:
            raise UsageError(f"--block-size must be between 1 byte and {MAX_BLOCK_RAW_BYTES >> 20}M, "
                             f"not {args.block_size}")
    if args.range is not None:
        args.range = parse_range(args.range)
    if args.ray is not None:
        from .distributed import require_ray

        if args.workers is not None and args.workers < 1:
            raise UsageError("--workers must be a positive number")
        try:
            require_ray()
        except ImportError as exc:  # MissingExtraError: a usage error, like an option this install lacks
            raise UsageError(str(exc)) from None
    elif args.workers is not None:
        raise UsageError("--workers goes with --ray")


def _configure_logging(verbose: bool) -> None:
    """llmzip's own messages as 'llmzip: ...' lines; other libraries' chatter only when it matters."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("llmzip: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False
    for noisy in ("transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def _on_terminate(signum, frame):  # pragma: no cover - exercised through a subprocess test
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(getattr(args, "verbose", False))
    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, _on_terminate)
    try:
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "bench":
            from .measure.cli import run_bench

            return run_bench(args)
        _check_usage(args)
        status = EXIT_OK
        codecs = _Codecs(args)
        try:
            for name in args.files:
                try:
                    _process_one(args, name, codecs)
                except (FileError, LLMZipError) as exc:
                    msg = str(exc)
                    print(f"llmzip: {msg if msg.startswith(name) else f'{name}: {msg}'}", file=sys.stderr)
                    status = EXIT_ERROR
                except OSError as exc:
                    print(f"llmzip: {name}: {exc.strerror or exc}", file=sys.stderr)
                    status = EXIT_ERROR
        finally:
            codecs.close()
        return status
    except UsageError as exc:
        print(f"llmzip: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LLMZipError as exc:
        print(f"llmzip: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("llmzip: interrupted; no partial output was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # an llmzip bug: still one line, unless debugging
        if os.environ.get("LLMZIP_DEBUG"):
            raise
        print(f"llmzip: internal error: {type(exc).__name__}: {exc} (set LLMZIP_DEBUG=1 for details)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
