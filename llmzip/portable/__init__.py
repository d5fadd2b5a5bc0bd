"""The portable engine: a model evaluated in exact integer arithmetic, so that a file decodes on
any CPU or GPU, with any thread count and batch, and a full-sequence forward (compression) gives
bit for bit the numbers of step-by-step decoding. `arith` holds the exact primitives, `llama`
the Llama-architecture forward built on them (`host`: its decoding step in numpy on the CPU);
see `llama`'s docstring for the argument."""
from .llama import KVCache, PortableLlama, portable_problem

PORTABLE_ENGINE = "portable-v1"  # the engine id a file header records

__all__ = ["KVCache", "PortableLlama", "portable_problem", "PORTABLE_ENGINE"]
