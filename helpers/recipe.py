"""DeiT's recipe as one switchable object: the CLI, notebook 04 and the ablations share it.

Field names and defaults follow the flags of DeiT's main.py (Touvron et al., 2021, Table 9):
RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, MixUp 0.8, CutMix 1.0, switch 0.5,
label smoothing 0.1, stochastic depth 0.1, repeated augmentation on, no dropout, no distillation; except
soft distillation's defaults, which are the paper's (tau 3, lambda 0.1; main.py has 1.0 and 0.5).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from helpers.auto_augment import batch_policy, check_aa
from helpers.batch_augment import BatchAugment
from helpers.constants import OPTIMIZERS
from helpers.data import TensorBatches
from helpers.errors import check_choice
from helpers.models import build_vit
from helpers.losses import DEFAULT_ALPHA, PAPER_TAU, DistillationLoss

DISTILLATION_TYPES = ("none", "soft", "hard")
# (field, lowest, highest): probabilities in [0, 1], Beta alphas non-negative, smoothing and drop
# rates below 1 (at 1 nothing is learned or every block is dropped), a weight in [0, 1]
RANGES = (("reprob", 0, 1), ("mixup_prob", 0, 1), ("mixup_switch_prob", 0, 1), ("mixup", 0, float("inf")),
          ("cutmix", 0, float("inf")), ("smoothing", 0, 0.99), ("drop_path", 0, 0.99), ("drop", 0, 0.99),
          ("distillation_alpha", 0, 1))


@dataclass(frozen=True)
class Recipe:
    """Notebooks: used in 02, 03, 04."""
    aa: str = "rand-m9-mstd0.5-inc1"  # RandAugment; "original": AutoAugment's ImageNet policy; "" turns it off
    reprob: float = 0.25  # random erasing probability
    mixup: float = 0.8  # MixUp alpha; 0 turns it off
    cutmix: float = 1.0  # CutMix alpha; 0 turns it off
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    drop_path: float = 0.1
    drop: float = 0.0  # dropout (main.py's --drop); DeiT leaves it out, ViT-B trained with 0.1 (Table 9)
    repeated_aug: bool = True
    opt: str = "adamw"  # the pre-training optimizer, a column of Table 8; "sgd" takes the profile's SGD settings
    distillation_type: str = "none"
    # None: the kind's weight, 1/2 for hard and the paper's lambda 0.1 for soft. The soft default
    # is the paper's (Section 6: tau 3, lambda 0.1); DeiT's main.py defaults to
    # --distillation-alpha 0.5 --distillation-tau 1.0 for both kinds: pass those to train as it does.
    distillation_alpha: float | None = None
    distillation_tau: float = PAPER_TAU  # soft only
    distillation_kl: str = "numel"  # soft: KL summed and divided by B*K as in DeiT's code, or "batchmean"

    def __post_init__(self):
        check_choice("distillation_type", self.distillation_type, DISTILLATION_TYPES)
        check_choice("opt", self.opt, OPTIMIZERS)
        check_aa(self.aa)  # a typo fails now, not after the first epoch
        for name, low, high in RANGES:  # a value out of range fails now too, with its name
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name} must lie in [{low}, {high}], not {value}.")
        if self.distillation_tau <= 0:
            raise ValueError(f"distillation_tau must be above 0, not {self.distillation_tau}.")
        check_choice("distillation_kl", self.distillation_kl, ("numel", "batchmean"))

    @classmethod
    def plain(cls) -> "Recipe":
        """No DeiT ingredient: random crop + flip only (the baseline of notebook 00)."""
        return cls(aa="", reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0, drop_path=0.0,
                   repeated_aug=False)

    def but(self, **changes) -> "Recipe":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)

    def comparable(self) -> dict:
        """The settings that change what a run trains: distillation settings its kind ignores are
        dropped and the default alpha is resolved, so two recipes that train alike compare equal."""
        return comparable_recipe(self.as_dict())

    def batch_transform(self, num_classes: int = 10, generator=None) -> BatchAugment:
        per_image = None
        if self.aa:
            per_image = batch_policy(self.aa, generator=generator)
        return BatchAugment(crop_flip=True, mixup=self.mixup, cutmix=self.cutmix,
                            switch_prob=self.mixup_switch_prob, mix_prob=self.mixup_prob,
                            smoothing=self.smoothing, reprob=self.reprob, num_classes=num_classes,
                            per_image=per_image, generator=generator)

    def build_model(self, **model_config):
        return build_vit(drop_path_rate=self.drop_path, drop_rate=self.drop,
                         distilled=self.distillation_type != "none", **model_config)

    def loss_fn(self, teacher=None):
        """fit's loss_fn(outputs, targets, images); the teacher sees the student's exact inputs."""
        if self.distillation_type != "none" and teacher is None:
            raise ValueError(f"distillation_type={self.distillation_type!r} needs a teacher: pass "
                             f"teacher=helpers.teacher.load_or_train_teacher(...).")
        return DistillationLoss(teacher if self.distillation_type != "none" else None, self.distillation_type,
                                alpha=self.distillation_alpha, tau=self.distillation_tau,
                                smoothing=self.smoothing, kl_reduction=self.distillation_kl)

    @property
    def num_repeats(self) -> int:
        """Copies of each image an epoch draws: DeiT's RASampler makes 3 (its samplers.py)."""
        return 3 if self.repeated_aug else 1

    def train_batches(self, arrays, batch_size: int, seed: int = 0, num_replicas: int = 1,
                      rank: int = 0) -> TensorBatches:
        return TensorBatches(arrays, batch_size, shuffle=True, seed=seed, drop_last=True,
                             num_replicas=num_replicas, rank=rank, num_repeats=self.num_repeats)


def comparable_recipe(recipe: dict) -> dict:
    """Recipe.comparable for a recipe saved as a dict; fields added since take their defaults."""
    fields = {**Recipe().as_dict(), **recipe}
    kind = fields["distillation_type"]
    if fields["distillation_alpha"] is None and kind != "none":
        fields["distillation_alpha"] = DEFAULT_ALPHA[kind]
    unused = {"none": ("distillation_alpha", "distillation_tau", "distillation_kl"),
              "hard": ("distillation_tau", "distillation_kl"), "soft": ()}[kind]
    return {k: v for k, v in fields.items() if k not in unused}
