"""Compile every Triton kernel for real GPUs, without one: run by tests/test_kernels_compile.py in a
process without TRITON_INTERPRET (the interpreter never compiles, so it cannot catch what only the
GPU compiler rejects, such as a type it does not lower)."""
from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from llmzip.kernels import integer_linear, integer_quantize, quantize, range_decode


def compile_all(arch: int) -> list[str]:
    target = GPUTarget("cuda", arch, 32)
    done = []
    for vocab in (256, 49152):
        chunk, chunks = range_decode.search_config(vocab)
        sig = {"cdf_ptr": "*i32", "cdf_stride": "i64", "words_ptr": "*i32", "words_stride": "i64",
               "lengths_ptr": "*i64", "state_ptr": "*i64", "token_ptr": "*i64", "rows": "i32",
               "rows_per_stream": "i32", "vocab": "i32", "CHUNK": "constexpr", "CHUNKS": "constexpr"}
        src = ASTSource(fn=range_decode._decode_kernel, signature=sig, constexprs={"CHUNK": chunk, "CHUNKS": chunks})
        triton.compile(src, target=target, options={"num_warps": 4})
        done.append(f"range_decode V={vocab}")
        config = quantize.launch_config(vocab)
        for logits in ("bf16", "fp32"):
            for store_freqs, store_cdf, query in ((True, True, 0), (False, False, 1), (False, True, 0), (False, False, 2)):
                sig = {"logits_ptr": f"*{logits}", "logits_stride": "i64", "freqs_ptr": "*i32", "freqs_stride": "i64",
                       "cdf_ptr": "*i32", "cdf_stride": "i64", "query_ptr": "*i64", "token_ptr": "*i64",
                       "low_ptr": "*i64", "freq_ptr": "*i64", "vocab": "i32", "BLOCK": "constexpr",
                       "STORE_FREQS": "constexpr", "STORE_CDF": "constexpr", "QUERY": "constexpr"}
                constexprs = {"BLOCK": config["BLOCK"], "STORE_FREQS": store_freqs, "STORE_CDF": store_cdf, "QUERY": query}
                src = ASTSource(fn=quantize._quantize_kernel, signature=sig, constexprs=constexprs)
                triton.compile(src, target=target, options={"num_warps": config["num_warps"], "enable_fp_fusion": False})
                done.append(f"quantize V={vocab} {logits} freqs={store_freqs} cdf={store_cdf} query={query}")
    sig = {"logits_ptr": "*i64", "logits_stride": "i64", "table_ptr": "*i64", "freqs_ptr": "*i64",
           "freqs_stride": "i64", "vocab": "i32", "BLOCK": "constexpr"}
    triton.compile(ASTSource(fn=integer_quantize._int_quantize_kernel, signature=sig,
                             constexprs={"BLOCK": integer_quantize.BLOCK}), target=target, options={"num_warps": 4})
    done.append("integer quantize")
    sig = {"cdf_ptr": "*i32", "cdf_stride": "i64", "target_ptr": "*i64", "token_ptr": "*i64", "rows": "i32",
           "vocab": "i32", "steps": "i32", "BLOCK_ROWS": "constexpr"}
    triton.compile(ASTSource(fn=quantize._search_kernel, signature=sig, constexprs={"BLOCK_ROWS": 64}),
                   target=target, options={"num_warps": 2})
    done.append("search")
    sig = {"x_ptr": "*i8", "x_stride": "i64", "w_ptr": "*i8", "w_stride": "i64", "row_mantissa_ptr": "*i64",
           "row_half_ptr": "*i64", "row_shift_ptr": "*i64", "column_mantissa_ptr": "*i64", "bias_ptr": "*i64",
           "out_ptr": "*i64", "out_stride": "i64", "rows": "i32", "columns": "i32", "terms": "i32",
           "HALVES": "constexpr", "HAS_BIAS": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr",
           "BLOCK_K": "constexpr"}
    for rows in (1, 4096):  # a decoding step's thin tile and a full-sequence forward's
        for halves in (False, True):
            constexprs = {"HALVES": halves, "HAS_BIAS": halves, **integer_linear.block_config(rows)}
            triton.compile(ASTSource(fn=integer_linear._int_linear_kernel, signature=sig, constexprs=constexprs),
                           target=target, options={"num_warps": 4})
            done.append(f"integer linear rows={rows} halves={halves}")
    return done


if __name__ == "__main__":
    for arch in map(int, sys.argv[1:] or ["90"]):
        for name in compile_all(arch):
            print(f"sm_{arch}: {name}")
