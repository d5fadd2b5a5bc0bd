"""torch's CPU threads spin only briefly when they wait, so that llmzip processes can share a machine."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _openmp_spin_count(code: str, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra, OMP_DISPLAY_ENV="VERBOSE")  # libgomp prints its settings as torch loads it
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stderr.decode().splitlines():
        if "GOMP_SPINCOUNT" in line:
            return line.split("=", 1)[1].strip().strip("'")
    pytest.skip("torch's OpenMP runtime here is not libgomp, which alone reports its spin count")


def test_waiting_threads_spin_briefly():
    """Importing llmzip before torch makes OpenMP threads spin llmzip's short count before they
    sleep, which lets two llmzip processes share a machine (bench/concurrency.py); a user's setting
    of either variable wins, and a program that loaded torch first keeps its own."""
    from llmzip import _openmp

    assert _openmp_spin_count("import llmzip") == _openmp.SPIN_COUNT
    assert int(_openmp.SPIN_COUNT) < 300_000  # far below OpenMP's default, which starves a second process
    assert _openmp_spin_count("import llmzip", OMP_WAIT_POLICY="PASSIVE") == "0"
    assert int(_openmp_spin_count("import llmzip", OMP_WAIT_POLICY="ACTIVE")) > 300_000
    assert _openmp_spin_count("import llmzip", GOMP_SPINCOUNT="77") == "77"
    assert _openmp_spin_count("import torch, llmzip, os; assert 'OMP_WAIT_POLICY' not in os.environ") == "300000"
