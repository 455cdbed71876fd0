"""CIFAR-10 from either of its two common formats, decoded once and cached as uint8 tensors.

Where the data may live (the first that exists wins):
  * torchvision's format: ROOT/cifar-10-batches-py/ (what `datasets.CIFAR10(download=True)` makes)
  * an image folder:      ROOT/cifar10-jpeg/, ROOT/cifar10/ or ROOT itself, holding {train,test}/<class>/
                          images (.jpg, .jpeg, .png, .bmp or .webp)
ROOT is the `root` argument, else the environment variable DEIT_DATA, else the repo's `data/`.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shlex
import socket
import tarfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from helpers.constants import CLASSES, DATA as REPO_DATA
from helpers.errors import CourseError, make_folder, reports_errors
from helpers.files import save_atomically

DATA_ENV = "DEIT_DATA"
SPLITS = ("train", "test")
FULL_PER_CLASS = {"train": 5000, "test": 1000}  # CIFAR-10: 50,000 training and 10,000 test images
_CACHE_VERSION = 2  # 2: the cache records what it was made from
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _is_image(name: str) -> bool:
    """Hidden names are not images: macOS puts ._0000.jpg metadata beside each image on some drives
    and archives, and .DS_Store files."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in _IMAGE_SUFFIXES


def _entries(folder: Path, want_dirs: bool) -> list[Path]:
    """The class folders (want_dirs) or images in `folder`, sorted; hidden names left out."""
    return sorted(p for p in folder.iterdir()
                  if (p.is_dir() and not p.name.startswith(".") if want_dirs else _is_image(p.name)))


class DataError(CourseError, RuntimeError):
    """CIFAR-10 could not be found or read; the message says how to fix it.

    Raised `from None`: the message names the underlying error, and a student sees one error
    rather than a chained urllib or pickle traceback.
    """


class DataSizeError(DataError, ValueError):
    """The data has too few images of some class for the sizes asked for, or labels outside
    CIFAR-10's classes. Also a ValueError, which callers caught before it existed."""


@dataclass
class CIFAR10Arrays:
    """Decoded images (N, H, W, 3) uint8, 32x32 as CIFAR-10 stores them, and labels (N,) int64,
    in CIFAR-10's label order."""
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple = CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "CIFAR10Arrays":
        indices = torch.as_tensor(indices, dtype=torch.long)
        return CIFAR10Arrays(self.images[indices], self.labels[indices], self.classes)


def data_root(root=None) -> Path:
    """The folder searched for CIFAR-10: `root`, else $DEIT_DATA, else the repo's data/."""
    return Path(root or os.environ.get(DATA_ENV) or REPO_DATA).expanduser()


def _extract_command(root: Path) -> str:
    """The command that unpacks the archive where `root` is searched. extract's default
    destination is data_root(), so --dest is named only when root is another folder."""
    dest = "" if root == data_root() else f" --dest {shlex.quote(str(root))}"
    return f"`python -m helpers data extract ARCHIVE.tar.xz{dest}` (into {root / 'cifar10-jpeg'})"


def _how_to_fix(root: Path) -> str:
    return (
        f"Put CIFAR-10 in {root} in one of these layouts:\n"
        f"  {root}/cifar-10-batches-py/...          (torchvision's format; `python -m helpers data download` makes it when online)\n"
        f"  {root}/cifar10-jpeg/train/<class>/*.jpg  and .../test/<class>/*.jpg  (image folders)\n"
        f"or point the environment variable {DATA_ENV} at the folder that holds them, e.g.\n"
        f"  export {DATA_ENV}=/path/to/data   (Windows: set {DATA_ENV}=C:\\path\\to\\data)\n"
        f"An archive of the image folders unpacks with {_extract_command(root)}."
    )


def find_source(root) -> tuple[str, Path] | None:
    """('torchvision', dir) or ('folder', dir) for the first CIFAR-10 copy under root, else None."""
    root = Path(root)
    for candidate in (root / "cifar-10-batches-py", root):
        if (candidate / "batches.meta").exists() or (candidate / "data_batch_1").exists():
            return "torchvision", candidate
    for candidate in _folder_candidates(root):
        if all((candidate / split).is_dir() for split in SPLITS):
            return "folder", candidate
    return None


def _folder_candidates(root: Path) -> tuple[Path, ...]:
    return root / "cifar10-jpeg", root / "cifar10", root


def _half_copy_error(root: Path) -> DataError | None:
    """The error for an image-folder copy with only one of train/ and test/, else None: such a
    copy is incomplete, and downloading into its folder would hide that."""
    for candidate in _folder_candidates(root):
        present = [split for split in SPLITS if (candidate / split).is_dir()]
        if len(present) == 1:
            missing = next(split for split in SPLITS if split not in present)
            return DataError(
                f"{candidate} holds {present[0]}/ but no {missing}/ folder: the image-folder copy is "
                f"incomplete. Unpack the archive again: move {candidate / present[0]} away (or delete it), "
                f"then run {_extract_command(root)}.")
    return None


def _read_torchvision_split(folder: Path, split: str):
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            problem = _batch_problem(entry)
            if problem is None:
                images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
            problem = f"{type(err).__name__}: {err}"
        if problem is not None:
            raise DataError(
                f"{path} is missing or corrupt ({problem}).\n"
                f"Delete {folder} and download again with load_cifar10(download=True), "
                f"or use the image-folder copy instead.") from None
    return np.concatenate(images).transpose(0, 2, 3, 1), np.asarray(labels)


def _batch_problem(entry) -> str | None:
    """What is wrong with an unpickled torchvision batch, else None. Checked here because a
    batch with too few labels would otherwise load, and every later label would belong to
    another image."""
    if not isinstance(entry, dict):
        return f"it holds a {type(entry).__name__}, not a dict with 'data' and 'labels'"
    labels = entry.get("labels", entry.get("fine_labels"))
    if "data" not in entry or labels is None:
        return f"it has no 'data' and 'labels' entries, only {sorted(map(str, entry))}"
    n_images = np.size(entry["data"]) // (3 * 32 * 32)
    if len(labels) != n_images:
        return f"it holds {n_images} images but {len(labels)} labels"
    if not all(isinstance(y, (int, np.integer)) and 0 <= y < len(CLASSES) for y in labels):
        return f"its labels should be whole numbers 0-{len(CLASSES) - 1}"
    return None


def _read_folder_split(folder: Path, split: str):
    split_dir = folder / split
    found = [p.name for p in _entries(split_dir, want_dirs=True)]
    if tuple(found) != CLASSES:
        raise DataError(
            f"{split_dir} should hold one folder per CIFAR-10 class {list(CLASSES)}, "
            f"but holds {found}. Check that DEIT_DATA points at the right copy.")
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        files = _entries(split_dir / name, want_dirs=False)
        if not files:
            raise DataError(f"{split_dir / name} has no images. Re-extract the data archive.")
        for path in files:
            try:
                with Image.open(path) as img:
                    array = np.asarray(img.convert("RGB"))
            except OSError as err:
                raise DataError(f"{path} is not a readable image ({err}). Re-extract the data archive.") from None
            if array.shape != (32, 32, 3):
                raise DataError(f"{path} is {array.shape[1]}x{array.shape[0]}, not a 32x32 CIFAR-10 image.")
            images.append(array)
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def _download(root: Path) -> None:
    """torchvision's download, with a timeout so a blocked network cannot hang a live class."""
    from torchvision.datasets import CIFAR10

    print(f"Downloading CIFAR-10 (170 MB) into {root} ...")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR10(root=str(root), train=True, download=True)
    except Exception as err:  # urllib, socket, SSL and checksum errors all land here
        certificates = ("\nPython from python.org on macOS has no certificates until you run "
                        "'Install Certificates.command' in its folder under Applications.\n"
                        if "CERTIFICATE_VERIFY_FAILED" in str(err) else "")
        raise DataError(f"CIFAR-10 is not in {root} and downloading it failed "
                        f"({type(err).__name__}: {err}).\n{certificates}\n{_how_to_fix(root)}") from None
    finally:
        socket.setdefaulttimeout(previous)


def _cache_path(kind: str, folder: Path, split: str) -> Path:
    name = f"{folder.name}-{kind}-{split}.v{_CACHE_VERSION}.pt"
    if os.access(folder.parent, os.W_OK):
        return folder.parent / ".cache" / name
    return Path.home() / ".cache" / "deit-course" / name  # a read-only data folder


def _source_stamp(kind: str, folder: Path, split: str) -> list:
    """What the cache was made from, cheap to read again: the number of files in each class
    folder, or each torchvision batch file's size and time. A copy completed or replaced after
    the cache was made no longer matches it."""
    if kind == "torchvision":
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return [[n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns] for n in names if (folder / n).exists()]
    classes = _entries(folder / split, want_dirs=True) if (folder / split).is_dir() else []
    return [[c.name, sum(_is_image(entry.name) for entry in os.scandir(c))] for c in classes]  # no sort: cheap


def _load_cache(path: Path, stamp: list):
    try:
        blob = torch.load(path, weights_only=True)
        images, labels = blob["images"], blob["labels"]
    except Exception as err:  # a half-written or foreign file: it is derived data, so rebuild it
        warnings.warn(f"Ignoring unreadable cache {path} ({err}); decoding the images again.")
        return None
    if blob.get("stamp") != stamp:  # the images changed since: decode them again, silently correct
        return None
    return images, labels


def load_cifar10(split: str = "train", root=None, n_per_class: int | None = None,
                 seed: int = 0, download: bool = True) -> CIFAR10Arrays:
    """CIFAR-10 `split` as uint8 arrays, decoded once and then read from a cache file.

    n_per_class picks a deterministic, stratified subset (the same `seed` gives the same images).

    Notebooks: used in 00, 01, 02, 03, 04.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    from_env = root is None and bool(os.environ.get(DATA_ENV))
    root = data_root(root)
    if from_env and not root.exists():  # most likely a typo: never download into it
        raise DataError(f"{DATA_ENV}={root} does not exist. Fix the path, or unset {DATA_ENV} "
                        f"to use {REPO_DATA}.\n\n{_how_to_fix(root)}")
    source = find_source(root) if root.is_dir() else None
    if source is None:
        if root.exists() and not root.is_dir():
            raise DataError(f"{root} is a file, not a folder.\n\n{_how_to_fix(root)}")
        half = _half_copy_error(root)
        if half is not None:  # never download into a folder that holds part of a copy
            raise half
        if not download:
            raise DataError(f"No CIFAR-10 found in {root}.\n\n{_how_to_fix(root)}")
        _download(root)
        source = find_source(root)
    kind, folder = source
    cache, stamp = _cache_path(kind, folder, split), _source_stamp(kind, folder, split)
    cached = _load_cache(cache, stamp) if cache.exists() else None
    if cached is None:
        reader = _read_torchvision_split if kind == "torchvision" else _read_folder_split
        images, labels = reader(folder, split)
        cached = torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels).long()
        save_atomically({"images": cached[0], "labels": cached[1], "stamp": stamp}, cache)
    data = CIFAR10Arrays(*cached)
    if n_per_class is not None:
        data = data.subset(stratified_indices(data.labels, n_per_class, seed))
    return data


def _shuffled_by_class(labels: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """For every class (in label order) its indices in a random order fixed by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return [members[torch.randperm(len(members), generator=generator)]
            for members in ((labels == c).nonzero().flatten() for c in labels.unique().tolist())]


def stratified_indices(labels: torch.Tensor, n_per_class: int, seed: int = 0) -> torch.Tensor:
    """n_per_class random indices of every class, sorted; the same seed gives the same indices."""
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be at least 0, not {n_per_class}.")
    picked = []
    for c, members in enumerate(_shuffled_by_class(labels, seed)):
        if n_per_class > len(members):
            raise ValueError(f"Class {c} has {len(members)} images; asked for {n_per_class}.")
        picked.append(members[:n_per_class])
    return torch.cat(picked).sort().values


VALIDATION_SEED = 2021  # fixes which training images are held out, for every profile and run


def train_validation_split(arrays: CIFAR10Arrays, val_per_class: int, train_per_class: int | None = None,
                           seed: int = VALIDATION_SEED) -> tuple[CIFAR10Arrays, CIFAR10Arrays]:
    """(train, validation) from the training set: disjoint, stratified, fixed by `seed`.

    Every class's images are shuffled once; the first val_per_class are held out for
    validation, the next train_per_class (default: all the rest) are for training. A smaller
    split therefore validates on a subset of a larger one's validation images, never on them
    and their training images crossed.
    """
    found = arrays.labels.unique().tolist()
    if found != list(range(len(arrays.classes))):  # a stray or missing class would shift every class after it
        raise DataSizeError(f"The training labels are {found}, but must be 0-{len(arrays.classes) - 1}, one per class "
                            f"{list(arrays.classes)}: the data copy is incomplete or damaged. Copy or extract it "
                            f"again; `python -m helpers data check` checks it.")
    train, val = [], []
    for c, members in enumerate(_shuffled_by_class(arrays.labels, seed)):
        rest = members[val_per_class:]
        wanted = len(rest) if train_per_class is None else train_per_class
        if val_per_class + wanted > len(members):
            fix = (f"use a train_per_class (--train-per-class) of at most {len(members) - val_per_class}"
                   if val_per_class < len(members) else
                   f"use a val_per_class below {len(members)} (a profile's, or benchmarks.crossover's "
                   f"--val-per-class)")
            if len(members) < FULL_PER_CLASS["train"]:
                fix += (f"; or, if this copy should hold all {FULL_PER_CLASS['train']:,} per class, it is "
                        f"incomplete: copy or extract it again")
            raise DataSizeError(f"Class {c} ({arrays.classes[c]}) has {len(members)} training images: too few for "
                                f"{val_per_class} validation + {wanted} training images per class. With "
                                f"{val_per_class} validation images per class, {fix}.")
        val.append(members[:val_per_class])
        train.append(rest[:wanted])
    return arrays.subset(torch.cat(train).sort().values), arrays.subset(torch.cat(val).sort().values)


class CIFAR10Dataset(torch.utils.data.Dataset):
    """A map-style dataset of PIL images, so torchvision and timm transforms work unchanged.

    It has torchvision.datasets.CIFAR10's `data`, `targets` and `classes` attributes.
    """

    def __init__(self, arrays: CIFAR10Arrays, transform=None, target_transform=None):
        self.arrays = arrays
        self.data = arrays.images.numpy()
        self.targets = arrays.labels.tolist()
        self.classes = list(arrays.classes)
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        image, target = Image.fromarray(self.data[index]), self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class TensorBatches:
    """Mini-batches of uint8 (B, 3, 32, 32) images straight from memory.

    Much faster than a DataLoader of PIL images; augmentation then runs on whole batches
    (see helpers.augment). Training order comes from helpers.sampler.RepeatedAugSampler, so
    this process's share under DDP (num_replicas, rank) and repeated augmentation
    (num_repeats=3) come for free, and the order depends only on (seed, epoch): a resumed run
    sees the same batches as an uninterrupted one. Without shuffle (evaluation) each process
    takes every num_replicas-th image, with no padding, so summed metrics are exact.

    Notebooks: used in 03.
    """

    def __init__(self, arrays: CIFAR10Arrays, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, num_replicas: int = 1, rank: int = 0,
                 num_repeats: int = 1):
        from helpers.sampler import RepeatedAugSampler

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
        self.images = arrays.images.permute(0, 3, 1, 2).contiguous()
        self.labels = arrays.labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        # The sampler shuffles with seed + epoch: spread the seeds so runs never share an order.
        self.sampler = RepeatedAugSampler(len(self.labels), num_replicas, rank, num_repeats, seed=seed * 100_003)
        self.num_replicas, self.rank = self.sampler.num_replicas, self.sampler.rank

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def to(self, device) -> "TensorBatches":
        """Keep the whole (uint8) dataset on `device`: batches are then cut there, no copies."""
        self.images, self.labels = self.images.to(device), self.labels.to(device)
        return self

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            return torch.tensor(list(self.sampler), dtype=torch.long)
        return torch.arange(self.rank, len(self.labels), self.num_replicas)

    def __len__(self) -> int:
        n = len(self.sampler) if self.shuffle else len(range(self.rank, len(self.labels), self.num_replicas))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = self.indices().to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.images[idx], self.labels[idx]


TORCHVISION_FOLDER = "cifar-10-batches-py"  # where torchvision's CIFAR10 looks, under its root


def extract_archive(archive, dest=None) -> Path:
    """Unpack a CIFAR-10 archive into dest (default $DEIT_DATA, else the repo's data/): one of image
    folders (such as cifar10-jpeg.tar.xz) into dest/cifar10-jpeg, or torchvision's own
    cifar-10-python.tar.gz into dest/cifar-10-batches-py, where the loader looks for each. The copy
    may be at the top of the archive or in one folder of any name.

    It unpacks into a temporary folder first and renames it when complete, so an interrupted or
    failed extraction never leaves a half-filled copy that looks finished."""
    import lzma
    import shutil

    archive, dest = Path(archive), data_root(dest)
    if not archive.is_file():
        raise DataError(f"No archive at {archive}. Check the path.")
    if archive.suffix.lower() == ".zip":
        raise DataError(f"{archive} is a zip archive; this unpacks tar archives (.tar, .tar.gz, .tar.xz). Unzip it "
                        f"yourself so that {dest / 'cifar10-jpeg'}/train/ and test/ hold the class folders.")
    existing = next(p for p in (dest, *dest.parents) if p.exists())  # "." or "/" at the latest
    if not existing.is_dir():  # checked before unpacking anything
        raise DataError(f"{existing} is a file, so {dest} cannot be made to hold the data. "
                        f"Choose a folder as the destination (--dest FOLDER, or set {DATA_ENV}).")
    target = dest / "cifar10-jpeg"
    if find_source(target):
        return find_source(target)[1]
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"{target} exists but holds no train/ and test/ image folders. Move it away "
                        f"(or delete it), then extract again.")
    make_folder(dest, f"Choose a folder that can be written (--dest FOLDER, or set {DATA_ENV})")
    partial = dest / f".cifar10-jpeg.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        found = _unpacked_copy(partial)
        if found is None:
            raise DataError(f"{archive} holds neither train/ and test/ image folders nor torchvision's "
                            f"{TORCHVISION_FOLDER}, at its top or in one folder.")
        kind, copy = found
        target = target if kind == "folder" else dest / TORCHVISION_FOLDER
        if find_source(target):  # torchvision's copy, there already
            return target
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DataError(f"{target} exists already. Move it away (or delete it), then extract again.")
        if target.exists():
            target.rmdir()  # empty: checked above
        copy.rename(target)
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"{archive} could not be unpacked ({err}): it is damaged or incomplete. "
                        f"Copy or download it again.") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _unpacked_copy(folder: Path) -> tuple[str, Path] | None:
    """find_source of an unpacked archive: at its top, or in any one folder below it."""
    return find_source(folder) or next((found for child in sorted(folder.iterdir())
                                        if child.is_dir() and (found := find_source(child))), None)


@reports_errors
def main(argv=None) -> int:
    """`python -m helpers data extract ARCHIVE | check | download`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers data", description="CIFAR-10 data tools")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help=f"unpack an archive of the image folders, or torchvision's "
                                        f"cifar-10-python.tar.gz, into ${DATA_ENV}, else the repo's data/")
    ex.add_argument("archive")
    ex.add_argument("--dest", default=None, help=f"default: ${DATA_ENV}, else the repo's data/")
    sub.add_parser("check", help="load both splits (building the cache), print their sizes, fail if incomplete")
    sub.add_parser("download", help=f"when online and no copy is found: torchvision's (170 MB) into ${DATA_ENV}, "
                                    "else the repo's data/; then as check")
    args = parser.parse_args(argv)
    if args.command == "extract":
        print(extract_archive(args.archive, args.dest))
    else:
        if args.command == "download":  # asked for by name, so a new DEIT_DATA folder is no typo
            make_folder(data_root(), f"Set {DATA_ENV} to a folder that can be written")
        for split, found in check_data(download=args.command == "download").items():
            print(split, found)
    return 0


def check_data(download: bool = False) -> dict[str, int]:
    """Load both splits (filling the cache): {split: images}, or DataError naming the fix when the
    copy is missing or incomplete. Commands that need all of CIFAR-10 call it before any long
    work; only `download=True` fetches a missing copy."""
    sizes = {}
    for split in SPLITS:
        found, full = len(load_cifar10(split, download=download)), 10 * FULL_PER_CLASS[split]
        if found != full:
            raise DataError(f"The {split} split holds {found:,} images, not CIFAR-10's {full:,}: the copy in "
                            f"{data_root()} is incomplete. Copy or extract it again.")
        sizes[split] = found
    return sizes
