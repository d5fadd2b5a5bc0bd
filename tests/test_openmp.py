"""torch's CPU threads sleep when they wait, so that llmzip processes can share a machine."""
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


def test_waiting_threads_sleep():
    """Importing llmzip before torch makes OpenMP threads sleep when idle (no spinning), which is
    what lets two llmzip processes share a machine (bench/concurrency.py); a user's setting wins,
    and a program that loaded torch first keeps its own."""
    assert _openmp_spin_count("import llmzip") == "0"
    assert _openmp_spin_count("import llmzip", OMP_WAIT_POLICY="ACTIVE") != "0"
    assert _openmp_spin_count("import torch, llmzip, os; assert 'OMP_WAIT_POLICY' not in os.environ") != "0"
