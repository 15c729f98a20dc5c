#!/usr/bin/env bash
# GPU check (issue 17): on a machine with a CUDA GPU and PyTorch, install the OpenMMLab
# stack from local files, build mmcv 2.1.0, and run the feature-extractor benchmark on the
# GPU (absolute times, adaptive / native ratios, and the largest output difference).
#
# Usage (from the repository root, no network needed):
#   bash benchmarks/gpu_check.sh                 # mmcv with CPU ops (about 3 min on 16 cores)
#   MMCV_CUDA_OPS=1 bash benchmarks/gpu_check.sh # mmcv with CUDA ops (NMS, RoIAlign on GPU)
#
# The wheels come from $GPU_CHECK_WHEELS (default .whl/, not tracked): fill it on a machine
# with network access for the GPU machine's Python (3.12 in our lease):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     mmengine==0.10.7 mmdet==3.3.0 mmaction2==1.2.0 mmpretrain==1.2.0 addict yapf termcolor \
#     terminaltables shapely pycocotools importlib_metadata lazy_importer mat4py modelindex \
#     ordered-set platformdirs av \
#     'setuptools<82'
#   pip download --no-deps --no-build-isolation --no-binary=:all: -d .whl mmcv==2.1.0
# Torch, torchvision, numpy, scipy, opencv and matplotlib are taken from the machine.
# mmcv's CPU ops make `import mmdet` work; the backbone and neck need no mmcv op, so the
# feature-extractor benchmark runs on the GPU either way. Detection heads on the GPU (NMS,
# RoIAlign) need MMCV_CUDA_OPS=1.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheels=${GPU_CHECK_WHEELS:-$repo/.whl}
site=${GPU_CHECK_SITE:-/tmp/mutualnet_gpu_site}
py=${PYTHON:-python3}
log() { printf '[gpu_check] %s\n' "$*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
  torch.cuda.get_device_name(0))"

log "installing the OpenMMLab wheels from $wheels into $site"
"$py" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
  --upgrade --target "$site" "$wheels"/*.whl
export PYTHONPATH=$site:$repo
start=$(date +%s)
if "$py" -c "import mmcv.ops" 2>/dev/null; then
  log "mmcv with ops is already in $site"
elif [ "${MMCV_CUDA_OPS:-0}" = 1 ]; then
  log "building mmcv 2.1.0 with CUDA ops for this GPU"
  arch=$("$py" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
  build_env=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch}")
else
  log "building mmcv 2.1.0 with CPU ops"
  build_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)  # mmcv builds CUDA ops if it sees a GPU
fi
if ! "$py" -c "import mmcv.ops" 2>/dev/null; then
  env "${build_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$py" -m pip install \
    -q --no-index --no-deps --no-build-isolation --disable-pip-version-check --target "$site" \
    "$wheels"/mmcv-2.1.0.tar.gz
  log "mmcv built in $(( $(date +%s) - start )) s"
fi
"$py" "$repo/tools/patch_mmaction.py"
# mmpretrain 1.2.0 and mmaction2 1.2.0 load their multimodal models when transformers >=
# 4.28 is installed, and those fail with transformers 5 (GPU images carry it); we use none.
sed -i 's/^WITH_MULTIMODAL = all(/WITH_MULTIMODAL = False and all(/' \
  "$site/mmpretrain/utils/dependency.py" "$site/mmaction/utils/dependency.py"
"$py" -c "import mmcv.ops, mmdet, mutualnet_mm; print('imports ok: mmcv', mmcv.__version__)"

log "feature extractors on the GPU"
"$py" "$repo/benchmarks/feature_extractor.py" --device cuda --repeats 20 --calls 10
