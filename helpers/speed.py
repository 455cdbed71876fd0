"""Where a training step's time goes: producing the batch vs the model's step (notebook 04, benchmarks)."""
from __future__ import annotations

import time

import torch


def sync(device) -> None:
    """Wait for the GPU, so that a timer measures work done rather than work queued."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def endless(batches):
    """Batches forever, re-shuffled each pass.

    Notebooks: used in 04.
    """
    epoch = 0
    while True:
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        yield from batches
        epoch += 1


def time_pipeline(batches, prepare, step, device, warmup: int = 1, steps: int = 5) -> dict:
    """Images/s of `prepare` + `step` run as in training, and where the time goes.

    prepare(images, labels) -> (inputs, targets) moves and augments a batch; step(inputs, targets)
    trains on it. images_per_s times `steps` steps back to back, the GPU synchronized only at
    the ends, so preparing the next batch may overlap the GPU's work on this one (as in fit).
    data_s and step_s come from a second pass that synchronizes between the two parts, so each
    is timed on its own; gpu_busy = step_s / (data_s + step_s) is the share a model would have
    if nothing overlapped.

    Notebooks: used in 04.
    """
    iterator = iter(batches)
    for _ in range(warmup):
        step(*prepare(*next(iterator)))
    sync(device)
    start, images = time.perf_counter(), 0
    for _ in range(steps):
        inputs, targets = prepare(*next(iterator))
        step(inputs, targets)
        images += len(targets)
    sync(device)
    overlapped = time.perf_counter() - start

    data_s = step_s = 0.0
    for _ in range(steps):
        begin = time.perf_counter()
        inputs, targets = prepare(*next(iterator))
        sync(device)
        middle = time.perf_counter()
        step(inputs, targets)
        sync(device)
        data_s, step_s = data_s + middle - begin, step_s + time.perf_counter() - middle
    return {"images": images, "seconds": overlapped, "images_per_s": images / overlapped,
            "data_s": data_s, "step_s": step_s, "gpu_busy": step_s / (data_s + step_s)}


def count_host_syncs(batches, prepare, step, device, steps: int = 3) -> int | None:
    """How many times `steps` steps of prepare + step make the CPU wait for the GPU (CUDA's
    sync debug mode flags each one); None off CUDA, where nothing can be counted."""
    import warnings
    if torch.device(device).type != "cuda":
        return None
    iterator = iter(batches)
    step(*prepare(*next(iterator)))  # the first call may compile or allocate
    sync(device)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(steps):
                step(*prepare(*next(iterator)))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def _posterize_at_least_one_bit(transform) -> None:
    """Clamp the posterize ops of timm's RandAugment inside `transform` to >= 1 bit, so that
    Pillow 13 cannot crash them (notebook 01); nothing outside this transform is changed, and the
    cost per image is the same."""
    from PIL import ImageOps
    from timm.data.auto_augment import RandAugment

    def posterize(img, bits, **kwargs):
        return ImageOps.posterize(img, max(1, int(bits)))
    for step in getattr(transform, "transforms", []):
        if isinstance(step, RandAugment):
            for op in step.ops:
                if op.name.startswith("Posterize"):
                    op.aug_fn = posterize


def starter_loader(train, batch_size: int, workers: int):
    """The usual data path (the starting pipeline's): timm's create_transform on PIL images in
    DataLoader workers, then timm's Mixup. Returns (loader, mixup). Its posterize ops are clamped
    to >= 1 bit so that Pillow 13 cannot crash them (only in this loader's transform).

    Notebooks: used in 04.
    """
    from helpers.augment import starter_mixup, starter_transforms
    from helpers.data import CIFAR10Dataset

    transform = starter_transforms()[0]
    _posterize_at_least_one_bit(transform)
    dataset = CIFAR10Dataset(train, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=torch.cuda.is_available(),
                                         persistent_workers=workers > 0)
    return loader, starter_mixup()
