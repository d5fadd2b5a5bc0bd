"""Any byte string round-trips exactly, with both tiny architectures and awkward shapes."""
from __future__ import annotations

import os

import pytest

from llmzip import Codec, inspect

EDGE_CASES = {
    "empty": b"",
    "one byte": b"a",
    "nul bytes": b"\x00" * 100 + b"text after nuls, long enough to be text" + b"\x00",
    "all byte values": bytes(range(256)) * 4,
    "crlf": b"line one\r\nline two\r\n\r\nand a third line with CRLF\r\n" * 5,
    "invalid utf-8": b"valid start of a sentence " + b"\xff\xfe\xc3\x28\xa0\xa1" + b" and a valid end of it",
    "lone surrogates": "surrogate \ud800 and \udfff inside text, repeated".encode("utf-8", "surrogatepass") * 3,
    "overlong and truncated utf-8": b"\xc0\xaf\xe0\x80\xaf plain text of some length here \xf0\x9f\x98",
    "emoji and accents": "héllo wörld — ünïcödé 😀 and 中文字符 in one line of text\n".encode() * 4,
    "special token text": b"<s> this looks like a special token </s> <|endoftext|> in plain text",
    "random": os.urandom(700),
    "whitespace": b" \t \n" * 50,
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_round_trip(llama, name):
    data = EDGE_CASES[name]
    codec = Codec(llama, context=32, batch=3)
    assert codec.decompress(codec.compress(data)) == data


@pytest.mark.parametrize("context,batch", [(1, 1), (7, 2), (50, 3), (64, 16)])
def test_shapes_that_do_not_divide_the_input(gpt2, alice, context, batch):
    data = alice[:700]
    codec = Codec(gpt2, context=context, batch=batch)
    blob = codec.compress(data)
    assert codec.decompress(blob) == data
    info = inspect(blob)
    assert (info.header.context, info.header.batch) == (context, batch)


def test_both_architectures_and_several_blocks(llama, gpt2, alice):
    import io

    data = alice[:2500] + b"\x00\x01\x02 binary interlude \xff\xfe" + alice[2500:3500]
    for model in (llama, gpt2):
        codec = Codec(model, context=40, batch=4)
        out = io.BytesIO()
        stats = codec.compress_stream(io.BytesIO(data), out, block_bytes=1000)
        assert stats.blocks >= 3
        assert inspect(out.getvalue()).blocks == stats.blocks
        assert codec.decompress(out.getvalue()) == data


def test_text_is_coded_by_the_model_and_binary_goes_to_the_side(llama, alice):
    codec = Codec(llama, context=64, batch=2)
    blob, text_stats = codec.compress_with_stats(alice[:1000])
    # All text: the side channel stores nothing; the only side data is the wrap record of its lines.
    assert text_stats.text_bytes == 1000 and text_stats.side_bytes == inspect(blob).block_list[0].wrap_bytes <= 3
    noise = bytes((i * 37 + 11) % 256 for i in range(300)) + b"\xff" * 10
    _, mixed = codec.compress_with_stats(alice[:1000] + noise)
    assert mixed.text_bytes >= 1000
    assert mixed.side_bytes <= len(noise) + 32  # raw bytes cost at most about their size


def test_stats_add_up(llama, alice):
    blob, stats = Codec(llama, context=64, batch=2).compress_with_stats(alice[:1500])
    assert stats.compressed_bytes == len(blob)
    assert stats.header_bytes + stats.side_bytes + stats.stream_bytes == len(blob)
    assert stats.original_bytes == 1500 and stats.tokens > 0
    info = inspect(blob)
    assert (info.original_bytes, info.compressed_bytes, info.tokens) == (1500, len(blob), stats.tokens)


def test_coding_overhead_is_small(gpt2, alice):
    """Real stream bits stay within 1% of the model's cross-entropy on a few KiB of text."""
    codec = Codec(gpt2, context=128, batch=8)
    _, stats = codec.compress_with_stats(alice)
    assert abs(stats.quantized_bits - stats.cross_entropy_bits) < 0.01 * stats.cross_entropy_bits
    assert stats.overhead < 0.01, stats


def test_progress_callback_reaches_the_end(llama, alice):
    seen = []
    codec = Codec(llama, context=32, batch=2)
    blob = codec.compress(alice[:400], progress=seen.append)
    assert seen and seen[-1].input_bytes == 400
    assert [p.input_bytes for p in seen] == sorted(p.input_bytes for p in seen)
    decoded = []
    codec.decompress(blob, progress=decoded.append)
    assert decoded[-1].input_bytes == len(blob)


def test_module_level_api(llama_dir, alice):
    import llmzip

    blob = llmzip.compress(alice[:300], model=llama_dir, context=48)
    assert llmzip.decompress(blob, model=llama_dir) == alice[:300]


def test_thread_count_is_recorded_and_reproduced(gpt2, alice):
    """CPU thread count changes the logits' last bits: the file fixes it for the decoder."""
    blob = Codec(gpt2, context=64, batch=2, threads=2).compress(alice[:400])
    assert inspect(blob).header.threads == 2
    assert Codec(gpt2, threads=1).decompress(blob) == alice[:400]


def test_a_portable_file_decodes_with_the_threads_asked_for(llama, alice):
    """A portable file records no thread count: the decoder runs with its own (as xz -T), and
    a float engine's file with the count it records, whatever the decoder was given."""
    import torch

    def threads_while_decoding(codec: Codec, blob: bytes, expected: bytes) -> int:
        seen = []  # the first progress report comes from inside the decoding loop
        assert codec.decompress(blob, lambda p: seen.append(torch.get_num_threads())) == expected
        return seen[0]

    blob = Codec(llama, context=48).compress(alice[:300])
    assert inspect(blob).header.threads == 0
    before = torch.get_num_threads()
    for threads in (1, 2):
        assert threads_while_decoding(Codec(llama, threads=threads), blob, alice[:300]) == threads
        assert torch.get_num_threads() == before
    float_file = Codec(llama, context=48, engine="transformers", threads=2).compress(alice[:200])
    assert threads_while_decoding(Codec(llama, threads=1), float_file, alice[:200]) == 2


def test_version_1_files_still_decode(llama, alice):
    """A file as version 1 wrote it (16-byte fingerprints, no engine or stream_windows fields, one
    stream per batch, blocks without sequence numbers, a trailer with the total CRC-32) decodes
    with this version."""
    import io

    data = alice[:400]
    # 3 windows per batch: one stream each, as in v1 (whose only engine was transformers)
    codec = Codec(llama, context=32, batch=3, engine="transformers")
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), out, version=1)
    old_file = out.getvalue()
    header = inspect(old_file).header
    assert old_file[4] == 1 and len(header.model_fingerprint) == 16 and header.stream_windows == 0
    assert Codec(llama).decompress(old_file) == data
