"""Where a training step's time goes: producing the batch vs the model's step (notebook 04, benchmarks)."""
from __future__ import annotations

import time

import torch


def sync(device) -> None:
    """Wait for the GPU, so that a timer measures work done rather than work queued."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def endless(batches):
    """Batches forever, re-shuffled each pass."""
    epoch = 0
    while True:
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        yield from batches
        epoch += 1


def time_pipeline(batches, prepare, step, device, warmup: int = 1, steps: int = 5) -> dict:
    """Seconds spent getting + preparing batches (data) and in `step` (model), over `steps` steps.

    prepare(images, labels) -> (inputs, targets) moves and augments a batch; step(inputs, targets)
    trains on it. The GPU is synchronized between the two, so each part is timed on its own.
    """
    iterator = iter(batches)

    def one_step():
        start = time.perf_counter()
        inputs, targets = prepare(*next(iterator))
        sync(device)
        middle = time.perf_counter()
        step(inputs, targets)
        sync(device)
        return middle - start, time.perf_counter() - middle, len(targets)

    for _ in range(warmup):
        one_step()
    data_s = step_s = images = 0
    for _ in range(steps):
        d, s, n = one_step()
        data_s, step_s, images = data_s + d, step_s + s, images + n
    return {"data_s": data_s, "step_s": step_s, "images": images,
            "images_per_s": images / (data_s + step_s), "gpu_busy": step_s / (data_s + step_s)}


def seed_loader(train, batch_size: int, workers: int):
    """The usual data path (the seed's): timm's create_transform on PIL images in DataLoader
    workers, then timm's Mixup. Returns (loader, mixup). Posterize is clamped to >= 1 bit so
    Pillow 13 cannot crash it (notebook 01); the cost per image is unchanged."""
    from PIL import ImageOps

    from helpers.augment import seed_mixup, seed_transforms
    from helpers.data import CIFAR10Dataset

    if not getattr(ImageOps.posterize, "clamped", False):
        original = ImageOps.posterize
        ImageOps.posterize = lambda image, bits: original(image, max(1, bits))
        ImageOps.posterize.clamped = True
    dataset = CIFAR10Dataset(train, transform=seed_transforms()[0])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=torch.cuda.is_available(),
                                         persistent_workers=workers > 0)
    return loader, seed_mixup()
