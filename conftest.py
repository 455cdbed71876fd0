"""Test setup: the CI profile, and CIFAR-10 found (or unpacked from the shared archive)."""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests and nbval kernels always run the small CI profile; stored outputs were made with it.
os.environ["DEIT_PROFILE"] = "ci"
# ...and write checkpoints and teachers into a fresh folder, never the repository's runs/: a
# finished or stale run there would be reused and hide what the code does now.
os.environ["DEIT_RUNS"] = tempfile.mkdtemp(prefix="deit-test-runs-")
atexit.register(shutil.rmtree, os.environ["DEIT_RUNS"], ignore_errors=True)
SHARED_ARCHIVE = Path(__file__).resolve().parents[1] / "shared" / "data" / "cifar10-jpeg.tar.xz"


def _ensure_data() -> None:
    from helpers.data import DataError, data_root, extract_archive, find_source

    root = data_root()
    if root.is_dir() and find_source(root):
        return
    if "DEIT_DATA" not in os.environ and SHARED_ARCHIVE.is_file():
        extract_archive(SHARED_ARCHIVE)
        return
    raise DataError(f"The tests need CIFAR-10 and found none in {root}. "
                    f"Run `python -m helpers data extract PATH/cifar10-jpeg.tar.xz`, "
                    f"or set DEIT_DATA to a folder holding it.")


_ensure_data()


@pytest.fixture(scope="session")
def cifar_train_small():
    from helpers.data import load_cifar10
    return load_cifar10("train", n_per_class=20)


@pytest.fixture(scope="module")
def one_thread():
    """Single-threaded torch for a test file of small tensors: two OpenMP threads spin-waiting on
    a busy 2-core runner made such files 10x slower. The old setting is restored afterwards."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
