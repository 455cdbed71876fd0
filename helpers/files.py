"""Writing files so that an interrupted write never destroys the previous good copy."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def save_atomically(obj, path) -> None:
    """torch.save to a temporary name, then rename: the old file survives a crash mid-write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json_atomically(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)
