"""Next-token logits for a batch of windows, one step at a time: the model side of the codec loop.

The codec feeds one token per window per step and needs the logits of the next one. Two engines
do that; which one ran is recorded in the file header, because their logits differ in the last
bits and the decoder must run the same one:

- "transformers": the model's own forward with its dynamic KV cache. Any causal LM works.
- "static-v1": a lean forward for Llama-architecture models (SmolLM2, Llama, most small LMs)
  over a preallocated KV cache, in the manner of gpt-fast. Every step has fixed shapes, so on a GPU
  each step is one CUDA-graph replay ("static-v1+graphs") instead of hundreds of kernel launches
  from Python: a 135M-parameter model is otherwise bound by Python, not by the GPU.

Attention reads the cache only up to the next power of two above the current position (one graph
per such span), so early steps do not pay for the whole context.
"""
from __future__ import annotations

import contextlib
import inspect
import math
from typing import Iterator, Protocol

import torch
import torch.nn.functional as F

from .errors import UnsupportedParameterError

TRANSFORMERS_ENGINE = "transformers"
STATIC_ENGINE = "static-v1"
GRAPHS_SUFFIX = "+graphs"
ENGINES = (TRANSFORMERS_ENGINE, STATIC_ENGINE, STATIC_ENGINE + GRAPHS_SUFFIX)
_MIN_SPAN = 16
_STATIC_ROPE_TYPES = ("default", "linear", "llama3")


@contextlib.contextmanager
def fixed_numerics() -> Iterator[None]:
    """PyTorch's default GPU matmul switches while coding, whatever the calling program set.

    TF32 and reduced-precision reductions change the last bits of a matrix product; a program that
    turned TF32 on (for training, say) must not encode files that a plain decoder cannot reproduce.
    (The portable engine does not depend on them: see `portable.arith.int8_matmul`.)
    """
    matmul = torch.backends.cuda.matmul
    names = ("allow_tf32", "allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction")
    saved = {name: getattr(matmul, name) for name in names}
    try:
        matmul.allow_tf32 = False
        matmul.allow_fp16_reduced_precision_reduction = True
        matmul.allow_bf16_reduced_precision_reduction = True
        yield
    finally:
        for name, value in saved.items():
            setattr(matmul, name, value)


class Stepper(Protocol):
    """Runs `rows` windows in lockstep; a new stepper (or `reset`) starts every window at position 0."""

    def step(self, feed: torch.Tensor) -> torch.Tensor:
        """Logits (rows, V) for the next token, given this step's token (rows, 1) of every window."""
        ...


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword the model's forward takes its KV cache by, found in its signature.

    transformers 5.24 renamed `past_key_values` to `cache`, in the forward's arguments and in its
    outputs; the old name still works there but warns on every call (a FutureWarning on stderr, twice
    per CLI run) and goes in 5.40. Every release from 4.56 (the oldest pyproject.toml allows) to 5.23
    knows only `past_key_values`. Asking the signature, not the version number, also serves a model
    class that a release left on the old name.
    """
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # no introspectable signature: the name every release knows
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


class TransformersStepper:
    """The model's own forward with its dynamic cache."""

    def __init__(self, model: torch.nn.Module, rows: int):
        self.model, self.rows, self.cache = model, rows, None
        self.cache_keyword = cache_keyword(model)

    def step(self, feed: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=feed, use_cache=True, **{self.cache_keyword: self.cache})
        # Outputs follow the same rename; reading the old name logs a deprecation from 5.24 on.
        self.cache = out["cache"] if "cache" in out else out["past_key_values"]
        return out.logits[:, -1, :]


def static_engine_problem(model: torch.nn.Module) -> str | None:
    """Why the static engine cannot run this model exactly as transformers defines it (None: it can)."""
    config = model.config
    if getattr(config, "model_type", None) != "llama":
        return f"the static engine runs Llama-architecture models, not {getattr(config, 'model_type', '?')!r}"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "the static engine does not implement attention or MLP biases"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in _STATIC_ROPE_TYPES:
        return f"the static engine does not implement {rope_type!r} rotary embeddings"
    return None


class StaticLlamaStepper:
    """A Llama forward over a preallocated KV cache, captured as CUDA graphs on a GPU.

    Weights are the loaded model's own tensors (Q/K/V and gate/up fused into one matrix each, a
    copy); nothing here changes what the model computes, only how many launches it takes.
    """

    def __init__(self, model: torch.nn.Module, rows: int, context: int, graphs: bool):
        problem = static_engine_problem(model)
        if problem:
            raise UnsupportedParameterError(problem)
        config = model.config
        inner = model.model
        self.rows, self.context = rows, context
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.embed = inner.embed_tokens.weight
        self.final_norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append((
                layer.input_layernorm.weight,
                torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
                attn.o_proj.weight,
                layer.post_attention_layernorm.weight,
                torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                mlp.down_proj.weight,
            ))
        self.act = inner.layers[0].mlp.act_fn
        # Rotary tables as transformers computes them: float32 angles, cos/sin cast to the dtype.
        rotary = inner.rotary_emb
        angles = torch.arange(context, device=self.device, dtype=torch.float32)[:, None] * rotary.inv_freq.float()
        angles = torch.cat([angles, angles], dim=-1)
        self.cos = (angles.cos() * rotary.attention_scaling).to(self.dtype)
        self.sin = (angles.sin() * rotary.attention_scaling).to(self.dtype)
        shape = (len(self.layers), rows, self.kv_heads, context, self.head_dim)
        self.keys = torch.zeros(shape, device=self.device, dtype=self.dtype)
        self.values = torch.zeros(shape, device=self.device, dtype=self.dtype)
        # Static inputs of the step: the fed tokens and the position (a tensor, so graphs can replay).
        self.feed = torch.zeros((rows, 1), device=self.device, dtype=torch.long)
        self.position = torch.zeros((), device=self.device, dtype=torch.long)
        self.step_index = 0
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] | None = {} if graphs else None
        if graphs and self.device.type != "cuda":
            raise UnsupportedParameterError("CUDA graphs need a CUDA device")

    def reset(self) -> None:
        """Start every window again at position 0 (the cache is cleared, so stale entries never count)."""
        self.keys.zero_()
        self.values.zero_()
        self.step_index = 0

    def _span(self, position: int) -> int:
        return min(self.context, max(_MIN_SPAN, 1 << position.bit_length()))  # > position

    def step(self, feed: torch.Tensor) -> torch.Tensor:
        if self.step_index >= self.context:
            raise ValueError(f"a window of the static engine holds at most {self.context} tokens")
        span = self._span(self.step_index)
        self.feed.copy_(feed)
        self.position.fill_(self.step_index)
        self.step_index += 1
        if self.graphs is None:
            return self._forward(span)
        if span not in self.graphs:
            self.graphs[span] = self._capture(span)
        graph, logits = self.graphs[span]
        graph.replay()
        return logits

    def _capture(self, span: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Warm up on a side stream (as PyTorch's graph recipe asks), then record one step. Both run
        # on the current cache and position, so the live entry is rewritten with the same values.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._forward(span)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self._forward(span)
        return graph, logits

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def _forward(self, span: int) -> torch.Tensor:
        rows, heads, kv_heads, dim = self.rows, self.heads, self.kv_heads, self.head_dim
        position = self.position.view(1)
        cos = self.cos.index_select(0, position).view(1, 1, 1, dim)
        sin = self.sin.index_select(0, position).view(1, 1, 1, dim)
        visible = (torch.arange(span, device=self.device) <= self.position).view(1, 1, 1, span)
        x = F.embedding(self.feed, self.embed)  # (rows, 1, hidden)
        for i, (norm1, qkv_w, o_w, norm2, gate_up_w, down_w) in enumerate(self.layers):
            qkv = F.linear(self._norm(x, norm1), qkv_w)
            q, k, v = qkv.split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)
            q = self._rotate(q.view(rows, 1, heads, dim).transpose(1, 2), cos, sin)
            k = self._rotate(k.view(rows, 1, kv_heads, dim).transpose(1, 2), cos, sin)
            v = v.view(rows, 1, kv_heads, dim).transpose(1, 2)
            self.keys[i].index_copy_(2, position, k)
            self.values[i].index_copy_(2, position, v)
            attn = F.scaled_dot_product_attention(
                q, self.keys[i, :, :, :span], self.values[i, :, :, :span], attn_mask=visible,
                scale=1.0 / math.sqrt(dim), enable_gqa=kv_heads != heads)
            x = x + F.linear(attn.transpose(1, 2).reshape(rows, 1, heads * dim), o_w)
            gate, up = F.linear(self._norm(x, norm2), gate_up_w).chunk(2, dim=-1)
            x = x + F.linear(self.act(gate) * up, down_w)
        return F.linear(self._norm(x, self.final_norm), self.lm_head)[:, -1, :]


def pick_engine(name: str, model: torch.nn.Module, device: torch.device) -> str:
    """The engine id a file records: "auto" takes the static engine with graphs on a GPU when the
    architecture allows it, and transformers otherwise."""
    if name == "auto":
        if device.type == "cuda" and static_engine_problem(model) is None:
            return STATIC_ENGINE + GRAPHS_SUFFIX
        return TRANSFORMERS_ENGINE
    if name == "static":
        name = STATIC_ENGINE + (GRAPHS_SUFFIX if device.type == "cuda" else "")
    if name not in ENGINES:
        raise UnsupportedParameterError(f"unknown engine {name!r}; choose auto, static or one of {', '.join(ENGINES)}")
    if name != TRANSFORMERS_ENGINE:
        problem = static_engine_problem(model)
        if problem:
            raise UnsupportedParameterError(problem + "; use the transformers engine")
        if name.endswith(GRAPHS_SUFFIX) and device.type != "cuda":
            raise UnsupportedParameterError(f"engine {name!r} needs a CUDA GPU")
    return name


def make_stepper(engine: str, model: torch.nn.Module, rows: int, context: int) -> Stepper:
    if engine == TRANSFORMERS_ENGINE:
        return TransformersStepper(model, rows)
    if engine in ENGINES:
        return StaticLlamaStepper(model, rows, context, graphs=engine.endswith(GRAPHS_SUFFIX))
    raise UnsupportedParameterError(f"this file was coded with engine {engine!r}, unknown to this llmzip")
