"""Bytes to tokens and back, exactly, for any input.

Decoding never calls the tokenizer: each token id maps to a fixed byte string (the *token table*),
and the decoder concatenates them. The encoder uses the tokenizer only to propose tokens, then
checks that their bytes reproduce the input; what does not round-trip (invalid UTF-8, binary data,
control characters, anything the tokenizer normalises) goes to a *side channel* of raw bytes with a
layout that splices them back. Text is coded by the model; the rest costs at most its own size.

The side channel, packed per block:
    method 0x02                       everything is text (the common case: one byte)
    method 0x00 + payload             payload stored
    method 0x01 + payload             payload as raw LZMA2 (preset 9e)
    payload = varint n_pairs, n_pairs x (varint text_len, varint raw_len), raw bytes
"""
from __future__ import annotations

import functools
import hashlib
import lzma
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from .container import Reader, write_varint
from .errors import FormatError, ModelError

# A text run: at least MIN_TEXT_RUN bytes of well-formed UTF-8 without control characters other
# than tab, newline, form feed and carriage return. Shorter runs inside binary data are cheaper raw.
MIN_TEXT_RUN = 16
_TEXT_CHAR = (
    rb"(?:[\t\n\x0c\r\x20-\x7e]"
    rb"|[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})"
)
_TEXT_RUN = re.compile(_TEXT_CHAR + rb"{%d,}" % MIN_TEXT_RUN)
# Tokenizer calls are made on pieces of at most this many characters, cut after a newline when
# possible, so that one tokenizer call never sees megabytes at once.
_PIECE_CHARS = 1 << 16
_RESYNC_CHARS = 1 << 12

_SIDE_ALL_TEXT = 0x02
_SIDE_STORED = 0x00
_SIDE_LZMA = 0x01
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def _byte_level_decoder_map() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes, inverted: the ByteLevel pre-tokenizer's alphabet."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    codepoints = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codepoints.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codepoints)}


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _decoder_kinds(backend: Any) -> set[str]:
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return set()
    text = repr(decoder)
    return {kind for kind in ("ByteLevel", "ByteFallback", "Metaspace", "Replace", "WordPiece") if kind in text}


@dataclass(frozen=True)
class TokenTable:
    """The exact bytes of each token id (None where a token has no fixed byte string)."""

    token_bytes: tuple[bytes | None, ...]

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """Bytes of each token id, 0 for ids without a byte string (int64, one entry per id)."""
        return np.asarray([len(b) if b is not None else 0 for b in self.token_bytes], dtype=np.int64)

    @property
    def fingerprint(self) -> bytes:
        h = hashlib.sha256(b"llmzip-token-table-v1\0")
        for raw in self.token_bytes:
            if raw is None:
                h.update(b"\xff")
            else:
                h.update(len(raw).to_bytes(4, "little") + raw)
        return h.digest()[:16]

    def decoded_bytes(self, ids: np.ndarray, text_len: int) -> int:
        """The bytes that decoded token ids stand for, refusing ids no valid stream yields: out of
        the vocabulary, without a byte string, or longer together than the block's text."""
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.token_bytes)):
            raise FormatError("corrupted file: a coded stream decodes to an impossible token")
        sizes = self.lengths[ids]
        if ids.size and sizes.min() < 1:
            raise FormatError("corrupted file: decoded a token that has no byte string")
        total = int(sizes.sum())
        if total > text_len:
            raise FormatError("corrupted file: the decoded text is longer than the block layout allows")
        return total

    def join(self, ids: Sequence[int]) -> bytes:
        try:
            return b"".join(self.token_bytes[i] for i in ids)  # type: ignore[misc]
        except (TypeError, IndexError):
            raise FormatError("corrupted file: decoded a token that has no byte string") from None


def build_token_table(tokenizer: Any, vocab_size: int) -> TokenTable:
    """Derive each token's bytes from a Hugging Face fast tokenizer's vocabulary and decoder."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError("llmzip needs a fast (Rust `tokenizers`) tokenizer; this model only has a slow one")
    kinds = _decoder_kinds(backend)
    # Special tokens (BOS, EOS, chat markers) stand for no text. Other added tokens do, as their
    # literal content, not in the decoder's alphabet (Gemma's "\n" is one).
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added_text: dict[int, bytes] = {}
    for added_id, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", True):
            special.add(int(added_id))
        else:
            added_text[int(added_id)] = str(getattr(added, "content", "")).encode("utf-8")
    byte_map = _byte_level_decoder_map() if "ByteLevel" in kinds else None
    table: list[bytes | None] = []
    for token_id in range(vocab_size):
        piece = backend.id_to_token(token_id)
        if piece is None or token_id in special:
            table.append(None)
            continue
        if token_id in added_text:
            table.append(added_text[token_id] or None)
            continue
        if byte_map is not None:
            try:
                table.append(bytes(byte_map[ch] for ch in piece))
            except KeyError:
                table.append(None)
            continue
        fallback = _BYTE_FALLBACK.match(piece)
        if fallback and "ByteFallback" in kinds:
            table.append(bytes([int(fallback.group(1), 16)]))
        elif "Metaspace" in kinds or "Replace" in kinds:
            table.append(piece.replace("\u2581", " ").encode("utf-8"))
        else:
            table.append(piece.encode("utf-8") if "WordPiece" not in kinds else None)
    if not any(table):
        raise ModelError("could not derive the bytes of any token from this tokenizer")
    return TokenTable(tuple(table))


@dataclass(frozen=True)
class Layout:
    """Alternating runs: text_len bytes coded as tokens, then raw_len bytes from the side channel."""

    pairs: tuple[tuple[int, int], ...]
    raw: bytes


class Tokenizer:
    """The encoder's side: turns a block of bytes into model tokens plus a side channel."""

    def __init__(self, hf_tokenizer: Any, table: TokenTable):
        self.table = table
        self.backend = hf_tokenizer.backend_tokenizer
        # Text that merely looks like a special token ("<|endoftext|>") is ordinary text here.
        try:
            self.backend.encode_special_tokens = True
        except AttributeError:
            pass
        self._lengths = table.lengths.tolist()  # plain ints: indexed per token in the hot loop
        self.max_token_bytes = max(self._lengths)

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, data: bytes) -> tuple[list[int], bytes]:
        """Return the token ids of `data`'s text and its packed side channel."""
        pairs: list[tuple[int, int]] = []
        raw_parts: list[bytes] = []
        ids: list[int] = []
        pos = 0
        pending_text = 0

        def add_raw(chunk: bytes) -> None:
            nonlocal pending_text
            if not chunk:
                return
            if pairs and pending_text == 0:
                text_len, raw_len = pairs[-1]
                pairs[-1] = (text_len, raw_len + len(chunk))
            else:
                pairs.append((pending_text, len(chunk)))
                pending_text = 0
            raw_parts.append(chunk)

        for match in _TEXT_RUN.finditer(data):
            add_raw(data[pos : match.start()])
            for piece in _pieces(match.group()):
                for kind, chunk, chunk_ids in self._align(piece):
                    if kind == "text":
                        ids.extend(chunk_ids)
                        pending_text += len(chunk)
                    else:
                        add_raw(chunk)
            pos = match.end()
        add_raw(data[pos:])
        if pending_text or not pairs:
            pairs.append((pending_text, 0))
        return ids, pack_side(Layout(tuple(pairs), b"".join(raw_parts)))

    def _align(self, text: bytes) -> list[tuple[str, bytes, list[int]]]:
        """Accept the tokenizer's tokens while their bytes match; route mismatches to raw."""
        out: list[tuple[str, bytes, list[int]]] = []
        table, lengths = self.table.token_bytes, self._lengths
        pos = 0
        while pos < len(text):
            # After a mismatch, propose tokens for a bounded stretch only, so that a tokenizer
            # that often disagrees with the bytes costs linear, not quadratic, time.
            end = len(text) if pos == 0 else _char_boundary(text, min(len(text), pos + _RESYNC_CHARS))
            proposed = self.backend.encode(text[pos:end].decode("utf-8"), add_special_tokens=False).ids
            accepted: list[int] = []
            start = pos
            for token_id in proposed:
                n = lengths[token_id] if token_id < len(lengths) else 0
                if n <= 0 or text[pos : pos + n] != table[token_id]:
                    break
                accepted.append(token_id)
                pos += n
            if accepted:
                out.append(("text", text[start:pos], accepted))
            if not accepted and pos < len(text):
                # The tokenizer cannot carry the character here: send it raw and retry after it.
                char_len = _utf8_char_len(text[pos])
                out.append(("raw", text[pos : pos + char_len], []))
                pos += char_len
        return out

    # -- decoding ---------------------------------------------------------------------------
    def plan(self, side: bytes, raw_len: int, n_tokens: int) -> "SidePlan":
        """Validate a block's side channel against its sizes before any token is decoded.

        The encoder never emits a token without bytes, so `n_tokens` tokens carry between
        `n_tokens` and `n_tokens * max_token_bytes` bytes of text: a block whose layout disagrees
        is refused here, before the model runs, instead of after decoding every token.
        """
        plan = plan_side(side, raw_len)
        if not n_tokens <= plan.text_len <= n_tokens * self.max_token_bytes:
            raise FormatError("corrupted file: a block's token count does not fit its layout")
        return plan

    def decode(self, ids: Sequence[int], side: bytes, raw_len: int, plan: "SidePlan | None" = None) -> bytes:
        """Rebuild a block from its tokens and side channel, checking every length."""
        if plan is None:
            plan = plan_side(side, raw_len)
        out = splice(plan, self.table.join(ids))
        if len(out) != raw_len:
            raise FormatError("corrupted file: a block decodes to the wrong length")
        return out


def _char_boundary(text: bytes, index: int) -> int:
    while index < len(text) and text[index] & 0xC0 == 0x80:
        index -= 1
    return index


def _utf8_char_len(lead: int) -> int:
    return 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def _pieces(text: bytes) -> list[bytes]:
    """Cut a long text run into tokenizer-sized pieces at newlines (or UTF-8 boundaries)."""
    if len(text) <= _PIECE_CHARS:
        return [text]
    pieces = []
    start = 0
    while len(text) - start > _PIECE_CHARS:
        cut = text.rfind(b"\n", start + _PIECE_CHARS // 2, start + _PIECE_CHARS)
        if cut < 0:
            cut = _char_boundary(text, start + _PIECE_CHARS)
        else:
            cut += 1
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def pack_side(layout: Layout) -> bytes:
    if not layout.raw and len(layout.pairs) == 1:
        return bytes([_SIDE_ALL_TEXT])
    payload = bytearray()
    write_varint(payload, len(layout.pairs))
    for text_len, raw_len in layout.pairs:
        write_varint(payload, text_len)
        write_varint(payload, raw_len)
    payload += layout.raw
    packed = lzma.compress(bytes(payload), format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    if len(packed) < len(payload):
        return bytes([_SIDE_LZMA]) + packed
    return bytes([_SIDE_STORED]) + bytes(payload)


@dataclass(frozen=True)
class SidePlan:
    """A validated side channel, kept packed: its runs are re-read when splicing, never expanded
    into per-run objects (a crafted layout of millions of runs costs time, not memory)."""

    raw_len: int  # bytes of the whole block
    text_len: int  # bytes the block's tokens must produce
    n_pairs: int
    payload: bytes  # the run lengths then the raw bytes; empty when the block is all text
    raw_start: int  # offset of the raw bytes in payload


def plan_side(side: bytes, raw_len: int) -> SidePlan:
    """Parse and check a side channel against a block of raw_len bytes, without splicing it."""
    if not side:
        raise FormatError("corrupted file: empty side channel")
    method, body = side[0], side[1:]
    if method == _SIDE_ALL_TEXT:
        if body:
            raise FormatError("corrupted file: unexpected side channel data")
        return SidePlan(raw_len, raw_len, 1, b"", 0)
    if method == _SIDE_LZMA:
        limit = 2 * raw_len + 64  # a layout costs at most 2 varints per raw run; runs are >= 1 byte
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
        try:
            body = decompressor.decompress(body, max_length=limit + 1)
        except lzma.LZMAError:
            raise FormatError("corrupted file: the side channel does not decompress") from None
        if len(body) > limit or not decompressor.eof or decompressor.unused_data:
            raise FormatError("corrupted file: the side channel has the wrong size")
    elif method != _SIDE_STORED:
        raise FormatError(f"corrupted file: unknown side channel method {method}")
    r = Reader(body, "the side channel")
    # pack_side writes runs that alternate: every pair but the first has text, every pair but the
    # last has raw bytes. So the pairs are at most raw_len // 2 + 1, each running total is bounded
    # by raw_len, and a corrupted count fails at the first bad pair.
    n_pairs = r.varint(raw_len // 2 + 1, "the number of layout runs")
    if n_pairs < 1:
        raise FormatError("corrupted file: the block layout has no runs")
    text_total = raw_total = 0
    for i in range(n_pairs):
        text_len = r.varint(raw_len - text_total - raw_total, "a text run length")
        text_total += text_len
        raw_chunk = r.varint(raw_len - text_total - raw_total, "a raw run length")
        raw_total += raw_chunk
        if (i and not text_len) or (i < n_pairs - 1 and not raw_chunk):
            raise FormatError("corrupted file: the block layout has an empty run")
    if text_total + raw_total != raw_len:
        raise FormatError("corrupted file: the block layout does not add up to the block size")
    raw_start = r.pos
    r.take(raw_total)
    r.expect_end()
    return SidePlan(raw_len, text_total, n_pairs, bytes(body), raw_start)


def _runs(plan: SidePlan) -> Iterator[tuple[int, int]]:
    r = Reader(plan.payload, "the side channel")
    r.varint()
    for _ in range(plan.n_pairs):
        yield r.varint(), r.varint()


def splice(plan: SidePlan, text: bytes) -> bytes:
    """Interleave decoded text with the side channel's raw runs."""
    if len(text) != plan.text_len:
        raise FormatError("corrupted file: the decoded text does not fit the block layout")
    if not plan.payload:
        return bytes(text)
    raw = memoryview(plan.payload)[plan.raw_start :]
    out = bytearray()
    t_pos = r_pos = 0
    for text_len, raw_chunk in _runs(plan):
        out += text[t_pos : t_pos + text_len]
        out += raw[r_pos : r_pos + raw_chunk]
        t_pos += text_len
        r_pos += raw_chunk
    return bytes(out)


def unpack_side(side: bytes, raw_len: int) -> Layout:
    """Parse a side channel, refusing anything inconsistent with a block of raw_len bytes."""
    plan = plan_side(side, raw_len)
    if not plan.payload:
        return Layout(((raw_len, 0),), b"")
    return Layout(tuple(_runs(plan)), plan.payload[plan.raw_start :])
