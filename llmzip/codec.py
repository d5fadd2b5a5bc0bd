"""The codec: blocks of input, their headers and framing, and the public API around them.

A block's windows are coded by one of two loops, and the file header says which:
- the portable engine's (`llmzip.portable.coding`, the default for Llama-type models): exact
  integers, so compression evaluates each window in one full-sequence forward and decompression
  steps the windows of whole streams at a batch of its own choosing;
- the float engines' (`llmzip.lockstep`): both directions step the same windows with the same
  batch shapes, so that the decoder's float logits equal the encoder's bit for bit.
The layout both share (lanes, their windows and carried context, streams) is `llmzip.schedule`;
the compression level (`llmzip.levels`) chooses it, and the header records it. This module turns
bytes into blocks (tokenized, with their side channel), blocks into a container, and checks what
it reads back (the header against the model through `llmzip.compat`, then the sequence of blocks
and their checksums) before any byte comes out; it also gives the push-based objects of
`lzma`'s API (StreamCompressor, StreamDecompressor).
"""
from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

import numpy as np
import torch

from . import compat, container, filters, levels, schedule
from .coder import CODER_ID
from .compat import MAX_BATCH, PORTABLE_ATTENTION, PORTABLE_DEVICE_CLASS
from .container import Block, BlockIndex, ContainerWriter, Header, StreamReader, crc32
from .errors import ChecksumError, FormatError, UnsupportedParameterError
from .inference import TRANSFORMERS_ENGINE, fixed_numerics, pick_engine
from .lockstep import Lockstep
from .models import LoadedModel, load_model, software_versions
from .portable import PORTABLE_ENGINE, PortableLlama, coding as portable_coding, portable_problem
from .portable.llama import QUERY_BLOCK, head_rows
from .quantize import INTEGER_QUANTIZER, PRECISION, QUANTIZERS, TORCH_QUANTIZER, TRITON_QUANTIZER, quantizer_id

BLOCK_BYTES = 1 << 20  # input bytes per block: bounds memory, costs one partial window per block
# Windows per coded stream. Streams are independent, so the device decoder runs one per program;
# each costs a few bytes of termination, about 0.1% of 16 windows of 512 tokens.
STREAM_WINDOWS = 16
# Memory the portable decoder's KV caches may take on the CPU: it picks fewer streams per call
# beyond it (the file does not depend on it).
CPU_DECODE_MEMORY = 4 << 30


@dataclass
class Progress:
    """Sent to a progress callback after each model step."""

    input_bytes: int  # bytes of the input consumed: original data (compress) or .llmz (decompress)
    tokens: int  # tokens coded so far


ProgressCallback = Callable[[Progress], None]


@dataclass
class Stats:
    """What one compress or decompress call did, for reports and measurement."""

    original_bytes: int = 0
    compressed_bytes: int = 0
    header_bytes: int = 0  # fixed header, block framing and trailer
    side_bytes: int = 0  # raw bytes and layout the model did not code
    stream_bytes: int = 0  # range-coder output
    tokens: int = 0
    text_bytes: int = 0  # bytes carried by tokens
    blocks: int = 0
    cross_entropy_bits: float = 0.0  # -log2 p(token) under the model's float probabilities
    quantized_bits: float = 0.0  # -log2 of the quantized probabilities actually coded
    seconds: float = 0.0
    model_seconds: float = 0.0  # forward passes
    quantize_seconds: float = 0.0
    coder_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def bits_per_byte(self) -> float:
        return 8.0 * self.compressed_bytes / self.original_bytes if self.original_bytes else 0.0

    @property
    def overhead(self) -> float:
        """Real stream bits over the model's cross-entropy, minus one (header and side excluded)."""
        if not self.cross_entropy_bits:
            return 0.0
        return 8.0 * self.stream_bytes / self.cross_entropy_bits - 1.0


def _auto_batch(model: LoadedModel, context: int) -> int:
    """Windows per step: on the CPU 16; on a GPU as many as a third of its free memory holds.

    On the CPU a step reads every weight whatever the batch (memory-bound at small batches): 16
    windows per step measured 7x the tokens/s of one with SmolLM2-135M on two cores. On a GPU a
    step's time is mostly reading the KV cache of every window, so more windows per step keep it
    busy until memory runs out; a 1 MiB block has only about 550 windows of 512 tokens, hence the cap.
    """
    if model.device.type != "cuda":
        return 16
    free, _ = torch.cuda.mem_get_info(model.device)
    itemsize = torch.finfo(model.dtype).bits // 8
    kv = model.kv_bytes_per_token * context
    # Per row of logits: the model's output, a float32 copy and its exponentials (the statistics),
    # and the quantizer's int32 table.
    per_window = kv + model.vocab_size * (itemsize + 4 + 4 + 4)
    fits = max(1, free // 3 // per_window)
    return int(min(512, 1 << (int(fits).bit_length() - 1)))


def _choose_engine(name: str, quantizer: str, model: LoadedModel) -> str:
    """"auto" is the portable engine wherever the model's architecture allows it (float32 weights
    are its source) and no float quantizer was asked for, else the float engines' choice (see
    `inference.pick_engine`)."""
    float_quantizer = quantizer.split(":", 1)[0] in (TORCH_QUANTIZER, TRITON_QUANTIZER)
    if name in ("portable", PORTABLE_ENGINE) or (name == "auto" and not float_quantizer):
        problem = portable_problem(model.config)
        if problem is None and model.dtype != torch.float32:
            problem = f"the portable engine is built from float32 weights, not {model.dtype_name}"
        if problem is None:
            return PORTABLE_ENGINE
        if name != "auto":
            raise UnsupportedParameterError(problem)
    return pick_engine(name, model.model, model.device)


def _portable_windows_per_call(model: LoadedModel, context: int) -> int:
    """Windows per full-sequence forward: one on the CPU (512 rows already fill its matrix units);
    on a GPU as many as a third of free memory holds. The output layer and the quantizer go in
    blocks of rows (`head_rows`), about five int64 copies of a block's logits whatever the batch;
    per window, about eight int64 copies of context x the widest layer output (gate and up) and
    six float64 copies of a query block's attention scores over the context."""
    if model.device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(model.device)
    config = model.model.config
    widest = max(2 * getattr(config, "intermediate_size", 0) or 0, 3 * config.hidden_size)
    head = 5 * 8 * head_rows(model.device) * model.vocab_size
    per_window = 8 * 8 * context * widest + 6 * 8 * config.num_attention_heads * QUERY_BLOCK * context
    return int(max(1, min(64, (free // 3 - head) // per_window)))


def _pick_quantizer(name: str, device: torch.device) -> str:
    name = name.split(":", 1)[0]  # an id with its launch configuration names the same quantizer
    if name == "auto":
        return TRITON_QUANTIZER if device.type == "cuda" else TORCH_QUANTIZER
    if name not in QUANTIZERS:
        raise UnsupportedParameterError(f"unknown quantizer {name!r}; choose auto or one of {', '.join(QUANTIZERS)}")
    return name


def _mixer_switches(mixer: str) -> dict[str, bool]:
    """What a mixer switches on in the portable engine's codec loop, both directions: the match
    model (and each stream's flag), the logit bias, and the bias's rates per token."""
    return {"mixing": mixer != container.NO_MIXER, "adapt": mixer in container.ADAPT_MIXERS,
            "counted": mixer == container.COUNTED_MIXER}


class Codec:
    """A loaded model plus coding parameters, reusable for many compress and decompress calls.

    `model` is a LoadedModel, or a spec for `load_model`: None for the embedded default, a model
    folder, a .gguf file or a hub id. `preset` is the compression level (`llmzip.levels`, 1 to 9);
    `context`, `carry` and `lane_tokens` override its window layout (see `llmzip.schedule`).
    `mixer` is what is mixed into the model's frequencies: "adapt-v2" (a logit bias learned while
    coding at a rate per token, `llmzip.adapt`, plus the match model: the portable engine's default
    from level 2 on), "adapt-v1" (the same bias at one rate), "match-v1" (the match model alone,
    `llmzip.match`: level 1's default) or "none". A block whose line ends are all CRLF is coded as
    LF text and restored, and a hard-wrapped block's soft line breaks as spaces, with a record that
    puts them back (`llmzip.filters`), unless `keep_line_ends`, which codes every byte as it is (to
    measure a model on the text exactly as given). Decompression takes all of these from the
    file.
    """

    def __init__(self, model: LoadedModel | str | None = None, *, preset: int | None = None,
                 context: int | None = None, carry: int | None = None, lane_tokens: int | None = None,
                 batch: int | None = None, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, quantizer: str = "auto", threads: int | None = None,
                 engine: str = "auto", stream_windows: int = STREAM_WINDOWS, mixer: str | None = None,
                 keep_line_ends: bool = False):
        self.model = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
        self.engine = _choose_engine(engine, quantizer, self.model)
        self.layout = self._layout(preset, context, carry, lane_tokens)
        self.context = self.layout.context
        self.mixer = self._mixer(mixer, preset)
        self.keep_line_ends = keep_line_ends
        if stream_windows < 1:
            raise UnsupportedParameterError(f"stream_windows must be positive, not {stream_windows}")
        self._portable: PortableLlama | None = None
        if self.engine == PORTABLE_ENGINE:
            # Windows per forward when compressing. The file does not depend on it (the decoder
            # steps whole streams at a batch of its own choosing): its header records the windows
            # per stream as its batch.
            self.batch = batch or _portable_windows_per_call(self.model, context)
            self.stream_windows = stream_windows
        else:
            self.batch = batch or _auto_batch(self.model, context)
            self.stream_windows = min(stream_windows, self.batch)
        if not 1 <= self.batch <= MAX_BATCH:
            raise UnsupportedParameterError(f"batch must be between 1 and {MAX_BATCH}, not {self.batch}")
        self._lockstep = Lockstep(self.model)  # the float engines' loop
        if self.engine == PORTABLE_ENGINE:
            if quantizer not in ("auto", INTEGER_QUANTIZER):
                raise UnsupportedParameterError(f"the portable engine codes with the {INTEGER_QUANTIZER} quantizer, "
                                                f"not {quantizer!r}")
            self.quantizer = INTEGER_QUANTIZER
        else:
            self.quantizer = quantizer_id(_pick_quantizer(quantizer, self.model.device), self.model.vocab_size)
        # On the CPU the thread count splits the matrix work differently and changes the last bits
        # of the float engines' logits, so it is fixed per file; on a GPU it does not enter the
        # numbers (0). The portable engine runs with the threads asked for (0: torch's) and its
        # files record none.
        if self.model.device.type == "cpu" and self.engine != PORTABLE_ENGINE:
            self.threads = threads or torch.get_num_threads()
        else:
            self.threads = threads or 0
        if not 0 <= self.threads <= 4096:
            raise UnsupportedParameterError(f"threads must be between 1 and 4096, not {threads}")

    def _mixer(self, mixer: str | None, preset: int | None) -> str:
        if mixer is None:
            return levels.mixer_for(preset) if self.engine == PORTABLE_ENGINE else container.NO_MIXER
        if mixer not in container.MIXER_CODES:
            raise UnsupportedParameterError(f"unknown mixer {mixer!r}; choose one of {', '.join(container.MIXER_CODES)}")
        if mixer != container.NO_MIXER and self.engine != PORTABLE_ENGINE:
            raise UnsupportedParameterError(f"the {mixer} mixer needs the portable engine, not {self.engine!r}")
        return mixer

    def _layout(self, preset: int | None, context: int | None, carry: int | None,
                lane_tokens: int | None) -> schedule.Layout:
        """The level's layout with the overrides given. A context given alone, or cut to the model's
        positions, keeps the level's proportions (carried context and lane length scale with it);
        the float engines carry none."""
        level = levels.layout_for(preset)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if context is None:  # a level asks for no more context than the model has positions
            context = min(level.context, int(limit)) if limit else level.context
        if not 1 <= context <= (1 << 20):
            raise UnsupportedParameterError(f"context must be between 1 and {1 << 20} tokens, not {context}")
        if limit and context > int(limit):
            raise UnsupportedParameterError(f"context {context} exceeds this model's {limit} positions")
        if self.engine != PORTABLE_ENGINE:
            if carry:
                raise UnsupportedParameterError(f"carried context needs the portable engine, not {self.engine}")
            return schedule.Layout(context)
        if carry is None:
            carry = level.carry * context // level.context
        if lane_tokens is None:
            lane_tokens = max(context, level.lane_size * context // level.context)
        if not 0 <= carry < context:
            raise UnsupportedParameterError(f"carried context must be at least 0 and below the context {context}, "
                                            f"not {carry}")
        if lane_tokens < context:
            raise UnsupportedParameterError(f"lanes must be at least the context ({context} tokens), not {lane_tokens}")
        return schedule.Layout(context, carry, lane_tokens)

    # ------------------------------------------------------------------------------------------
    # Header

    @property
    def portable(self) -> PortableLlama:
        """The integer model, built from the float weights on first use."""
        if self._portable is None:
            self._portable = PortableLlama(self.model.model, self.model.device)
        return self._portable

    @property
    def timing_sync(self) -> bool:
        """Whether the float engines synchronize the GPU around each timed phase, so that Stats
        splits time between model, quantizer and coder truthfully (benchmarks turn it on; it
        costs speed)."""
        return self._lockstep.timing_sync

    @timing_sync.setter
    def timing_sync(self, value: bool) -> None:
        self._lockstep.timing_sync = value

    def _header(self, version: int = container.FORMAT_VERSION) -> Header:
        """The header this codec writes, in format `version` (older ones for compatibility tests).

        Version 3 records the model's name only for the embedded default model (a one-byte code; the
        fingerprint identifies any model), and the software versions only for the float engines,
        whose last bits depend on them.
        """
        m = self.model
        portable = self.engine == PORTABLE_ENGINE
        name, software = m.name, software_versions()
        if version >= 3:
            name = name if name in container.MODEL_NAME_CODES else ""
            software = "" if portable else software
        elif version == 1 and (self.engine != TRANSFORMERS_ENGINE or self.stream_windows != self.batch):
            raise UnsupportedParameterError("format version 1 knows only the transformers engine, one stream per batch")
        if version < 4 and self.layout != schedule.Layout(self.context):
            raise UnsupportedParameterError(f"format version {version} has no carried context: use level 1 or carry=0 "
                                            "with lanes of one window")
        if version < 5 and self.mixer != container.NO_MIXER:
            raise UnsupportedParameterError(f"format version {version} has no mixer: use mixer='none'")
        return Header(model_name=name, model_fingerprint=m.fingerprint[:container.FINGERPRINT_BYTES[version]],
                      tokenizer_fingerprint=m.table.fingerprint[:container.TOKENIZER_FINGERPRINT_BYTES[version]],
                      bos_id=m.bos_id, context=self.context, batch=self.stream_windows if portable else self.batch,
                      dtype=m.dtype_name,
                      device_class=PORTABLE_DEVICE_CLASS if portable else m.device_class, threads=0 if portable else self.threads,
                      attention=PORTABLE_ATTENTION if portable else m.attention, quantizer=self.quantizer,
                      precision=PRECISION, coder=CODER_ID, software=software, engine=self.engine,
                      stream_windows=0 if version == 1 else self.stream_windows, version=version,
                      carry=self.layout.carry, lane_tokens=self.layout.lane_size, mixer=self.mixer)

    def check_header(self, header: Header) -> None:
        """Refuse, with what to do, anything in the file this codec's model cannot reproduce."""
        compat.check_header(header, self.model)

    # ------------------------------------------------------------------------------------------
    # Compression

    def _encode_block(self, data: bytes, stats: Stats, on_step: Callable[[int, int], None],
                      version: int = container.FORMAT_VERSION) -> Block:
        """Code one block; `on_step(tokens done in block, tokens in block)` reports progress."""
        filtered = filters.filter_block(data, line_ends=not self.keep_line_ends and version >= 6,
                                        reflow=not self.keep_line_ends and version >= 7)
        ids, side = self.model.tokenizer.encode(filtered.text)
        if self.engine == PORTABLE_ENGINE:
            streams = self._encode_portable(ids, stats, on_step)
        else:
            streams = self._lockstep.encode(ids, stats, on_step, engine=self.engine, quantizer=self.quantizer,
                                            context=self.context, batch=self.batch,
                                            stream_windows=self.stream_windows)
        text = self.model.table.join(ids)
        stats.tokens += len(ids)
        # The original's bytes the tokens carry: all but those the side channel holds as they are
        # (the CRs the line-end filter took out count with the tokens).
        stats.text_bytes += len(data) - (len(filtered.text) - len(text))
        stats.stream_bytes += sum(len(s) for s in streams)
        return Block(raw_len=len(data), raw_crc=crc32(data), n_tokens=len(ids), side=side, streams=streams,
                     line_ends=filtered.line_ends, wrap=filtered.wrap)

    def _encode_portable(self, ids: list[int], stats: Stats, on_step: Callable[[int, int], None]) -> list[bytes]:
        done = [0]

        def on_tokens(count: int) -> None:
            done[0] += count
            on_step(done[0], len(ids))

        started = time.perf_counter()
        coded = portable_coding.encode(self.portable, ids, self.model.bos_id, self.layout, self.stream_windows,
                                       self.batch, on_tokens, **_mixer_switches(self.mixer))
        stats.model_seconds += time.perf_counter() - started
        stats.quantized_bits += coded.quantized_bits
        stats.cross_entropy_bits += coded.cross_entropy_bits
        return coded.streams

    def compressor(self, target: BinaryIO, progress: ProgressCallback | None = None,
                   block_bytes: int = BLOCK_BYTES, *, version: int = container.FORMAT_VERSION) -> "StreamCompressor":
        """A push-based compressor writing to `target`: `write()` data in pieces, then `close()`.

        `block_bytes` is the input per block: the unit of memory, and of random access (a range is
        decoded block by block). `version` writes an older format, for compatibility tests.
        """
        return StreamCompressor(self, target, progress, block_bytes, version=version)

    def compress_stream(self, source: BinaryIO, target: BinaryIO, progress: ProgressCallback | None = None,
                        block_bytes: int = BLOCK_BYTES, *, version: int = container.FORMAT_VERSION) -> Stats:
        """Compress from a readable binary stream to a writable one, one block in memory at a time."""
        writer = self.compressor(target, progress, block_bytes, version=version)
        while chunk := source.read(block_bytes):
            writer.write(chunk)
        return writer.close()

    def compress(self, data: bytes, progress: ProgressCallback | None = None, *, block_bytes: int = BLOCK_BYTES) -> bytes:
        out = io.BytesIO()
        self.compress_stream(io.BytesIO(data), out, progress, block_bytes)
        return out.getvalue()

    def compress_with_stats(self, data: bytes, progress: ProgressCallback | None = None, *,
                            block_bytes: int = BLOCK_BYTES) -> tuple[bytes, Stats]:
        out = io.BytesIO()
        stats = self.compress_stream(io.BytesIO(data), out, progress, block_bytes)
        return out.getvalue(), stats

    # ------------------------------------------------------------------------------------------
    # Decompression

    def _decode_block(self, block: Block, header: Header, stats: Stats, on_step: Callable[[int], None]) -> bytes:
        # Everything checkable without the model is checked first: the side channel and the token
        # count against the block size, and every stream's framing.
        plan = self.model.tokenizer.plan(block.side, block.coded_len, block.n_tokens)
        if any(len(s) % 4 or not s for s in block.streams):
            raise FormatError("corrupted file: a coded stream is empty or not a whole number of words")
        if header.engine == PORTABLE_ENGINE:
            layout = schedule.Layout(header.context, header.carry, header.lane_size)
            ids = portable_coding.decode(self.portable, block.streams, block.n_tokens, header.bos_id, layout,
                                         header.windows_per_stream(), self.decode_streams_per_call(header), on_step,
                                         **_mixer_switches(header.mixer))
            self.model.table.decoded_bytes(np.asarray(ids, dtype=np.int64), plan.text_len)
        else:
            ids = self._lockstep.decode(block, header, stats, plan.text_len, on_step)
        coded = self.model.tokenizer.decode(ids, block.side, block.coded_len, plan)
        data = filters.unfilter(coded, block.line_ends, block.wrap)
        if crc32(data) != block.raw_crc:
            raise ChecksumError("corrupted file: a decoded block does not match its checksum; no output was kept")
        stats.tokens += block.n_tokens
        return data

    def decode_streams_per_call(self, header: Header) -> int:
        """Streams the portable decoder steps together: on a GPU as many as a third of free memory
        holds (KV cache and logits per lane), on the CPU up to 32 lanes, fewer where their KV cache
        would pass CPU_DECODE_MEMORY (at context 2,048 one lane's cache is 180 MiB for SmolLM2)."""
        per_stream = header.windows_per_stream()
        engine = self.portable
        per_window = (2 * 4 * len(engine.layers) * engine.kv_heads * engine.head_dim * header.context
                      + 4 * 8 * self.model.vocab_size)
        if self.model.device.type != "cuda":
            return max(1, min(32 // per_stream, CPU_DECODE_MEMORY // (per_window * per_stream)))
        free, _ = torch.cuda.mem_get_info(self.model.device)
        return max(1, int(free // 3 // (per_window * per_stream)))

    def _decode_counted(self, block: Block, header: Header, stats: Stats, progress: ProgressCallback | None,
                        consumed: int, size: int) -> bytes:
        """Decode one block (its CRC-32 checked) and count it; progress runs from `consumed` to
        `consumed + size` bytes of the file as its tokens are decoded."""
        done = [0]
        tokens_before = stats.tokens

        def on_step(count: int) -> None:
            done[0] += count
            if progress is not None:
                fraction = done[0] / block.n_tokens if block.n_tokens else 1.0
                progress(Progress(consumed + int(fraction * size), tokens_before + done[0]))

        # A float engine's file decodes with the threads it records (they enter its numbers); a
        # portable file records none and runs with this codec's.
        with _coding(header.threads or self.threads, header.batch, compressing=False):
            data = self._decode_block(block, header, stats, on_step)
        stats.blocks += 1
        stats.side_bytes += block.side_bytes(header.version)
        stats.stream_bytes += sum(len(s) for s in block.streams)
        return data

    def iter_decompress(self, source: BinaryIO, progress: ProgressCallback | None = None,
                        stats: Stats | None = None) -> Iterator[bytes]:
        """Yield the original data block by block, each only after its checksum holds.

        Each block's sequence number (version 3) is checked before it is decoded, so a removed,
        repeated or reordered block is refused before any of its bytes come out; the block index
        (version 3) or the total length and checksum (versions 1 and 2) are checked after the last.
        """
        stats = stats if stats is not None else Stats()
        started = time.perf_counter()
        reader = StreamReader(source)
        header, consumed = reader.read_header()
        self.check_header(header)
        total_crc = 0
        for block, size in reader.blocks(header):
            data = self._decode_counted(block, header, stats, progress, consumed, size)
            consumed += size
            total_crc = container.crc32(data, total_crc)
            stats.original_bytes += len(data)
            if progress is not None:
                progress(Progress(consumed, stats.tokens))
            yield data
        _check_end(reader, stats, consumed, total_crc, started)
        if progress is not None:
            progress(Progress(stats.compressed_bytes, stats.tokens))

    def decompressor(self, progress: ProgressCallback | None = None) -> "StreamDecompressor":
        """A push-based decompressor, as `lzma.LZMADecompressor`: feed it .llmz bytes in pieces."""
        return StreamDecompressor(self, progress)

    def decompress_stream(self, source: BinaryIO, target: BinaryIO,
                          progress: ProgressCallback | None = None) -> Stats:
        """Decompress from a readable binary stream, writing each block once its checksum holds."""
        stats = Stats()
        for data in self.iter_decompress(source, progress, stats):
            target.write(data)
        return stats

    def decompress(self, blob: bytes, progress: ProgressCallback | None = None) -> bytes:
        out = io.BytesIO()
        self.decompress_stream(io.BytesIO(blob), out, progress)
        return out.getvalue()

    # ------------------------------------------------------------------------------------------
    # Random access: byte ranges of the original, through the block index

    def open_index(self, source: BinaryIO) -> BlockIndex | None:
        """Read a seekable file's header and block index and check the header against this codec.

        None (the source back where it was) for a file without an index (format versions 1 and 2).
        """
        index = container.read_index(source)
        if index is not None:
            self.check_header(index.header)
        return index

    def decode_indexed(self, source: BinaryIO, index: BlockIndex, k: int, stats: Stats | None = None,
                       progress: ProgressCallback | None = None) -> bytes:
        """Read and decode block k alone (checked against the index, then against its CRC-32)."""
        stats = stats if stats is not None else Stats()
        block = index.read_block(source, k)
        return self._decode_counted(block, index.header, stats, progress, index.offsets[k] - index.start,
                                    index.sizes[k])

    def iter_decompress_range(self, source: BinaryIO, start: int, end: int | None = None,
                              progress: ProgressCallback | None = None,
                              stats: Stats | None = None) -> Iterator[bytes]:
        """Yield bytes [start, end) of the original (end None: to its end; both clipped to the
        original, like a slice), decoding only the blocks that hold them.

        From a seekable version 3 file only those blocks are read, found through the index at the
        end of the file. Otherwise (a pipe, or a version 1 or 2 file) the blocks are read in order:
        those before the range are skipped without decoding, and reading stops after the range.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range {start}:{'' if end is None else end}")
        stats = stats if stats is not None else Stats()
        started = time.perf_counter()
        seekable = getattr(source, "seekable", None)
        index = self.open_index(source) if seekable is not None and seekable() else None
        if index is not None:
            stop = index.total_len if end is None else min(end, index.total_len)
            k = index.locate(start) if start < stop else len(index)
            while k < len(index) and index.raw_starts[k] < stop:
                data = self.decode_indexed(source, index, k, stats, progress)
                first = index.raw_starts[k]
                piece = data[max(0, start - first) : stop - first]
                stats.original_bytes += len(piece)
                yield piece
                k += 1
        else:
            reader = StreamReader(source)
            header, consumed = reader.read_header()
            self.check_header(header)
            for block, size in reader.blocks(header):
                first = block.raw_start
                if end is not None and first >= end:
                    break
                if first + block.raw_len > start:
                    data = self._decode_counted(block, header, stats, progress, consumed, size)
                    piece = data[max(0, start - first) : None if end is None else end - first]
                    stats.original_bytes += len(piece)
                    yield piece
                consumed += size
        stats.seconds = time.perf_counter() - started

    def decompress_range(self, source: bytes | BinaryIO, start: int, end: int | None = None,
                         progress: ProgressCallback | None = None) -> bytes:
        """Bytes [start, end) of the original; see iter_decompress_range."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(source)
        return b"".join(self.iter_decompress_range(source, start, end, progress))

    # ------------------------------------------------------------------------------------------
    # One block at a time, for callers that cut, order and write blocks themselves
    # (llmzip.distributed codes them in other processes)

    def file_header(self) -> Header:
        """The header of the files this codec writes: blocks from `encode_block` belong under it."""
        return self._header()

    def encode_block(self, data: bytes, stats: Stats | None = None,
                     progress: ProgressCallback | None = None) -> Block:
        """Code `data` as one block, exactly as the compressor codes it (its raw_start is set when
        written, by `ContainerWriter.add`); progress counts the block's own bytes and tokens."""
        stats = stats if stats is not None else Stats()
        tokens_before = stats.tokens

        def on_step(done: int, total: int) -> None:
            if progress is not None:
                progress(Progress(int(done / total * len(data)) if total else len(data), tokens_before + done))

        with _coding(self.threads, self.batch, compressing=True):
            return self._encode_block(data, stats, on_step)

    def decode_block(self, block: Block, header: Header, stats: Stats | None = None,
                     progress: ProgressCallback | None = None) -> bytes:
        """Decode one block read elsewhere, checked against its CRC-32, under a header that passed
        `check_header`; progress counts the block's original bytes and tokens."""
        stats = stats if stats is not None else Stats()
        return self._decode_counted(block, header, stats, progress, 0, block.raw_len)


def _check_end(reader: StreamReader, stats: Stats, consumed: int, total_crc: int, started: float) -> None:
    """After the end has been read: versions 1 and 2 store the length and CRC-32 of the whole
    (version 3 checks each block against the index as it goes); the statistics are completed."""
    trailer = reader.trailer
    if trailer is not None and (trailer.total_len != stats.original_bytes or trailer.total_crc != total_crc):
        raise ChecksumError("corrupted file: the decoded data does not match the stored length and checksum")
    stats.compressed_bytes = consumed + reader.tail_size
    stats.header_bytes = stats.compressed_bytes - stats.side_bytes - stats.stream_bytes
    stats.seconds = time.perf_counter() - started


@contextlib.contextmanager
def _coding(threads: int, batch: int, compressing: bool) -> Iterator[None]:
    """The settings every model step runs under, and a GPU running out of memory made actionable."""
    try:
        with torch.inference_mode(), _torch_threads(threads), fixed_numerics():
            yield
    except torch.cuda.OutOfMemoryError:
        if compressing:
            raise UnsupportedParameterError(
                f"out of GPU memory with {batch} windows per step: compress with a smaller --batch") from None
        raise UnsupportedParameterError(
            f"out of GPU memory: this file steps {batch} windows at once; decompress it on a GPU with more free "
            "memory") from None


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run with exactly `threads` intra-op threads (0: leave as is), restoring the setting after."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _block_cut(pending: bytes | bytearray, block_bytes: int) -> int:
    """Where a full block ends: after a newline near its end when there is one (tokens never cross
    a block boundary, so a cut between lines costs the least)."""
    return pending.rfind(b"\n", max(0, block_bytes - 4096), block_bytes) + 1 or block_bytes


def split_blocks(data: bytes, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The blocks the compressor cuts `data` into (when it is given all of it)."""
    start = 0
    while len(data) - start >= block_bytes:
        cut = _block_cut(data[start : start + block_bytes], block_bytes)
        yield data[start : start + cut]
        start += cut
    if start < len(data):
        yield data[start:]


class StreamCompressor:
    """Push-based compression: takes data in pieces of any size, writes a block whenever one is full.

    The header is written at once; `close()` writes the last block and the end of the file (the
    block index, in version 3) and returns the statistics. Memory holds at most one block of input.
    """

    def __init__(self, codec: Codec, target: BinaryIO, progress: ProgressCallback | None = None,
                 block_bytes: int = BLOCK_BYTES, *, version: int = container.FORMAT_VERSION):
        if not 1 <= block_bytes <= container.MAX_BLOCK_RAW_BYTES:  # a larger block could not be read back
            raise UnsupportedParameterError(
                f"block_bytes must be between 1 and {container.MAX_BLOCK_RAW_BYTES}, not {block_bytes}")
        if version not in container.VERSIONS:
            raise UnsupportedParameterError(f"no llmzip format version {version}; this llmzip writes "
                                            f"{', '.join(map(str, container.VERSIONS))}")
        self._codec, self._progress, self._block_bytes = codec, progress, block_bytes
        self.stats = Stats()
        self._started = time.perf_counter()
        self._pending = bytearray()
        self._crc = 0
        self._writer = ContainerWriter(target, codec._header(version))
        self.stats.header_bytes += self._writer.bytes_written
        self.closed = False

    @property
    def bytes_in(self) -> int:
        return self._writer.raw_total + len(self._pending)

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ValueError("write to a closed compressor")
        self._pending += data
        while len(self._pending) >= self._block_bytes:
            cut = _block_cut(self._pending, self._block_bytes)
            self._encode(bytes(self._pending[:cut]))
            del self._pending[:cut]

    def close(self) -> Stats:
        if self.closed:
            return self.stats
        if self._pending:
            self._encode(bytes(self._pending))
            self._pending.clear()
        stats = self.stats
        stats.header_bytes += self._writer.close(self._crc)
        stats.original_bytes = self._writer.raw_total
        stats.compressed_bytes = self._writer.bytes_written
        stats.seconds = time.perf_counter() - self._started
        self.closed = True
        return stats

    def _encode(self, data: bytes) -> None:
        stats, progress, done_before = self.stats, self._progress, self._writer.raw_total

        def on_step(tokens_done: int, tokens_total: int) -> None:
            if progress is not None:
                fraction = tokens_done / tokens_total if tokens_total else 1.0
                progress(Progress(done_before + int(fraction * len(data)), stats.tokens + tokens_done))

        with _coding(self._codec.threads, self._codec.batch, compressing=True):
            block = self._codec._encode_block(data, stats, on_step, self._writer.version)
        framed = self._writer.add(block)
        side = block.side_bytes(self._writer.version)
        stats.blocks += 1
        stats.side_bytes += side
        stats.header_bytes += framed - side - sum(len(s) for s in block.streams)
        self._crc = container.crc32(data, self._crc)
        if progress is not None:
            progress(Progress(self._writer.raw_total, stats.tokens))


class _NeedInput(Exception):
    """The bytes fed so far end inside the header, block or end being read."""


class _Feed:
    """The bytes given to a StreamDecompressor, read as a stream whose reads never come up short:
    a read past what has arrived raises _NeedInput, and the reader starts that unit again later."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.pos = 0

    def read(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _NeedInput
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return chunk

    def drop_read(self) -> None:
        """Forget the bytes of the units read whole: memory holds at most one block."""
        del self.data[: self.pos]
        self.pos = 0


class StreamDecompressor:
    """Push-based decompression in the manner of `lzma.LZMADecompressor`.

    `decompress(data)` takes .llmz bytes in pieces of any size and returns the original as far as
    whole blocks have arrived, each only after its checksum holds (`max_length` caps the bytes
    returned; the rest waits for the next call). The header is checked against the codec as soon
    as it has arrived. After the end: `eof` is true once every byte has been returned,
    `unused_data` holds what followed the end, and `stats` is complete.
    """

    def __init__(self, codec: Codec, progress: ProgressCallback | None = None):
        self._codec, self._progress = codec, progress
        self._feed = _Feed()
        self._reader = StreamReader(self._feed, at_end=False)  # bytes after the end are the caller's
        self._header: Header | None = None
        self._consumed = 0  # bytes of the file read as whole units
        self._total_crc = 0
        self._out = bytearray()
        self._ended = False
        self._more = False  # whole blocks may be waiting: decompress() stopped at max_length
        self._started = time.perf_counter()
        self._failed: Exception | None = None
        self.stats = Stats()
        self.unused_data = b""

    @property
    def eof(self) -> bool:
        """Whether the end of the stream has been read and all the original returned."""
        return self._ended and not self._out

    @property
    def needs_input(self) -> bool:
        """Whether `decompress` needs more input before it can return more of the original."""
        return not self._ended and not self._out and not self._more

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._failed is not None:  # going on would skip the refused block: refuse again
            raise self._failed
        if self.eof:
            raise EOFError("already at the end of the llmzip stream")
        if self._ended:
            self.unused_data += data
        else:
            self._feed.data += data
        try:
            while (max_length < 0 or len(self._out) < max_length) and self._read_unit():
                pass
        except Exception as exc:
            self._failed = exc
            raise
        self._more = not self._ended and 0 <= max_length <= len(self._out)
        cut = len(self._out) if max_length < 0 else max_length
        piece = bytes(self._out[:cut])
        del self._out[:cut]
        return piece

    def _read_unit(self) -> bool:
        """Read and act on the next header, block or end if it has arrived whole: False if not."""
        if self._ended:
            return False
        start = self._feed.pos
        try:
            if self._header is None:
                header, size = self._reader.read_header()
                self._codec.check_header(header)
                self._header = header
                self._consumed += size
            elif (item := self._reader.next_block(self._header)) is None:
                self._end()
            else:
                self._decode(*item)
        except _NeedInput:
            self._feed.pos = start
            return False
        self._feed.drop_read()
        return not self._ended

    def _decode(self, block: Block, size: int) -> None:
        stats, progress = self.stats, self._progress
        data = self._codec._decode_counted(block, self._header, stats, progress, self._consumed, size)
        self._consumed += size
        self._total_crc = container.crc32(data, self._total_crc)
        stats.original_bytes += len(data)
        self._out += data
        if progress is not None:
            progress(Progress(self._consumed, stats.tokens))

    def _end(self) -> None:
        _check_end(self._reader, self.stats, self._consumed, self._total_crc, self._started)
        self._ended = True
        self.unused_data = bytes(self._feed.data[self._feed.pos :])
        self._feed.data.clear()
        self._feed.pos = 0
        if self._progress is not None:
            self._progress(Progress(self.stats.compressed_bytes, self.stats.tokens))
