"""The course's one command line: `python -m helpers COMMAND [options]`.

    python -m helpers train --profile full --output-dir runs/deit     # DeiT's recipe (flags as in DeiT's main.py)
    python -m helpers teacher --profile cpu                          # the CNN teacher alone
    python -m helpers ablate --profile cpu                           # the ablation (resumable)
    python -m helpers data extract PATH/cifar10-jpeg.tar.xz           # unpack the image folders
    python -m helpers data check                                     # decode once, fill the cache
    python -m helpers data download                                  # online: torchvision's copy, if none is found
    python -m helpers notebooks                                      # re-execute and store the notebooks
    python -m helpers prepare --profile cpu                          # before a class: train all, rehearse
    python -m helpers readme                                         # README's result tables from results/
    torchrun --nproc_per_node=4 -m helpers train --profile full      # several GPUs

`python -m helpers COMMAND --help` explains each one.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {"train": "helpers.cli", "teacher": "helpers.teacher", "ablate": "helpers.ablate",
            "data": "helpers.data", "notebooks": "helpers.notebooks", "prepare": "helpers.prepare",
            "readme": "helpers.readme_results"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}; use one of: {', '.join(COMMANDS)}.", file=sys.stderr)
            return 2
        return 0 if argv else 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
