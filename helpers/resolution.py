"""Fine-tuning at a higher resolution, DeiT's last step (Touvron et al., 2021, arXiv 2012.12877v2).

DeiT trains at 224x224 and fine-tunes at 384x384 (Section 6, "Fine-tuning at different
resolution"; Table 8's last column). The patches keep their size, so a larger image gives more of
them: the transformer's weights do not depend on how many tokens it reads, but the position
embeddings do, one per patch. Their grid is resampled like an image with one channel per
embedding dimension, with bicubic interpolation, which the paper prefers because bilinear
interpolation shrinks the vectors' norm; the [CLS] and [DIST] tokens' embeddings are kept.
DeiT's main.py resamples with align_corners=False and no antialiasing, as here; timm's
resample_abs_pos_embed antialiases by default (notebook 04, section 7, measures the difference).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from helpers.constants import IMAGE_SIZE, RESULTS
from helpers.data import CIFAR10Arrays, TensorBatches
from helpers.files import seed_results
from helpers.stats import format_estimate, mean_and_se, paired_difference
from helpers.train import EVAL_BATCH, TrainConfig, evaluate

MODES = ("bicubic", "bilinear", "nearest")


def resample_pos_embed(pos_embed: torch.Tensor, grid: int, num_prefix_tokens: int = 1,
                       mode: str = "bicubic") -> torch.Tensor:
    """(1, prefix + g*g, D) position embeddings -> (1, prefix + grid*grid, D).

    The first num_prefix_tokens rows ([CLS], and [DIST] in a distilled ViT) are kept as they are;
    the g x g grid of the patches' rows is resampled to grid x grid with `mode`.

    Notebooks: built in 04 (section 7).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}; DeiT uses 'bicubic'.")
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"Expected position embeddings of shape (1, tokens, dim), not {tuple(pos_embed.shape)}.")
    if not 0 <= num_prefix_tokens < pos_embed.shape[1]:
        raise ValueError(f"num_prefix_tokens must be in [0, {pos_embed.shape[1]}), not {num_prefix_tokens}.")
    if grid < 1:
        raise ValueError(f"grid must be at least 1 patch per side, not {grid}.")
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    side, dim = math.isqrt(patches.shape[1]), patches.shape[2]
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch embeddings do not form a square grid: is "
                         f"num_prefix_tokens ({num_prefix_tokens}) right? A distilled ViT has 2.")
    if grid == side:  # exactly the same embeddings, as timm returns them
        return pos_embed.clone()
    image = patches.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()  # one channel per dim
    corners = {} if mode == "nearest" else {"align_corners": False}
    resized = F.interpolate(image, size=(grid, grid), mode=mode, **corners)
    resized = resized.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)
    return torch.cat([prefix, resized], dim=1)


def at_resolution(model: nn.Module, img_size: int, mode: str = "bicubic") -> nn.Module:
    """A copy of the course's ViT that reads img_size x img_size images: the same weights, and the
    position embeddings resampled to the larger (or smaller) grid of patches. `model` is unchanged.

    Notebooks: used in 04.
    """
    patch = model.patch_embed.patch_size
    if img_size < patch or img_size % patch:
        raise ValueError(f"img_size {img_size} is not a positive multiple of the patch size {patch}: "
                         f"try {max(1, round(img_size / patch)) * patch}.")
    resized = copy.deepcopy(model)
    resized.patch_embed.set_img_size(img_size)
    with torch.no_grad():
        resized.pos_embed = nn.Parameter(resample_pos_embed(model.pos_embed.detach(), img_size // patch,
                                                            model.num_prefix_tokens, mode))
    return resized


class ResizeInputs(nn.Module):
    """`model` that sees its inputs resized to size x size first (bicubic, antialiased), e.g. a CNN
    teacher trained at 32 px distilling a student fine-tuned at 48 px: on the enlarged images
    themselves such a teacher is far less accurate (notebook 04, section 7, measures it).

    Notebooks: used in 04.
    """

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != (self.size, self.size):
            # Apple's mps has antialiased bicubic only from torch 2.8 (pytorch/pytorch#149378): the CPU does it
            there = images.cpu() if images.device.type == "mps" else images
            images = F.interpolate(there, size=(self.size, self.size), mode="bicubic", align_corners=False,
                                   antialias=True).to(images.device)
        return self.model(images)


def upsample_images(arrays: CIFAR10Arrays, size: int, chunk: int = 5000) -> CIFAR10Arrays:
    """The same images at size x size pixels, uint8: bicubic with antialiasing, as Pillow's bicubic
    resize and torchvision's Resize(interpolation=BICUBIC) on tensors do, rounded and clipped to 0..255."""
    if size < 1:
        raise ValueError(f"size must be at least 1 pixel, not {size}.")
    if tuple(arrays.images.shape[1:3]) == (size, size):
        return arrays
    pieces = []
    for start in range(0, len(arrays), chunk):  # a float copy of all 45,000 images would take 1.2 GB at 48 px
        x = arrays.images[start:start + chunk].permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        pieces.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    images = torch.cat(pieces) if pieces else arrays.images.new_zeros((0, size, size, 3))
    return CIFAR10Arrays(images, arrays.labels, arrays.classes)


def finetune_overrides(profile) -> dict:
    """TrainConfig fields for fine-tuning a model the profile trained, in DeiT's proportions: its
    fine-tuning command (README_deit.md: 30 epochs, --lr 5e-6 --min-lr 5e-6 --weight-decay 1e-8,
    after 300 epochs at 5e-4) and main.py's defaults (5 warmup epochs from --warmup-lr 1e-6).
    So a tenth of the epochs, a hundredth of the learning rate held constant after a warmup over a
    sixth of them from a fifth of it, and almost no weight decay. The rest of the recipe is kept,
    stochastic depth included; DeiT's main.py of the paper's time instead fine-tunes with the model in
    eval mode (set_training_mode=args.finetune == '', "keep in eval mode during finetuning"), which
    turns stochastic depth off; its later versions made that a flag, --train-mode, on by default.

    Notebooks: used in 04.
    """
    epochs = max(1, round(profile.epochs / 10))
    lr = profile.lr / 100
    # min_lr and warmup_lr are not scaled with the batch, lr is: the floor is set to the scaled peak.
    scaled = TrainConfig(lr=lr, batch_size=profile.batch_size).scaled_lr
    return dict(epochs=epochs, lr=lr, min_lr=scaled, warmup_lr=scaled / 5,
                warmup_epochs=round(epochs / 6), weight_decay=1e-8)


def _val_acc(model: nn.Module, arrays: CIFAR10Arrays, device) -> float:
    return evaluate(model, TensorBatches(arrays, EVAL_BATCH, shuffle=False).to(device), device)["val_acc"]


def _mean_norm(model: nn.Module) -> float:  # of the patches' position embeddings
    return model.pos_embed[0, model.num_prefix_tokens:].norm(dim=-1).mean().item()


def before_finetuning(student: nn.Module, teacher: nn.Module, val: CIFAR10Arrays, size: int, device) -> dict:
    """What enlarging the images costs before any fine-tuning, in validation accuracy (%): the
    student at its own size, then at `size` with bicubic and with bilinear position embeddings
    (with their mean norm as a share of the trained ones); the teacher at its own size, on the
    enlarged images, and on them made IMAGE_SIZE again.

    Notebooks: used in 04.
    """
    enlarged = upsample_images(val, size)
    found = {"student": {"own_size": _val_acc(student, val, device)}}
    for mode in ("bicubic", "bilinear"):
        resized = at_resolution(student, size, mode)
        found["student"][mode] = {"val_acc": _val_acc(resized, enlarged, device),
                                  "norm_ratio": _mean_norm(resized) / _mean_norm(student)}
    found["teacher"] = {"own_size": _val_acc(teacher, val, device), "enlarged": _val_acc(teacher, enlarged, device),
                        "enlarged_resized": _val_acc(ResizeInputs(teacher, IMAGE_SIZE), enlarged, device)}
    return found


# --- the committed reference runs (benchmarks/finetune_resolution.py) ------------------------------

FINETUNE_RESULTS = RESULTS / "finetune_resolution"
FINETUNE_SIZE = 48  # 1.5 x 32 px (DeiT: 384 / 224 = 1.71), for tokens a laptop can afford
# The fine-tunings each seed runs, by name: (image size, whether the teacher sees its own size).
FINETUNINGS = {"48px": (FINETUNE_SIZE, True), "48px_teacher_enlarged": (FINETUNE_SIZE, False),
               "32px": (IMAGE_SIZE, True)}


def finetune_results(profile_name: str, folder: Path = FINETUNE_RESULTS) -> list[dict]:
    """The per-seed results of one profile, seed order (none yet: an empty list).

    Notebooks: used in 04.
    """
    return seed_results(folder / profile_name)


def describe_finetuning(results: list[dict]) -> str:
    """Means ± standard errors over seeds, then the paired differences that answer the questions.

    Notebooks: used in 04.
    """
    def by_seed(get):
        return {r["seed"]: get(r) for r in results}

    def unfinetuned(mode):
        return by_seed(lambda r: r["before"]["student"][mode]["val_acc"])

    def finetuned(name):
        return by_seed(lambda r: r["finetuned"][name]["val_acc"])

    def line(label, values: dict):
        return f"  {label:58s} {format_estimate(*mean_and_se(list(values.values())))}"

    first = results[0]
    size, epochs = first["size"], first["settings"]["epochs"]
    teacher = {seen: by_seed(lambda r, s=seen: r["before"]["teacher"][s])
               for seen in ("own_size", "enlarged", "enlarged_resized")}
    lines = [f"{len(results)} seed(s), profile {first['profile']}: validation accuracy %, mean ± s.e.",
             line("the student, at 32 px", by_seed(lambda r: r["before"]["student"]["own_size"]))]
    for mode in ("bicubic", "bilinear"):
        lines += [line(f"  at {size} px, {mode} position embeddings, no fine-tuning", unfinetuned(mode)),
                  line("    their mean norm, % of the trained ones",
                       by_seed(lambda r, m=mode: 100 * r["before"]["student"][m]["norm_ratio"]))]
    lines += [line("the teacher (the same for every seed), at 32 px", teacher["own_size"]),
              line(f"  on the {size}-px images", teacher["enlarged"]),
              line("  on them made 32 px again", teacher["enlarged_resized"]),
              line(f"+ {epochs} epochs at {size} px, the teacher at 32 px", finetuned("48px")),
              line(f"+ {epochs} epochs at {size} px, the teacher at {size} px", finetuned("48px_teacher_enlarged")),
              line(f"+ {epochs} epochs at 32 px (the control)", finetuned("32px")),
              "paired differences (points), * distinguishable from zero (paired t-test, 5 %):"]
    for label, a, b in [(f"at {size} px, no fine-tuning: bicubic minus bilinear", unfinetuned("bicubic"),
                         unfinetuned("bilinear")),
                        (f"fine-tuned at {size} px minus at 32 px", finetuned("48px"), finetuned("32px")),
                        (f"teacher at 32 px minus at {size} px", finetuned("48px"), finetuned("48px_teacher_enlarged"))]:
        d = paired_difference(a, b)
        lines.append(f"  {label:58s} {format_estimate(d['mean'], d['se'], signed=True)}{'*' * d['distinguishable']}")
    return "\n".join(lines)
