"""Decoding refuses, with a message that says what to do, whatever it cannot reproduce."""
from __future__ import annotations

import dataclasses
import io

import pytest

from llmzip import (ChecksumError, Codec, FormatError, ModelMismatchError, UnsupportedParameterError)
from llmzip.container import StreamReader, write_header


def _replace_header(blob: bytes, **changes) -> bytes:
    reader = StreamReader(io.BytesIO(blob))
    header, size = reader.read_header()
    out = io.BytesIO()
    write_header(out, dataclasses.replace(header, **changes))
    return out.getvalue() + blob[size:]


@pytest.fixture(scope="module")
def packed(llama, alice):
    codec = Codec(llama, context=64, batch=2, engine="transformers")  # the float engine binds the most
    return codec, codec.compress(alice[:600])


def test_wrong_model_names_the_expected_one(packed, gpt2):
    _, blob = packed
    with pytest.raises(ModelMismatchError, match="compressed with model"):
        Codec(gpt2).decompress(blob)


@pytest.mark.parametrize("field,value,message", [
    ("dtype", "bfloat16", "--dtype bfloat16"),
    ("device_class", "cuda-sm90:NVIDIA H100", "same kind of device"),
    ("quantizer", "triton-v9", "unknown"),
    ("precision", 16, "precision"),
    ("coder", "some-other-coder", "coder"),
    ("attention", "flash_attention_2", "attention"),
])
def test_parameters_that_cannot_be_reproduced(packed, field, value, message):
    codec, blob = packed
    with pytest.raises(UnsupportedParameterError, match=message):
        codec.decompress(_replace_header(blob, **{field: value}))


def test_software_difference_only_warns(packed, alice, caplog):
    codec, blob = packed
    assert codec.decompress(_replace_header(blob, software="torch 0.0")) == alice[:600]
    assert "if decoding fails" in caplog.text


def test_truncated_and_corrupted(packed):
    codec, blob = packed
    for cut in (0, 3, 10, len(blob) // 2, len(blob) - 1):
        with pytest.raises(FormatError):
            codec.decompress(blob[:cut])
    with pytest.raises(FormatError, match="after the end"):
        codec.decompress(blob + b"junk")


def test_flipped_stream_bit_is_caught(packed):
    codec, blob = packed
    damaged = bytearray(blob)
    damaged[-40] ^= 0x10  # inside the last coded stream
    with pytest.raises(FormatError):  # ChecksumError is a FormatError
        codec.decompress(bytes(damaged))


def test_checksum_error_is_a_format_error():
    assert issubclass(ChecksumError, FormatError)
