import pickle
import socket
from pathlib import Path

import pytest
import torch
import torchvision.transforms as T

from helpers import data
from helpers.constants import CLASSES
from helpers.data import (CIFAR10Dataset, DataError, TensorBatches, extract_archive,
                          find_source, load_cifar10, stratified_indices)


@pytest.fixture(scope="module")
def test_split():
    return load_cifar10("test")


def write_torchvision_format(root, arrays, per_batch):
    """A small copy of CIFAR-10 in torchvision's pickle layout, from real images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    chunks = {f"data_batch_{i}": slice((i - 1) * per_batch, i * per_batch) for i in range(1, 6)}
    chunks["test_batch"] = slice(5 * per_batch, 6 * per_batch)
    for name, part in chunks.items():
        entry = {"data": arrays.images[part].permute(0, 3, 1, 2).reshape(-1, 3072).numpy(),
                 "labels": arrays.labels[part].tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CLASSES)}))
    return folder


def write_image_folder(root, arrays, split="train"):
    from PIL import Image
    for i, (image, label) in enumerate(zip(arrays.images, arrays.labels)):
        folder = root / split / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy()).save(folder / f"{i:04d}.png")


def test_image_folder_split_sizes_and_label_order(test_split):
    assert test_split.images.shape == (10000, 32, 32, 3) and test_split.images.dtype == torch.uint8
    assert test_split.labels.bincount().tolist() == [1000] * 10
    assert test_split.classes == CLASSES


def test_torchvision_format_gives_the_same_images(tmp_path, test_split):
    source = test_split.subset(range(60))
    write_torchvision_format(tmp_path, source, per_batch=10)
    train = load_cifar10("train", root=tmp_path, download=False)
    test = load_cifar10("test", root=tmp_path, download=False)
    assert torch.equal(train.images, source.images[:50]) and torch.equal(train.labels, source.labels[:50])
    assert torch.equal(test.images, source.images[50:])


def test_environment_variable_chooses_the_folder(tmp_path, monkeypatch, test_split):
    source = test_split.subset(range(60))
    write_torchvision_format(tmp_path, source, per_batch=10)
    monkeypatch.setenv("DEIT_DATA", str(tmp_path))
    assert len(load_cifar10("test", download=False)) == 10


def test_second_load_reads_the_cache_not_the_images(tmp_path, monkeypatch, test_split):
    write_image_folder(tmp_path / "cifar10-jpeg", test_split.subset(range(0, 10000, 500)), "train")
    write_image_folder(tmp_path / "cifar10-jpeg", test_split.subset(range(1, 10000, 500)), "test")
    first = load_cifar10("train", root=tmp_path)
    assert list((tmp_path / ".cache").glob("*train*.pt"))

    def no_decoding(*args):
        raise AssertionError("images were decoded again")
    monkeypatch.setattr(data, "_read_folder_split", no_decoding)
    second = load_cifar10("train", root=tmp_path)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_corrupt_cache_is_rebuilt(tmp_path, test_split):
    write_torchvision_format(tmp_path, test_split.subset(range(60)), per_batch=10)
    expected = load_cifar10("test", root=tmp_path)
    cache = next((tmp_path / ".cache").glob("*test*.pt"))
    cache.write_bytes(b"not a tensor file")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = load_cifar10("test", root=tmp_path)
    assert torch.equal(again.images, expected.images)


def test_no_data_offline_gives_one_clear_error(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable (simulated)")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DataError) as err:
        load_cifar10("train", root=tmp_path / "empty", download=True)
    message = str(err.value)
    assert "downloading it failed" in message and "DEIT_DATA" in message and str(tmp_path / "empty") in message
    assert err.value.__suppress_context__  # one error for the student, not a chained urllib traceback


def test_a_download_refused_for_want_of_certificates_names_macos_fix(tmp_path, monkeypatch):
    import ssl

    def no_certificates(*args, **kwargs):
        raise ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    monkeypatch.setattr(socket, "create_connection", no_certificates)
    with pytest.raises(DataError, match=r"(?s)CERTIFICATE_VERIFY_FAILED.*'Install Certificates.command'"):
        load_cifar10("train", root=tmp_path / "empty", download=True)


def test_the_download_command_fails_offline_with_the_fix(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable (simulated)")
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("DEIT_DATA", str(tmp_path / "new"))  # a folder to make: named on purpose
    assert data.main(["download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: CIFAR-10 is not in {tmp_path / 'new'} and downloading it failed")
    assert "python -m helpers data extract" in err


def test_the_download_command_only_checks_a_copy_that_is_there(monkeypatch, capsys):
    def no_download(root):
        raise AssertionError("downloaded although a copy was there")
    monkeypatch.setattr(data, "_download", no_download)
    assert data.main(["download"]) == 0
    assert capsys.readouterr().out == "train 50000\ntest 10000\n"


def test_mistyped_environment_variable_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIT_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataError, match="does not exist. Fix the path"):
        load_cifar10("train", download=True)
    assert not (tmp_path / "typo").exists()


def test_no_data_without_download(tmp_path):
    with pytest.raises(DataError, match="No CIFAR-10 found"):
        load_cifar10("train", root=tmp_path, download=False)


def test_root_that_is_a_file(tmp_path):
    path = tmp_path / "cifar.tar"
    path.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_cifar10("train", root=path, download=False)


def test_wrong_class_folders_are_named(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "cats").mkdir(parents=True)
    with pytest.raises(DataError, match="one folder per CIFAR-10 class"):
        load_cifar10("train", root=tmp_path, download=False)


def test_images_are_read_in_file_name_order_whatever_order_the_folder_lists(tmp_path, monkeypatch, test_split):
    source = test_split.subset(range(0, 10000, 250))  # 40 images, named 0000.png ... 0039.png
    write_image_folder(tmp_path, source, "train")
    (tmp_path / "test").mkdir()
    listed = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(listed(self), reverse=True)))
    loaded = load_cifar10("train", root=tmp_path, download=False)
    by_class = torch.sort(source.labels, stable=True).indices  # class by class, each in file order
    assert torch.equal(loaded.images, source.images[by_class]) and torch.equal(loaded.labels, source.labels[by_class])


def test_hidden_files_from_macos_are_left_out_and_do_not_invalidate_the_cache(tmp_path, monkeypatch, test_split):
    """macOS writes ._<name> metadata beside each file on some drives and in its archives, and
    .DS_Store files wherever Finder looks: neither is an image, and neither changes the data."""
    root = tmp_path / "cifar10-jpeg"
    write_image_folder(root, test_split.subset(range(0, 10000, 1000)), "train")
    (root / "test").mkdir()
    first = load_cifar10("train", root=tmp_path)
    for folder in [root / "train", *(root / "train").iterdir()]:
        (folder / ".DS_Store").write_bytes(b"Bud1 finder data")
    for image in list((root / "train").glob("*/*.png")):
        image.with_name(f"._{image.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    decode = data._read_folder_split

    def no_decoding(*args):
        raise AssertionError("images were decoded again")
    monkeypatch.setattr(data, "_read_folder_split", no_decoding)
    assert torch.equal(load_cifar10("train", root=tmp_path).images, first.images)  # the cache still holds
    monkeypatch.setattr(data, "_read_folder_split", decode)
    for cache in (tmp_path / ".cache").glob("*train*.pt"):
        cache.unlink()
    again = load_cifar10("train", root=tmp_path)  # decoded beside the hidden files
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


def test_only_image_files_are_read_whatever_the_case_of_their_suffix(tmp_path, test_split):
    source = test_split.subset(range(0, 10000, 1000))
    write_image_folder(tmp_path, source, "train")
    (tmp_path / "test").mkdir()
    first = next((tmp_path / "train" / CLASSES[source.labels[0]]).iterdir())
    first.rename(first.with_suffix(".PNG"))
    (tmp_path / "train" / "cat" / "Thumbs.db").write_bytes(b"not an image")
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    loaded = load_cifar10("train", root=tmp_path, download=False)
    assert sorted(loaded.labels.tolist()) == sorted(source.labels.tolist())


@pytest.mark.parametrize("layout, kind, found", [
    ("cifar-10-batches-py/data_batch_1", "torchvision", "cifar-10-batches-py"),
    ("data_batch_1", "torchvision", ""),  # root is torchvision's folder itself
    ("cifar10-jpeg/train/ cifar10-jpeg/test/", "folder", "cifar10-jpeg"),
    ("cifar10/train/ cifar10/test/", "folder", "cifar10"),
    ("train/ test/", "folder", ""),
])
def test_find_source_looks_in_every_documented_place(tmp_path, layout, kind, found):
    for entry in layout.split():  # a folder ends in "/", a file does not
        path = tmp_path / entry
        if entry.endswith("/"):
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    assert find_source(tmp_path) == (kind, tmp_path / found)


def test_corrupt_image_is_named(tmp_path, test_split):
    write_image_folder(tmp_path, test_split.subset(range(0, 10000, 1000)), "train")
    (tmp_path / "test").mkdir()
    broken = tmp_path / "train" / "cat" / "0003.png"
    broken.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="0003.png"):
        load_cifar10("train", root=tmp_path, download=False)


def test_corrupt_torchvision_batch(tmp_path, test_split):
    folder = write_torchvision_format(tmp_path, test_split.subset(range(60)), per_batch=10)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3 is missing or corrupt"):
        load_cifar10("train", root=tmp_path, download=False)


def test_bad_split_name():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_cifar10("validation")


def test_stratified_subset_is_balanced_and_deterministic(test_split):
    a = stratified_indices(test_split.labels, 7, seed=1)
    assert test_split.labels[a].bincount().tolist() == [7] * 10
    assert torch.equal(a, stratified_indices(test_split.labels, 7, seed=1))
    assert not torch.equal(a, stratified_indices(test_split.labels, 7, seed=2))
    with pytest.raises(ValueError, match="asked for 1001"):
        stratified_indices(test_split.labels, 1001)


def test_subsets_keep_the_datas_order_and_follow_the_seed(test_split):
    indices = stratified_indices(test_split.labels, 7, seed=1)
    assert (indices[1:] > indices[:-1]).all()  # not class by class: the classes stay mixed
    for seed in (0, 1):
        subset = load_cifar10("test", n_per_class=7, seed=seed)
        expected = test_split.subset(stratified_indices(test_split.labels, 7, seed))
        assert torch.equal(subset.images, expected.images) and torch.equal(subset.labels, expected.labels)
    ids = torch.arange(300)  # images that carry their index in two pixels
    images = torch.zeros(300, 32, 32, 3, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = ids // 256, ids % 256
    train, val = data.train_validation_split(data.CIFAR10Arrays(images, ids % 10), 5, 10)
    for split in (train, val):
        picked = split.images[:, 0, 0, 0].long() * 256 + split.images[:, 0, 0, 1].long()
        assert (picked[1:] > picked[:-1]).all()


def test_dataset_works_with_torchvision_transforms(test_split):
    dataset = CIFAR10Dataset(test_split.subset(range(16)), transform=T.Compose([T.RandomCrop(32, 4), T.ToTensor()]))
    images, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == test_split.labels[:8].tolist()
    assert dataset.classes == list(CLASSES) and len(dataset.targets) == 16
    named = CIFAR10Dataset(test_split.subset(range(16)), target_transform=lambda y: CLASSES[y])
    assert [named[i][1] for i in range(3)] == [CLASSES[y] for y in test_split.labels[:3]]


def test_tensor_batches_cover_every_image_once_and_reshuffle(test_split):
    small = test_split.subset(range(103))
    batches = TensorBatches(small, batch_size=10, seed=3)
    assert len(batches) == 11 and len(TensorBatches(small, 10, drop_last=True)) == 10
    first = torch.cat([labels for _, labels in batches])
    images, _ = next(iter(batches))
    assert images.shape == (10, 3, 32, 32) and images.dtype == torch.uint8
    order_epoch0 = [torch.cat([i.flatten(1) for i, _ in batches])]
    batches.set_epoch(1)
    order_epoch1 = torch.cat([i.flatten(1) for i, _ in batches])
    assert sorted(first.tolist()) == sorted(small.labels.tolist())
    assert sorted(batches.indices().tolist()) == list(range(103))  # every image once, not just as many labels
    assert not torch.equal(order_epoch0[0], order_epoch1)
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatches(small, batch_size=0)


def test_evaluation_batches_share_the_images_between_processes_without_padding(test_split):
    small = test_split.subset(range(7))
    shards = [TensorBatches(small, 2, shuffle=False, num_replicas=2, rank=rank) for rank in (0, 1)]
    assert [s.indices().tolist() for s in shards] == [[0, 2, 4, 6], [1, 3, 5]]
    assert [len(s) for s in shards] == [2, 2]
    assert torch.equal(torch.cat([y for _, y in shards[1]]), small.labels[[1, 3, 5]])
    # a batch size that divides the images: no empty batch at the end
    assert [len(y) for _, y in TensorBatches(test_split.subset(range(30)), 10, shuffle=False)] == [10, 10, 10]


def test_extract_archive_errors_on_a_wrong_path(tmp_path):
    with pytest.raises(DataError, match="No archive"):
        extract_archive(tmp_path / "missing.tar.xz", tmp_path)


def small_archive(tmp_path, test_split) -> Path:
    import tarfile
    src = tmp_path / "src"
    write_image_folder(src, test_split.subset(range(0, 10000, 1000)), "train")
    write_image_folder(src, test_split.subset(range(1, 10000, 1000)), "test")
    archive = tmp_path / "copy.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(src / "train", "train")
        tar.add(src / "test", "test")
    return archive


def test_extract_archive_unpacks_image_folders(tmp_path, test_split):
    folder = extract_archive(small_archive(tmp_path, test_split), tmp_path / "out")
    assert find_source(tmp_path / "out") == ("folder", folder)
    assert len(load_cifar10("test", root=tmp_path / "out")) == 10
    assert extract_archive(tmp_path / "copy.tar.xz", tmp_path / "out") == folder  # already there


def test_torchvisions_own_archive_unpacks_where_the_loader_looks(tmp_path, test_split):
    import tarfile
    write_torchvision_format(tmp_path / "src", test_split.subset(range(60)), per_batch=10)
    archive = tmp_path / "cifar-10-python.tar.gz"  # as torchvision downloads it: one folder, cifar-10-batches-py
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", "cifar-10-batches-py")
    folder = extract_archive(archive, tmp_path / "out")
    assert folder == tmp_path / "out" / "cifar-10-batches-py"
    assert find_source(tmp_path / "out") == ("torchvision", folder)
    assert len(load_cifar10("test", root=tmp_path / "out")) == 10
    assert extract_archive(archive, tmp_path / "out") == folder  # there already: kept
    assert not list((tmp_path / "out").glob("*.partial"))  # nothing half-made beside it


def test_image_folders_in_one_folder_of_any_name_are_found(tmp_path, test_split):
    import tarfile
    write_image_folder(tmp_path / "src", test_split.subset(range(0, 10000, 1000)), "train")
    write_image_folder(tmp_path / "src", test_split.subset(range(1, 10000, 1000)), "test")
    archive = tmp_path / "images.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(tmp_path / "src", "images")
    assert extract_archive(archive, tmp_path / "out") == tmp_path / "out" / "cifar10-jpeg"
    assert len(load_cifar10("test", root=tmp_path / "out")) == 10


def test_a_zip_archive_or_an_unwritable_destination_is_named_before_unpacking(tmp_path, test_split, monkeypatch):
    from helpers import errors
    zipped = tmp_path / "cifar10.zip"
    zipped.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="zip archive.*Unzip it yourself"):
        extract_archive(zipped, tmp_path / "out")
    archive = small_archive(tmp_path, test_split)
    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(errors.os, "access", lambda path, mode: Path(path).name != "locked")  # read-only, as root cannot be
    assert data.main(["extract", str(archive), "--dest", str(tmp_path / "locked")]) == 2
    assert list((tmp_path / "locked").iterdir()) == []


def test_a_truncated_archive_is_named_and_leaves_no_half_folder(tmp_path, test_split, capsys):
    whole = small_archive(tmp_path, test_split).read_bytes()
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="damaged or incomplete"):
        extract_archive(cut, tmp_path / "out")
    assert find_source(tmp_path / "out") is None and list((tmp_path / "out").iterdir()) == []
    assert data.main(["extract", str(cut), "--dest", str(tmp_path / "out")]) == 2  # one line, no traceback
    assert capsys.readouterr().err.startswith(f"error: {cut} could not be unpacked")


def test_validation_split_is_disjoint_stratified_fixed_and_nested():
    import torch
    from helpers.data import train_validation_split
    data = load_cifar10("train")
    data = data.subset(torch.arange(0, len(data), 10))  # 5,000 images, 500 per class
    train, val = train_validation_split(data, 20, 100)
    assert torch.bincount(val.labels).tolist() == [20] * 10 and torch.bincount(train.labels).tolist() == [100] * 10
    index = {bytes(img.numpy()): i for i, img in enumerate(data.images)}
    train_ids = {index[bytes(img.numpy())] for img in train.images}
    val_ids = {index[bytes(img.numpy())] for img in val.images}
    assert not train_ids & val_ids
    again_train, again_val = train_validation_split(data, 20, 100)
    assert torch.equal(again_val.images, val.images) and torch.equal(again_train.images, train.images)
    _, bigger_val = train_validation_split(data, 40)
    assert val_ids <= {index[bytes(img.numpy())] for img in bigger_val.images}  # smaller split: a subset
    rest, _ = train_validation_split(data, 20)
    assert len(rest) == 4_800  # without train_per_class: everything validation leaves
    with pytest.raises(ValueError, match="too few"):
        train_validation_split(data, 400, 200)


def test_tensor_batches_yield_every_image_with_its_label_exactly_once(test_split):
    from collections import Counter
    small = test_split.subset(range(103))
    batches = TensorBatches(small, batch_size=10, seed=3)
    # the order is a permutation of the 103 indices, and the batches follow it
    order = batches.indices()
    assert sorted(order.tolist()) == list(range(103))
    images = torch.cat([i for i, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert torch.equal(images, small.images.permute(0, 3, 1, 2)[order]) and torch.equal(labels, small.labels[order])
    # the same by content, independent of indices: each (image, label) pair once, none lost or doubled
    def pairs(imgs, ys):
        return Counter((bytes(img.contiguous().numpy()), int(y)) for img, y in zip(imgs, ys))
    assert pairs(images, labels) == pairs(small.images.permute(0, 3, 1, 2), small.labels)
    assert len(pairs(images, labels)) == 103  # the 103 test images are distinct, so "once" means something


@pytest.mark.parametrize("folder, present, missing", [("cifar10-jpeg", "train", "test"), ("", "test", "train")])
def test_half_an_image_folder_copy_names_the_missing_split_and_never_downloads(
        tmp_path, monkeypatch, capsys, test_split, folder, present, missing):
    write_image_folder(tmp_path / folder, test_split.subset(range(0, 10000, 1000)), present)

    def no_download(root):
        raise AssertionError(f"tried to download into {root}")
    monkeypatch.setattr(data, "_download", no_download)
    with pytest.raises(DataError) as err:
        load_cifar10("train", root=tmp_path, download=True)
    assert f"{tmp_path / folder} holds {present}/ but no {missing}/ folder" in str(err.value)
    assert "Unpack the archive again" in str(err.value) and "data extract" in str(err.value)
    monkeypatch.setenv("DEIT_DATA", str(tmp_path))
    assert data.main(["check"]) == 2
    assert f"but no {missing}/ folder" in capsys.readouterr().err


def test_a_too_small_split_or_a_stray_class_names_the_fix():
    labels = torch.arange(10).repeat_interleave(30)  # 30 images per class
    arrays = data.CIFAR10Arrays(torch.zeros(len(labels), 32, 32, 3, dtype=torch.uint8), labels)
    with pytest.raises(ValueError, match="too few") as err:  # callers catch ValueError: still one
        data.train_validation_split(arrays, 20, 100)
    assert isinstance(err.value, DataError) and "train_per_class (--train-per-class) of at most 10" in str(err.value)
    train, _ = data.train_validation_split(arrays, 20, 10)  # the size the message suggests works
    assert len(train) == 100
    with pytest.raises(DataError, match=r"val_per_class below 30 \(a profile.s, or benchmarks.crossover.s --val-per-class\)"):
        data.train_validation_split(arrays, 40)
    for broken in (torch.cat([labels, torch.tensor([10])]), labels[labels != 3]):  # a stray, a missing class
        odd = data.CIFAR10Arrays(torch.zeros(len(broken), 32, 32, 3, dtype=torch.uint8), broken)
        with pytest.raises(ValueError, match="must be 0-9.*incomplete or damaged"):
            data.train_validation_split(odd, 20, 5)


@pytest.mark.parametrize("entry, problem", [
    (lambda e: [e["data"], e["labels"]], "it holds a list, not a dict with 'data' and 'labels'"),
    (lambda e: {**e, "labels": e["labels"][:-5]}, "it holds 10 images but 5 labels"),
    (lambda e: {**e, "labels": e["labels"][:-1] + [10]}, "its labels should be whole numbers 0-9"),
    (lambda e: {**e, "labels": [-1] + e["labels"][1:]}, "its labels should be whole numbers 0-9"),
], ids=["a list", "5 labels short", "a stray label", "a negative label"])
def test_a_malformed_torchvision_batch_is_named(tmp_path, test_split, entry, problem):
    folder = write_torchvision_format(tmp_path, test_split.subset(range(60)), per_batch=10)
    whole = pickle.loads((folder / "data_batch_2").read_bytes())
    (folder / "data_batch_2").write_bytes(pickle.dumps(entry(whole)))
    with pytest.raises(DataError, match=f"(?s)data_batch_2 is missing or corrupt \\({problem}\\).*download again"):
        load_cifar10("train", root=tmp_path, download=False)


def test_the_hint_names_where_extract_puts_the_archive(tmp_path, monkeypatch, test_split):
    from helpers.constants import DATA as REPO_DATA
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("DEIT_DATA", str(elsewhere))
    with pytest.raises(DataError) as err:
        load_cifar10("train", download=False)
    hint = str(err.value)
    assert f"ARCHIVE.tar.xz` (into {elsewhere / 'cifar10-jpeg'})" in hint and str(REPO_DATA) not in hint
    assert extract_archive(small_archive(tmp_path, test_split)) == elsewhere / "cifar10-jpeg"  # where it said
    with pytest.raises(DataError, match=f"--dest {tmp_path / 'other'}`"):  # a root that is not the default
        load_cifar10("train", root=tmp_path / "other", download=False)


@pytest.mark.parametrize("below", ["", "sub"])
def test_extract_into_a_file_is_refused_before_unpacking(tmp_path, test_split, capsys, below):
    archive = small_archive(tmp_path, test_split)
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    with pytest.raises(DataError, match="afile is a file.*Choose a folder"):
        extract_archive(archive, afile / below)
    assert afile.read_text() == "keep me" and not list(tmp_path.glob("**/*.partial"))
    assert data.main(["extract", str(archive), "--dest", str(afile / below)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {afile} is a file")
