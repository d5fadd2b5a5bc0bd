"""What online adaptations of the LLM's predictions could gain, measured ideally (float, no coder).

    python bench/ideal_adaptation.py ../shared/corpus/alice29.txt --bytes 40000 --threads 2 \
        --out bench/results/ideal_adaptation.json

The default model's float32 logits for every token of the slice (windows of --context tokens,
each after --carry tokens of carried context, as the levels lay them out), then the cross-entropy
in bits per byte of: the LLM alone; the LLM at a fixed temperature, the best in hindsight of a
grid; the logit bias of `llmzip.adapt` (one bias per token, a gradient step on the full softmax)
at adapt-v1's rate (0.2 nats) and at adapt-v2's (0.5 nats / sqrt(n + 1) for a token seen n times
before); an online temperature (1/T moved by the gradient of each coded token's log-likelihood);
and the bias with it. It answers whether a part is worth building before it is built in
exact integers: a part that gains little here gains no more in llmzip's integers.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import llmzip  # noqa: F401,I001  (sets the thread wait policy before torch loads)
import torch
from llmzip.adapt import COUNTED_RATE, STEP
from llmzip.measure.bench import run_record
from llmzip.models import load_model
from llmzip.portable.llama import FRACTION

BIAS_RATE = STEP / (1 << FRACTION) * math.log(2)  # adapt-v1's step in nats (0.2)
COUNTED_BIAS_RATE = COUNTED_RATE / (1 << FRACTION) * math.log(2)  # adapt-v2's C in nats (0.5)
TEMPERATURES = (0.9, 0.95, 1.0, 1.05, 1.1, 1.15)
TEMPERATURE_RATES = (0.0005, 0.002)


def window_logits(model, ids: list[int], bos: int, context: int, carry: int) -> torch.Tensor:
    """float32 logits (tokens, V) predicting every token, windows of `context` tokens after BOS,
    each window after the first coding context - carry new tokens after carry carried ones."""
    out = torch.empty((len(ids), model.get_output_embeddings().weight.shape[0]), dtype=torch.float32)
    position = 0
    with torch.inference_mode():
        while position < len(ids):
            start = max(0, position - carry)
            end = min(len(ids), start + context)
            inputs = torch.tensor([[bos] + ids[start:end]])
            out[position:end] = model(inputs).logits[0, position - start : -1]  # row j predicts ids[start + j]
            position = end
    return out


def online_bits(logits: torch.Tensor, targets: torch.Tensor, bias_rate: float, temperature_rate: float,
                counted: bool = False) -> tuple[float, float]:
    """Bits of the targets, token by token, under softmax(logits / T + b) with the bias b and 1/T
    learned online after each token (`counted`: the bias's rate per token, bias_rate / sqrt(n + 1)
    for a token seen n times before); and the final 1/T."""
    bias = torch.zeros(logits.shape[1])
    seen = torch.zeros(logits.shape[1])
    inverse_temperature, nats = 1.0, 0.0
    for row, target in zip(logits, targets.tolist()):
        log_p = torch.log_softmax(row * inverse_temperature + bias, dim=-1)
        nats -= float(log_p[target])
        p = log_p.exp_()
        if temperature_rate:
            gradient = float(row[target] - (p * row).sum())
            inverse_temperature = min(max(inverse_temperature + temperature_rate * gradient, 0.5), 2.0)
        if bias_rate and counted:
            rate = bias_rate / (seen + 1).sqrt_()
            bias.sub_(p.mul_(rate))
            bias[target] += rate[target]
            seen[target] += 1
        elif bias_rate:
            bias.sub_(p, alpha=bias_rate)
            bias[target] += bias_rate
    return nats / math.log(2), inverse_temperature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--bytes", type=int, default=40000, help="the first BYTES bytes (0: the whole file)")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--carry", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record = run_record(args.threads)
    data = args.file.read_bytes()
    data = data[: args.bytes] if args.bytes else data
    loaded = load_model(None)
    ids, _ = loaded.tokenizer.encode(data)
    started = time.perf_counter()
    logits = window_logits(loaded.model, ids, loaded.bos_id, args.context, args.carry)
    targets = torch.tensor(ids)
    rows: list[dict] = []

    def report(name: str, bits: float, **extra) -> None:
        rows.append({"name": name, "bits_per_byte": bits / len(data), **extra})
        print(f"{name:50s} {bits / len(data):.4f} bits/byte" + "".join(f"  {k} {v:.3f}" for k, v in extra.items()),
              flush=True)

    for temperature in TEMPERATURES:
        nats = 0.0
        for first in range(0, len(ids), 4096):  # in row blocks: no second copy of all the logits
            log_p = torch.log_softmax(logits[first : first + 4096] / temperature, dim=-1)
            nats -= float(log_p.gather(1, targets[first : first + 4096, None]).sum())
        report(f"LLM at temperature {temperature}", nats / math.log(2))
    configs = ([(BIAS_RATE, 0.0, False), (COUNTED_BIAS_RATE, 0.0, True)] + [(0.0, rate, False) for rate in TEMPERATURE_RATES]
               + [(BIAS_RATE, rate, False) for rate in TEMPERATURE_RATES])
    for bias_rate, temperature_rate, counted in configs:
        bits, inverse = online_bits(logits, targets, bias_rate, temperature_rate, counted)
        parts = ([f"bias {bias_rate:.2f} nats" + (" / sqrt(n + 1)" if counted else "")] if bias_rate else []) + \
            ([f"online temperature (rate {temperature_rate})"] if temperature_rate else [])
        report(" + ".join(parts), bits, final_inverse_temperature=inverse)
    record.update({"file": args.file.name, "bytes": len(data), "tokens": len(ids), "context": args.context,
                   "carry": args.carry, "seconds": time.perf_counter() - started, "rows": rows})
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
