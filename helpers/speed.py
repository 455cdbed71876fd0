"""Where a training step's time goes: producing the batch vs the model's step (notebook 04, benchmarks)."""
from __future__ import annotations

import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode  # the hook torch's own tools count operators with
from torch.utils._pytree import tree_leaves


def sync(device) -> None:
    """Wait for the GPU (CUDA's or Apple's mps), so that a timer measures work done rather than queued."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


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
    is timed on its own. gpu_busy = step_s / (data_s + step_s) is the model step's share of that
    serialized pass, not the GPU's busy time: it is 1 for a pipeline with nothing to prepare,
    and it ignores any overlap (a pipeline whose `seconds` is below its step_s hid its data
    preparation completely). The GPU's own kernel time needs a profiler
    (helpers.gpu_results.gpu_ms_per_step).

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


def _is_on(device: torch.device, on: torch.device) -> bool:
    return device.type == on.type and (on.index is None or device.index == on.index)


class _CountCalls(TorchDispatchMode):
    """Counts the aten operators run inside it, and those (views apart) that make a tensor on `on`."""

    def __init__(self, on: torch.device):
        super().__init__()
        self.on, self.calls, self.on_device = on, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.calls += 1
        if not func.is_view:  # a view only relabels memory: no kernel
            self.on_device += any(isinstance(t, torch.Tensor) and _is_on(t.device, self.on) for t in tree_leaves(out))
        return out


def profiler_activities(device) -> list:
    """What torch.profiler records on `device`: the CPU's operators, and on a GPU its kernels too."""
    from torch.profiler import ProfilerActivity
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])


def operator_table(profiled, device, rows: int = 30) -> str:
    """The operators that took the most time in a finished profile (GPU time on a GPU), as a table."""
    sort = "cuda_time_total" if torch.device(device).type == "cuda" else "cpu_time_total"
    return profiled.key_averages().table(sort_by=sort, row_limit=rows)


def profiler_failed(err: Exception) -> str:
    """What a profile says in place of its table when torch.profiler cannot run here."""
    return f"torch.profiler failed here: {type(err).__name__}: {err}"


def operator_calls(fn, on="meta") -> tuple[int, int]:
    """(aten operator calls of one call of fn, how many of them made a tensor on device `on`,
    views apart), after an uncounted call (a first call may fill caches). On a GPU machine every
    call costs the CPU a few microseconds to issue, and each one that makes a tensor on the GPU
    is a kernel launch or a copy. Give fn inputs on the `meta` device (shapes, no data: every
    operator runs but computes nothing) to count what a GPU would launch, without one.

    Notebooks: used in 04.
    """
    fn()
    with _CountCalls(torch.device(on)) as counted:
        fn()
    return counted.calls, counted.on_device


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


def _posterize_at_least_one_bit(img, bits, **kwargs):
    """timm's posterize op with its bits clamped to >= 1, so that Pillow 13 cannot crash it
    (notebook 01). Defined at module level: DataLoader workers started by spawn (macOS, Windows)
    receive the transform pickled, and a function defined inside another cannot be pickled."""
    from PIL import ImageOps
    return ImageOps.posterize(img, max(1, int(bits)))


def _clamp_posterize(transform) -> None:
    """Give the posterize ops of timm's RandAugment inside `transform` the clamped version;
    nothing outside this transform is changed, and the cost per image is the same."""
    from timm.data.auto_augment import RandAugment

    for step in getattr(transform, "transforms", []):
        if isinstance(step, RandAugment):
            for op in step.ops:
                if op.name.startswith("Posterize"):
                    op.aug_fn = _posterize_at_least_one_bit


def starter_loader(train, batch_size: int, workers: int):
    """The usual data path (the starting pipeline's): timm's create_transform on PIL images in
    DataLoader workers, then timm's Mixup. Returns (loader, mixup). Its posterize ops are clamped
    to >= 1 bit so that Pillow 13 cannot crash them (only in this loader's transform).

    Notebooks: used in 04.
    """
    from helpers.augment import starter_mixup, starter_transforms
    from helpers.data import CIFAR10Dataset

    transform = starter_transforms()[0]
    _clamp_posterize(transform)
    dataset = CIFAR10Dataset(train, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=torch.cuda.is_available(),
                                         persistent_workers=workers > 0)
    return loader, starter_mixup()


# Dense bf16 tensor-core peaks in TFLOP/s, by torch.cuda.get_device_name(): NVIDIA's datasheets
# list twice these, "with sparsity". Exact names only: an H100 NVL or H200 NVL, slower, must not
# borrow the SXM's peak (benchmarks/together.py takes --peak-tflops for a GPU not listed).
PEAK_BF16_TFLOPS = {
    "NVIDIA H100 80GB HBM3": (989.5, "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: BF16 1,979 TFLOPS "
                                     "with sparsity, half that dense"),
    "NVIDIA H100 PCIe": (756.5, "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe: BF16 1,513 TFLOPS "
                                "with sparsity, half that dense"),
    "NVIDIA H200": (989.5, "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: BF16 1,979 TFLOPS "
                           "with sparsity, half that dense"),
}


# Memory bandwidth in TB/s, same datasheets and names: with the peak, how many FLOPs a kernel must
# do per byte it moves to be limited by arithmetic rather than by memory.
MEMORY_TBPS = {
    "NVIDIA H100 80GB HBM3": (3.35, "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: GPU memory bandwidth 3.35 TB/s"),
    "NVIDIA H100 PCIe": (2.0, "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe: GPU memory bandwidth 2 TB/s"),
    "NVIDIA H200": (4.8, "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: GPU memory bandwidth 4.8 TB/s"),
}


def training_flops_per_image(img_size=32, patch_size=4, embed_dim=192, depth=12, mlp_ratio=4.0,
                             num_classes=10, distilled=False, **_) -> float:
    """FLOPs to train on one image (forward and backward), from a ViT's shape: D width, L blocks,
    N = patches + 1 tokens (+ 1 distilled), p patch side, K classes, r D the MLP's hidden width.

        forward  = 2 N L (4 D^2 + 2 r D^2)     every block's qkv, proj, fc1, fc2 (2 FLOPs a multiply-add)
                 + 2 L (2 N^2 D)                attention's Q K^T and A V
                 + 2 (N - 1) 3 p^2 D + 2 D K    patch embedding and the head(s)
        training = 3 x forward                  backward costs about twice the forward

    Norms, softmax, GELU and the optimizer are left out (a few percent). DeiT-Tiny at 32 px
    (D 192, L 12, N 65, p 4, r 4) gives 2.19 GFLOP per training image.

    Notebooks: used in 04.
    """
    d, patches = embed_dim, (img_size // patch_size) ** 2
    tokens = patches + (2 if distilled else 1)
    blocks = depth * (2 * tokens * (4 * d * d + 2 * mlp_ratio * d * d) + 2 * 2 * tokens ** 2 * d)
    ends = 2 * patches * 3 * patch_size ** 2 * d + 2 * d * num_classes * (2 if distilled else 1)
    return 3 * (blocks + ends)
