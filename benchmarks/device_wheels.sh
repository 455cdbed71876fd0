#!/usr/bin/env bash
# Before a GPU window: fetch the wheels of what the notebooks need and the window's machine lacks
# (nbval, Jupyter's kernel and client, ipywidgets, with their dependencies) into .whl/ (ignored).
# The machine has no internet and runs Python 3.12 on x86-64 with torch, timm, matplotlib and
# pytest already installed (/work/.library/device/KINDS.md lists its packages), so those stay out.
#   bash benchmarks/device_wheels.sh [PYTHON_VERSION=3.12]
# There, before the plan:  pip install --no-index --no-deps --target /tmp/site .whl/*.whl
#                          export PYTHONPATH=/tmp/site:$PYTHONPATH   (gpu_window.sh does both)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
abi=cp${version/./}
rm -rf .whl
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_17 manylinux2014 manylinux_2_12 manylinux2010 manylinux_2_5 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
done
python -m pip download -q --only-binary=:all: --python-version "$version" --implementation cp --abi "$abi" \
    "${platforms[@]}" -d .whl nbval nbclient ipykernel ipywidgets
# Already on the machine: a second copy would only shadow the one its other packages were built with.
for name in attrs coverage iniconfig packaging pluggy psutil pygments pytest python_dateutil typing_extensions; do
    rm -f .whl/"$name"-[0-9]*.whl
done
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl/: name .whl in the window's carry"
