"""Triton kernels of llmzip, installed as the package ``llmzip.kernels``.

``llmzip.kernels.quantize`` fuses the quantizer "triton-v1" (logits -> softmax -> integer frequencies
summing to 2**24 -> cumulative table) into one pass-structured kernel per row, plus the lookups the
range coder needs (a token's interval for the encoder, the token holding a target for the decoder),
so that whole tables never have to travel to the host. This ``__init__`` deliberately imports nothing:
llmzip must import on machines without Triton, and Triton decides at decoration time whether its
kernels are compiled for a GPU or run by its CPU interpreter (``TRITON_INTERPRET=1``), so the kernel
module is only imported when the "triton-v1" quantizer is actually used.

The one exception below: run from a checkout's root (``python -m pytest``, ``python -c``), Python
finds this folder as a top-level package ``kernels``, a name that belongs to Hugging Face's kernel
hub, which transformers (5.25 on) requires and imports. Imported under that name, this file hands
the name over to whatever else on ``sys.path`` provides it, and fails as if this folder were not
there when nothing does.
"""
if __name__ == "kernels":
    import importlib.machinery as _machinery
    import importlib.util as _util
    import os as _os
    import sys as _sys

    _checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    _elsewhere = [entry for entry in _sys.path if _os.path.abspath(entry or _os.curdir) != _checkout]
    _spec = _machinery.PathFinder.find_spec("kernels", _elsewhere)
    if _spec is None or _spec.loader is None:
        raise ModuleNotFoundError("No module named 'kernels'", name="kernels")
    _module = _util.module_from_spec(_spec)
    _sys.modules["kernels"] = _module  # the import system returns what sys.modules holds after this file
    _spec.loader.exec_module(_module)
