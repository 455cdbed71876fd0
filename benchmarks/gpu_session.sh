#!/usr/bin/env bash
# Every GPU check of the course in one go (about 10 minutes on one H100), for a session that
# has a GPU: the JSON files land in results/ with their provenance; commit them.
#   bash benchmarks/gpu_session.sh            # needs CIFAR-10 (DEIT_DATA or data/, see README)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 DEIT_PROFILE=full
python -m helpers.data check                                        # decode once, fill the cache
python benchmarks/throughput.py --output results/throughput.json
python benchmarks/teacher.py --epochs 15 20 --output results/teacher_full.json
python benchmarks/time_to_accuracy.py --output results/time_to_accuracy.json
