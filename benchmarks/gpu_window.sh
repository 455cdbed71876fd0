#!/usr/bin/env bash
# One GPU window, one command: unpack CIFAR-10, install, run the GPU plan inside the budget and
# pack what it measured into one archive.
#   bash benchmarks/gpu_window.sh PATH/cifar10-jpeg.tar.xz [BUDGET_S=480] [ARCHIVE=results.tar.gz]
# Then, in the checkout you commit from: tar -xzf results.tar.gz -C results && git add results
# SKIP_INSTALL=1 skips pip (a machine without internet that already has the packages); so does a
# machine where everything the plan imports is there already (the wheels in .whl/ included).
set -euo pipefail
cd "$(dirname "$0")/.."
data_archive=${1:?"give the path of cifar10-jpeg.tar.xz (or put CIFAR-10 in data/ and pass -)"}
budget=${2:-480}
out=${3:-results.tar.gz}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then  # wheels from benchmarks/device_wheels.sh, for a machine without internet
    site="${TMPDIR:-/tmp}/deit-site"
    python -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
fi
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    if python -c "import torch, torchvision, timm, matplotlib, tqdm, nbval, nbclient, ipykernel, ipywidgets" 2>/dev/null; then
        echo "the packages the plan imports are installed: pip is skipped (a window has no internet)"
    else
        python -m pip install -q -r requirements.txt
    fi
fi
if [ "$data_archive" != - ]; then python -m helpers data extract "$data_archive"; fi
python -m helpers data check          # decode once and fill the cache before any clock starts
python -m benchmarks.gpu_plan --budget-s "$budget" --archive "$out"
