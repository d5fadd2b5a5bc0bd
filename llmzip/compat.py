"""Whether a file can be decoded here: the checks of its header before any block is decoded.

A file decodes only where the decoder computes the encoder's frequencies bit for bit. A portable
file binds only what decides its integers: the model (its fingerprint), the BOS id, the coder and
the precision. A float engine's file also binds the dtype, device class, thread count, attention,
quantizer and engine it was made with. Each refusal says what to do; a field no encoder writes
(a context past the model's positions, a batch past MAX_BATCH) is a corrupted file.
"""
from __future__ import annotations

import logging

import torch

from .coder import CODER_ID
from .container import NO_MIXER, Header
from .errors import FormatError, ModelMismatchError, UnsupportedParameterError
from .inference import ENGINES, pick_engine
from .models import LoadedModel, software_versions
from .portable import PORTABLE_ENGINE, portable_problem
from .quantize import INTEGER_QUANTIZER, PRECISION, check_quantizer_id

log = logging.getLogger(__name__)

# Windows stepped together: the decoder holds batch x vocabulary logits, so a file may not ask for
# more (a 1 MiB block has only about 500 windows of 512 tokens anyway).
MAX_BATCH = 1 << 12
PORTABLE_DEVICE_CLASS = "any"  # what a portable file records: no device, dtype or thread count binds it
PORTABLE_ATTENTION = "integer"


def check_header(header: Header, m: LoadedModel) -> None:
    """Refuse, with what to do, anything in the file that model `m` on this machine cannot reproduce."""
    size = len(header.model_fingerprint)  # 16 bytes in version 1 files, 8 in version 2, 4 since
    tokenizer_size = len(header.tokenizer_fingerprint)  # 0 since version 3: the model's covers it
    if (header.model_fingerprint != m.fingerprint[:size]
            or header.tokenizer_fingerprint != m.table.fingerprint[:tokenizer_size]):
        named = f"{header.model_name!r}, fingerprint" if header.model_name else "fingerprint"
        raise ModelMismatchError(
            f"this file was compressed with model {named} {header.model_fingerprint.hex()[:12]}, not with "
            f"{m.name!r} (fingerprint {m.fingerprint[:size].hex()}); pass that model with --model")
    wrong = []
    if header.bos_id != m.bos_id:
        wrong.append(f"BOS id {header.bos_id} (model has {m.bos_id})")
    if header.precision != PRECISION:
        wrong.append(f"precision {header.precision} (this llmzip codes {PRECISION})")
    if header.coder != CODER_ID:
        wrong.append(f"coder {header.coder!r} (this install has {CODER_ID!r})")
    if wrong:
        raise UnsupportedParameterError("cannot decode this file: it needs " + "; ".join(wrong))
    if header.software and header.engine != PORTABLE_ENGINE and header.software != software_versions():
        log.warning("file written with %s, decoding with %s: if decoding fails, use those versions",
                    header.software, software_versions())
    # The encoder refuses these too: a file that asks for more is corrupted or hostile, and would
    # otherwise index past the position table or allocate batch x vocabulary logits.
    limit = getattr(m.config, "max_position_embeddings", None)
    if limit and header.context > int(limit):
        raise FormatError(f"corrupted file: context {header.context} exceeds this model's {limit} positions")
    if header.engine == PORTABLE_ENGINE:
        _check_portable(header, m)
        return
    if header.carry or header.lane_size != header.context:
        raise FormatError(f"corrupted file: engine {header.engine!r} carries no context between windows")
    if header.mixer != NO_MIXER:
        raise FormatError(f"corrupted file: engine {header.engine!r} mixes in no second model")
    if header.dtype != m.dtype_name:
        raise UnsupportedParameterError(
            f"this file was compressed in {header.dtype}; decompress with --dtype {header.dtype}")
    if header.device_class != m.device_class:
        raise UnsupportedParameterError(
            f"this file was compressed on {header.device_class}, and this machine ({m.device_class}) "
            "cannot reproduce its numbers exactly; decompress it on the same kind of device")
    if header.attention != m.attention:
        raise UnsupportedParameterError(
            f"this file was compressed with {header.attention!r} attention, this model runs {m.attention!r}")
    check_quantizer_id(header.quantizer, m.vocab_size)
    if header.engine not in ENGINES:
        raise UnsupportedParameterError(
            f"this file was coded with engine {header.engine!r}, unknown to this llmzip: upgrade llmzip")
    pick_engine(header.engine, m.model, m.device)  # refuses an engine this model or device cannot run
    if header.batch > MAX_BATCH:
        raise FormatError(f"corrupted file: batch {header.batch} is above the limit {MAX_BATCH}")


def _check_portable(header: Header, m: LoadedModel) -> None:
    """A portable file binds no device, dtype, thread count or batch: only what decides its integers."""
    problem = portable_problem(m.config)
    if problem:
        raise UnsupportedParameterError(f"this file was coded by the portable engine, but {problem}")
    if m.dtype != torch.float32:
        raise UnsupportedParameterError(
            "this file was coded by the portable engine from float32 weights; decompress with --dtype float32")
    if header.quantizer != INTEGER_QUANTIZER or header.attention != PORTABLE_ATTENTION:
        raise FormatError(f"corrupted file: a portable file names quantizer {header.quantizer!r} "
                          f"and attention {header.attention!r}")
    if header.windows_per_stream() > MAX_BATCH:
        raise FormatError(f"corrupted file: {header.windows_per_stream()} windows per stream is above {MAX_BATCH}")
