"""The device range decoder against constriction, the oracle (in Triton's interpreter without a GPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import constriction
from llmzip.coder import StreamEncoder
from llmzip.kernels.range_decode import RangeDecoders, search_config
from llmzip.quantize import TOTAL

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FAMILY = constriction.stream.model.Categorical(perfect=False)


def _random_tables(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    """Exact frequency rows (each >= 1, summing to 2**24): peaked, flat, one-hot and heavy-tailed."""
    out = np.empty((rows, vocab), dtype=np.int64)
    for r in range(rows):
        kind = rng.integers(4)
        if kind == 0:
            p = rng.dirichlet(np.full(vocab, 0.05))
        elif kind == 1:
            p = np.full(vocab, 1.0 / vocab)
        elif kind == 2:
            p = np.zeros(vocab)
            p[rng.integers(vocab)] = 1.0
        else:
            p = rng.pareto(0.5, vocab) + 1e-12
            p /= p.sum()
        f = np.floor(p * (TOTAL - vocab)).astype(np.int64) + 1
        f[np.argmax(f)] += TOTAL - f.sum()
        out[r] = f
    return out


def _encode(tables: list[np.ndarray], tokens: list[np.ndarray], per_stream: int) -> list[bytes]:
    """Streams as the codec writes them: stream s codes rows [s*per, (s+1)*per) step by step."""
    rows = tables[0].shape[0]
    streams = []
    for first in range(0, rows, per_stream):
        encoder = StreamEncoder()
        for table, token in zip(tables, tokens):
            part = slice(first, min(first + per_stream, len(token)))
            if part.start >= part.stop:
                continue
            freq = table[part][np.arange(part.stop - part.start), token[part]]
            low = np.cumsum(table[part], axis=1)[np.arange(part.stop - part.start), token[part]] - freq
            encoder.push(low, freq)
        streams.append(encoder.finish())
    return streams


@pytest.mark.parametrize("vocab,rows,per_stream", [(3, 1, 1), (300, 5, 2), (1000, 4, 4)])
def test_decodes_what_constriction_encoded(vocab, rows, per_stream):
    rng = np.random.default_rng(vocab)
    steps = 24
    tables = [_random_tables(rng, rows, vocab) for _ in range(steps)]
    # Windows finish at different steps (the running rows are a prefix), like a block's last batch.
    running = [rows if t < steps - 6 else max(1, rows - 1) for t in range(steps)]
    tokens = []
    for t, table in enumerate(tables):
        # Mostly likely tokens, sometimes a frequency-1 one: renormalizations of every kind.
        pick = [rng.choice(vocab, p=row / TOTAL) if rng.random() < 0.7 else int(np.argmin(row)) for row in table]
        tokens.append(np.array(pick[: running[t]]))
    streams = _encode(tables, tokens, per_stream)
    decoder = RangeDecoders(streams, per_stream, DEVICE)
    for t, table in enumerate(tables):
        cdf = torch.tensor(np.cumsum(table, axis=1), dtype=torch.int32, device=DEVICE)
        got = decoder.decode(cdf, running[t]).cpu().numpy()
        np.testing.assert_array_equal(got, tokens[t], err_msg=f"step {t}")
    assert not decoder.failed()


def test_matches_constriction_on_arbitrary_words():
    """On words no encoder wrote, the kernel follows constriction symbol for symbol, and flags
    invalid data where constriction raises."""
    rng = np.random.default_rng(7)
    vocab, steps = 50, 30
    flagged = 0
    for trial in range(7):
        words = rng.integers(0, 2**32, size=int(rng.integers(1, 6)), dtype=np.uint64).astype(np.uint32)
        if trial == 6:  # a point at the very top of the range: no table can hold its target
            words = np.array([0xFFFFFFFF, 0xFFFFFFFF, 5], dtype=np.uint32)
        tables = _random_tables(rng, steps, vocab)
        oracle = constriction.stream.queue.RangeDecoder(words)
        expected, failed_at = [], None
        for t in range(steps):
            try:
                expected.append(int(oracle.decode(FAMILY, np.ascontiguousarray((tables[t] - 1)[None].astype(np.float32)))[0]))
            except (AssertionError, ValueError, RuntimeError):
                failed_at = t
                break
        decoder = RangeDecoders([words.astype("<u4").tobytes()], 1, DEVICE)
        for t in range(steps if failed_at is None else failed_at):
            cdf = torch.tensor(np.cumsum(tables[t : t + 1], axis=1), dtype=torch.int32, device=DEVICE)
            assert int(decoder.decode(cdf, 1)[0]) == expected[t], f"trial {trial} step {t}"
        assert not decoder.failed()
        if failed_at is not None:
            cdf = torch.tensor(np.cumsum(tables[failed_at : failed_at + 1], axis=1), dtype=torch.int32, device=DEVICE)
            decoder.decode(cdf, 1)
            assert decoder.failed()
            flagged += 1
    assert flagged, "no trial reached invalid data: the error path went untested"


def test_search_config_covers_every_vocabulary():
    for vocab in (3, 256, 49152, 151936, 262144):
        chunk, chunks = search_config(vocab)
        assert chunk * chunks >= vocab and chunk * (chunks // 2) < vocab + chunk


def test_refuses_more_rows_than_streams():
    decoder = RangeDecoders([b"\x00" * 8], 2, DEVICE)
    cdf = torch.tensor(np.cumsum(np.full((3, 4), TOTAL // 4), axis=1), dtype=torch.int32, device=DEVICE)
    with pytest.raises(ValueError, match="streams"):
        decoder.decode(cdf, 3)
