"""Let torch's waiting CPU threads spin only briefly before they sleep; imported before anything
loads torch.

torch's CPU threads are OpenMP threads (libgomp in torch's Linux wheels). A thread that has
finished its share of a parallel region waits for the next one, and how long it spins before it
sleeps decides two things that pull apart:
- one process alone: the portable engine runs thousands of small tensor operations per window,
  and a thread that sleeps at once (OMP_WAIT_POLICY=PASSIVE) must be woken for each one, which
  costs it much of its second core;
- several processes: OpenMP's default spin of a few milliseconds (GOMP_SPINCOUNT 300,000) makes
  two llmzip processes on a 2-core machine burn the cores each other needs.
A spin of 1,000 rounds (libgomp's scale: about 10 microseconds) covers the gap between two tensor
operations and is over before it takes much from another process. Measured on 2 cores
(bench/concurrency.py, 4 KiB, the codec's own seconds): alone 7.6 s, against 9.6 s sleeping at once
and 7.1 s with OpenMP's default; each of two side by side 12.6 s, against 11.9 s and 38.0 s.

OpenMP reads these variables once, when torch loads it, so this must run before the first
`import torch`: `llmzip/__init__.py` imports it first. A program that imported torch before llmzip
has fixed its threads already, and the variables are then left alone rather than set to no effect
(its child processes would inherit them). A value the user set for either variable wins, and then
llmzip sets neither (GOMP_SPINCOUNT would override OMP_WAIT_POLICY=ACTIVE). How threads wait
never changes what they compute: files are bit-identical either way.
"""
from __future__ import annotations

import os
import sys

WAIT_POLICY = "PASSIVE"
SPIN_COUNT = "1000"

if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & os.environ.keys():
    os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
