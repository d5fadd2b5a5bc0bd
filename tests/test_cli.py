"""The command line: gzip conventions, atomic output, exit codes, one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmzip.cli import main


@pytest.fixture()
def text_file(tmp_path, alice) -> Path:
    path = tmp_path / "alice.txt"
    path.write_bytes(alice[:500])
    return path


def _args(model_dir, *rest):
    return ["-q", "--model", str(model_dir), *rest]


def test_compress_then_decompress_in_place(llama_dir, text_file, alice):
    text_file.chmod(0o640)
    os.utime(text_file, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    assert main(["compress", *_args(llama_dir, "--context", "64", str(text_file))]) == 0
    packed = text_file.with_name("alice.txt.llmz")
    assert packed.exists() and not text_file.exists()  # like gzip: the input goes unless -k
    assert main(["decompress", *_args(llama_dir, str(packed))]) == 0
    assert text_file.read_bytes() == alice[:500] and not packed.exists()
    # permissions and modification time travel through both steps, as with xz and zstd
    assert text_file.stat().st_mode & 0o777 == 0o640
    assert text_file.stat().st_mtime_ns == 1_500_000_000_987_654_321


def test_keep_force_and_existing_output(llama_dir, text_file):
    assert main(["compress", *_args(llama_dir, "-k", str(text_file))]) == 0
    packed = text_file.with_name("alice.txt.llmz")
    before = packed.read_bytes()
    packed.write_bytes(b"precious")
    assert main(["compress", *_args(llama_dir, "-k", str(text_file))]) == 1  # never touched without -f
    assert packed.read_bytes() == b"precious"
    assert main(["compress", *_args(llama_dir, "-k", "-f", str(text_file))]) == 0
    assert packed.read_bytes() == before
    assert text_file.exists()


def test_output_option_and_stdout(llama_dir, text_file, tmp_path, capfdbinary, alice):
    out = tmp_path / "named.bin"
    assert main(["compress", *_args(llama_dir, "-o", str(out), str(text_file))]) == 0
    assert not text_file.exists()
    capfdbinary.readouterr()
    assert main(["decompress", *_args(llama_dir, "-c", str(out))]) == 0
    assert capfdbinary.readouterr().out == alice[:500]
    assert out.exists()  # -c keeps the input


def test_refusals_and_exit_codes(llama_dir, gpt2_dir, text_file, tmp_path, capsys):
    assert main(["compress", *_args(llama_dir, "-k", str(text_file))]) == 0
    packed = text_file.with_name("alice.txt.llmz")
    capsys.readouterr()
    # a different model: exit 1, one line naming the expected model
    assert main(["decompress", *_args(gpt2_dir, "-c", str(packed))]) == 1
    err = capsys.readouterr().err
    assert "compressed with model" in err and len(err.strip().splitlines()) == 1
    # not an llmzip file
    bogus = tmp_path / "bogus.llmz"
    bogus.write_bytes(b"hello, I am not compressed")
    assert main(["decompress", *_args(llama_dir, "-c", str(bogus))]) == 1
    assert "not an llmzip file" in capsys.readouterr().err
    # unknown suffix, missing input, usage errors
    assert main(["decompress", *_args(llama_dir, str(text_file))]) == 1
    assert main(["compress", *_args(llama_dir, str(tmp_path / "missing"))]) == 1
    assert main(["compress", *_args(llama_dir, "-o", "x", str(text_file), str(text_file))]) == 2
    assert main(["compress", *_args(llama_dir, "--context", "0", str(text_file))]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["compress", "--no-such-option"])
    assert exc.value.code == 2
    # input and output the same file
    assert main(["compress", *_args(llama_dir, "-f", "-o", str(text_file), str(text_file))]) == 1
    assert "same file" in capsys.readouterr().err


def test_info(llama_dir, text_file, capsys):
    assert main(["compress", *_args(llama_dir, "-k", str(text_file))]) == 0
    capsys.readouterr()
    assert main(["info", str(text_file.with_name("alice.txt.llmz"))]) == 0
    out = capsys.readouterr().out
    for field in ("model", "original", "500 bytes", "bits/byte", "windows of 1024 tokens, 512 of them carried context", "quantizer int-v1", "engine portable-v1", "device any"):
        assert field in out


def test_stdin_to_stdout_and_report(llama_dir, alice, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "llmzip.cli"]
    comp = subprocess.run(cmd + ["compress", "-v", "--model", str(llama_dir), "-"], input=alice[:300],
                          capture_output=True, env=env, check=True)
    assert comp.stdout.startswith(b"\x89LLZ")
    assert b"bits/byte" in comp.stderr and b"cross-entropy" in comp.stderr
    dec = subprocess.run(cmd + ["decompress", "--model", str(llama_dir)], input=comp.stdout,
                         capture_output=True, env=env, check=True)
    assert dec.stdout == alice[:300]
    bad = subprocess.run(cmd + ["decompress", "--model", str(llama_dir)], input=comp.stdout[:-7],
                         capture_output=True, env=env)
    assert bad.returncode == 1 and b"Traceback" not in bad.stderr and b"truncated" in bad.stderr


def test_test_command_checks_and_writes_nothing(llama_dir, text_file, tmp_path, capsys):
    assert main(["compress", *_args(llama_dir, "-k", str(text_file))]) == 0
    packed = text_file.with_name("alice.txt.llmz")
    listing = sorted(tmp_path.iterdir())
    capsys.readouterr()
    assert main(["test", "-v", "--model", str(llama_dir), str(packed)]) == 0  # gzip -tv
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("alice.txt.llmz: OK (")
    assert sorted(tmp_path.iterdir()) == listing  # nothing written, the input kept
    # a byte flipped mid-file: refused in one line, exit 1, the next file still tested, nothing written
    broken = tmp_path / "broken.llmz"
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0x10
    broken.write_bytes(bytes(data))
    assert main(["t", *_args(llama_dir, str(broken), str(packed))]) == 1  # the alias; the good file still tested
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llmzip: ") and "broken.llmz" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in listing] + ["broken.llmz"])
