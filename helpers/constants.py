"""Where the course keeps things, and CIFAR-10's constants: defined here once, used everywhere."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"  # the default; DEIT_DATA names another folder (helpers.data.data_root)
RUNS_ENV = "DEIT_RUNS"
RUNS = Path(os.environ.get(RUNS_ENV) or REPO / "runs")  # checkpoints; DEIT_RUNS moves them (dry runs)
RESULTS = REPO / "results"  # committed reference results
NOTEBOOKS = REPO / "notebooks"

OPTIMIZERS = ("adamw", "sgd")  # DeiT's --opt values the course trains with (timm's names)
IMAGE_SIZE = 32  # CIFAR-10's pixels per side: the size every model and teacher here first trains at
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")  # CIFAR-10's label order, also alphabetical
# Per-channel statistics of the CIFAR-10 training set (widely published values).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
# Fill for pixels that geometric ops uncover: the CIFAR-10 mean colour, so they look "average".
CIFAR_FILL = tuple(min(255, round(255 * m)) for m in MEAN)
