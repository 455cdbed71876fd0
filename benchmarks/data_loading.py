"""How long CIFAR-10 takes to load: decoding every image vs reading the uint8 cache.

    python benchmarks/data_loading.py [--root DATA_FOLDER]
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from helpers.data import DataError, data_root, find_source, load_cifar10
from helpers.errors import reports_errors


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@reports_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    kind, folder = find_source(data_root(args.root)) or (None, None)
    if folder is None:
        raise SystemExit(f"No CIFAR-10 under {data_root(args.root)}; see README.md, 'Data'.")
    with tempfile.TemporaryDirectory() as tmp:  # a fresh cache, so the first load decodes
        link = Path(tmp) / folder.name
        try:
            link.symlink_to(folder.resolve(), target_is_directory=True)
        except OSError:  # Windows without the right to make links (Developer Mode off): a copy
            print(f"copying {folder} to a temporary folder (no symbolic link allowed here) ...", flush=True)
            shutil.copytree(folder, link)
        try:
            rows = [(split, timed(lambda: load_cifar10(split, root=tmp, download=False)),
                     timed(lambda: load_cifar10(split, root=tmp, download=False))) for split in ("train", "test")]
        except DataError as err:  # name the user's files, not the temporary link to them
            raise DataError(str(err).replace(str(link), str(folder))) from None
    print(f"source: {kind} at {folder}\n")
    print(f"{'split':6s} {'decode (s)':>11s} {'cached (s)':>11s} {'speed-up':>9s}")
    for split, decode, cached in rows:
        print(f"{split:6s} {decode:11.2f} {cached:11.2f} {decode / cached:8.0f}x")


if __name__ == "__main__":
    sys.exit(main())
