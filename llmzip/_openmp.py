"""Make torch's waiting CPU threads sleep instead of spinning; imported before anything loads torch.

torch's CPU threads are OpenMP threads, and OpenMP (libgomp in torch's Linux wheels) lets a thread
that has finished its share of a parallel region spin for a few milliseconds before it sleeps. One
process alone gains a little from that (up to about a tenth of its time); two llmzip processes side
by side burn the cores each other needs. On a 2-core machine each of two concurrent runs of the
default model took 3.5 times as long as one run alone (2.2 times with the transformers engine; 8
times in the first report, on 1 KiB), and 1.3 times with waiting threads asleep: bench/concurrency.py
measures it, bench/RESULTS.md has the numbers.

OpenMP reads OMP_WAIT_POLICY once, when torch loads it, so this must run before the first
`import torch`: `llmzip/__init__.py` imports it first. A program that imported torch before llmzip
has fixed its threads already, and the variable is then left alone rather than set to no effect
(its child processes would inherit it). A value the user set always wins. How threads wait never
changes what they compute: files are bit-identical either way.
"""
from __future__ import annotations

import os
import sys

WAIT_POLICY = "PASSIVE"

if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
