#!/usr/bin/env bash
# Set up (or check) the Python environment for mutualnet_mm.
#
# Idempotent: a second run checks the installed versions and returns in seconds.
# Usage: bash tools/setup_env.sh            (environment in ./.venv)
#        MUTUALNET_VENV=/path bash tools/setup_env.sh
# Handles the stack defects listed in docs (torch pin, mmcv source build with a wheel
# cache, mmaction2 1.2.0's missing DRN package, setuptools<82, one OpenCV distribution,
# mmpretrain and deepforest without dependencies).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MUTUALNET_VENV:-$repo/.venv}
wheel_cache=${MUTUALNET_WHEEL_CACHE:-$repo/../shared/wheels}
py=$venv/bin/python
log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$py" ]; then
  log "creating virtual environment $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
# pip warns about every package missing from this machine's local index mirrors: noise.
pip_install() {
  "$py" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | sed '/is ignored: it is neither a file nor a directory/d'
}

# Fast path: the same install inputs as last time, and everything importable.
stamp_file=$venv/.mutualnet_mm_setup
stamp=$(cat "$repo/tools/setup_env.sh" "$repo/requirements.txt" "$repo/setup.py" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ] && "$py" "$repo/tools/check_env.py" --quiet 2>/dev/null; then
  log "environment $venv is complete (nothing to do)"
  exit 0
fi

log "installing build tools"
pip_install "pip>=24" "setuptools<82" wheel

# PyPI's torch build: the arbitrary-equality pin keeps pip from taking a local
# CPU-only '+cpu' wheel that PyPI's torchvision cannot load with.
log "installing torch 2.13.0 + torchvision 0.28.0 (PyPI build)"
pip_install "torch===2.13.0" "torchvision===0.28.0"

if ! "$py" -c "import mmcv.ops" 2>/dev/null; then
  if compgen -G "$wheel_cache/mmcv-2.1.0-*.whl" >/dev/null; then
    log "installing mmcv 2.1.0 from the wheel cache $wheel_cache"
    (cd "$wheel_cache" && sha256sum -c --quiet SHA256SUMS)
    pip_install --no-deps "$wheel_cache"/mmcv-2.1.0-*.whl
  else
    log "building mmcv 2.1.0 with CPU ops from source (about 20 minutes on 2 cores)"
    MMCV_WITH_OPS=1 pip_install --no-build-isolation "mmcv==2.1.0"
  fi
fi

log "installing the OpenMMLab stack"
pip_install -r "$repo/requirements.txt"
# mmaction2 declares opencv-contrib-python, which writes the same cv2 package as
# mmengine's opencv-python: install it without dependencies (they are all in
# requirements.txt) so that one OpenCV distribution owns cv2.
pip_install --no-deps "mmaction2==1.2.0"
"$py" "$repo/tools/patch_mmaction.py"
# mmpretrain 1.2.0 works with mmcv 2.1.0 and torch 2.13; without dependencies (listed in
# requirements.txt) so that pip leaves the pinned stack as it is.
pip_install --no-deps "mmpretrain==1.2.0"
# deepforest ships the NEON aerial photographs and tree-crown boxes of the real-data demo
# (tools/make_trees_data.py reads them as files and never imports the package): without
# its dependencies, which the project does not use.
pip_install --no-deps "deepforest==2.1.0"

log "installing mutualnet_mm (editable)"
# Without setuptools' banner about editable installs (a warning, not an error).
(export PYTHONWARNINGS=ignore; pip_install --no-deps --no-build-isolation -e "$repo")

"$py" "$repo/tools/check_env.py"
echo "$stamp" > "$stamp_file"
log "done: activate with 'source $venv/bin/activate'"
