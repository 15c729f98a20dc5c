#!/usr/bin/env bash
# GPU check: on a machine with a CUDA GPU and PyTorch, install the OpenMMLab
# stack from local files, build mmcv 2.1.0 with CUDA ops, run the CUDA tests, then the
# inference, training and memory benchmarks on the GPU (absolute times and the same ratios
# as on the CPU).
#
# Usage (from the repository root, no network needed):
#   bash .ci/gpu_check.sh                   # every step
#   GPU_CHECK_STEPS="tests features" bash .ci/gpu_check.sh   # some steps
#   MMCV_CUDA_OPS=0 bash .ci/gpu_check.sh   # mmcv with CPU ops only (faster build;
#                                                  # the detection heads cannot run on the GPU)
# Steps, in order: tests (the CUDA tests: tests/*/test_*cuda*.py), features
# (feature_extractor.py: extract_feat, and predict with CUDA ops), inference
# (inference.py, the demo grid), train (train_overhead.py, demo and COCO size), memory
# (memory.py, demo and COCO size). Each prints its wall time.
#
# The wheels come from $GPU_CHECK_WHEELS (default .whl/, not tracked): fill it on a machine
# with network access for the GPU machine's Python (here 3.12):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     mmengine==0.10.7 mmdet==3.3.0 mmaction2==1.2.0 mmpretrain==1.2.0 addict yapf termcolor \
#     terminaltables shapely pycocotools importlib_metadata lazy_importer mat4py modelindex \
#     ordered-set platformdirs av pytest pluggy iniconfig pytest-timeout pygments packaging \
#     'setuptools<82'
#   pip download --no-deps --no-build-isolation --no-binary=:all: -d .whl mmcv==2.1.0
# Torch, torchvision, numpy, scipy, opencv and matplotlib are taken from the machine.
# Building mmcv's CUDA ops takes most of the run: with GPU_CHECK_WHEEL_OUT=<dir> the built
# mmcv wheel is also copied there; put it in .whl/ and the next run installs it instead of
# building (the same Python, torch and GPU architecture only).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheels=${GPU_CHECK_WHEELS:-$repo/.whl}
site=${GPU_CHECK_SITE:-/tmp/mutualnet_gpu_site}
steps=" ${GPU_CHECK_STEPS:-tests features inference train memory} "
cuda_ops=${MMCV_CUDA_OPS:-1}
py=${PYTHON:-python3}
log() { printf '[gpu_check] %s\n' "$*"; }
wanted() { [[ $steps == *" $1 "* ]]; }
timed() {  # timed NAME COMMAND...: run a step, print its wall time, go on if it fails
  local start=$SECONDS
  log "step $1"
  if "${@:2}"; then log "step $1 done in $(( SECONDS - start )) s"
  else log "step $1 FAILED (exit $?) after $(( SECONDS - start )) s"; failed+=("$1"); fi
}
failed=()

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
  torch.cuda.get_device_name(0))"

log "installing the wheels from $wheels into $site"
"$py" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
  --upgrade --target "$site" "$wheels"/*.whl
export PYTHONPATH=$site:$repo
# mmcv's ops as built: 'cuda' (NMS runs on a GPU tensor), 'cpu', or 'none'
ops_kind() {
  "$py" - <<'EOF' 2>/dev/null || echo none
import torch
from mmcv.ops import nms
try:
    nms(torch.zeros(1, 4, device='cuda'), torch.ones(1, device='cuda'), 0.5)
    print('cuda')
except Exception:
    print('cpu')
EOF
}
# build_mmcv cuda|cpu: build mmcv 2.1.0 as a wheel with those ops and install it
build_mmcv() {
  local built start=$SECONDS build_env
  if [ "$1" = cuda ]; then
    local arch
    arch=$("$py" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
    log "building mmcv 2.1.0 with CUDA ops for compute capability $arch"
    build_env=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch}")
  else
    log "building mmcv 2.1.0 with CPU ops"
    build_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)  # mmcv builds CUDA ops if it sees a GPU
  fi
  built=$(mktemp -d)
  env "${build_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$py" -m pip wheel \
    -q --no-index --no-deps --no-build-isolation --disable-pip-version-check -w "$built" \
    "$wheels"/mmcv-2.1.0.tar.gz || return 1
  "$py" -m pip install -q --no-index --no-deps --upgrade --disable-pip-version-check \
    --target "$site" "$built"/mmcv-*.whl || return 1
  if [ -n "${GPU_CHECK_WHEEL_OUT:-}" ]; then
    mkdir -p "$GPU_CHECK_WHEEL_OUT" && cp "$built"/mmcv-*.whl "$GPU_CHECK_WHEEL_OUT"/
  fi
  log "mmcv built in $(( SECONDS - start )) s: $(ops_kind) ops"
}
have=$(ops_kind)
if [ "$have" = cuda ] || { [ "$have" = cpu ] && [ "$cuda_ops" != 1 ]; }; then
  log "mmcv with $have ops is already in $site"
elif [ "$cuda_ops" = 1 ] && ! command -v nvcc >/dev/null \
    && [ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  log "no nvcc here (PATH, CUDA_HOME): mmcv gets CPU ops; the detection-head steps skip or fail"
  build_mmcv cpu
elif [ "$cuda_ops" = 1 ]; then
  build_mmcv cuda || { log "the CUDA build failed: mmcv gets CPU ops instead"; build_mmcv cpu; }
else
  build_mmcv cpu
fi
"$py" "$repo/tools/patch_mmaction.py"
# mmpretrain 1.2.0 and mmaction2 1.2.0 load their multimodal models when transformers >=
# 4.28 is installed, and those fail with transformers 5 (GPU images carry it); we use none.
sed -i 's/^WITH_MULTIMODAL = all(/WITH_MULTIMODAL = False and all(/' \
  "$site/mmpretrain/utils/dependency.py" "$site/mmaction/utils/dependency.py"
"$py" -c "import mmcv.ops, mmdet, mutualnet_mm; print('imports ok: mmcv', mmcv.__version__)"

cd "$repo"
coco=(--config configs/maskrcnn_mutual_r50.py --height 800 --size 1216 --batch-size 2)
# only the CUDA test modules: the others need packages a GPU image may lack
wanted tests && timed tests "$py" -m pytest -q -rs -m cuda -p no:cacheprovider \
  tests/*/test_*cuda*.py
# predict runs mmdet's heads on the GPU: only with mmcv's CUDA ops
predict=--predict; [ "$(ops_kind)" = cuda ] || predict=--no-predict
wanted features && timed features "$py" benchmarks/feature_extractor.py --device cuda \
  --repeats 20 --calls 10 "$predict"
wanted inference && timed inference "$py" benchmarks/inference.py --device cuda \
  --calls 10 --repeats 10
wanted train && timed train-demo "$py" benchmarks/train_overhead.py --device cuda --repeats 10
wanted train && timed train-coco "$py" benchmarks/train_overhead.py --device cuda \
  "${coco[@]}" --repeats 5 --warmup 1
wanted memory && timed memory-demo "$py" benchmarks/memory.py --device cuda
wanted memory && timed memory-coco "$py" benchmarks/memory.py --device cuda "${coco[@]}" \
  --repeats 2
if [ ${#failed[@]} -gt 0 ]; then
  log "failed steps: ${failed[*]}"
  exit 1
fi
log "all steps passed"
