"""DeiT's recipe as one switchable object: the CLI, notebook 04 and the ablations share it.

Field names and defaults follow the flags of DeiT's main.py (Touvron et al., 2021, Table 9):
RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, MixUp 0.8, CutMix 1.0, switch 0.5,
label smoothing 0.1, stochastic depth 0.1, repeated augmentation on, no distillation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from helpers.augment import BatchAugment, parse_rand_augment
from helpers.data import TensorBatches
from helpers.models import build_vit
from helpers.losses import DistillationLoss

DISTILLATION_TYPES = ("none", "soft", "hard")


@dataclass(frozen=True)
class Recipe:
    aa: str = "rand-m9-mstd0.5-inc1"  # RandAugment; "" turns it off
    reprob: float = 0.25  # random erasing probability
    mixup: float = 0.8  # MixUp alpha; 0 turns it off
    cutmix: float = 1.0  # CutMix alpha; 0 turns it off
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    drop_path: float = 0.1
    repeated_aug: bool = True
    distillation_type: str = "none"
    distillation_alpha: float = 0.5
    distillation_tau: float = 1.0
    distillation_kl: str = "numel"  # soft: KL summed and divided by B*K as in DeiT's code, or "batchmean"

    def __post_init__(self):
        if self.distillation_type not in DISTILLATION_TYPES:
            raise ValueError(f"distillation_type must be one of {DISTILLATION_TYPES}, "
                             f"not {self.distillation_type!r}.")
        if self.aa:
            parse_rand_augment(self.aa)  # a typo fails now, not after the first epoch

    @classmethod
    def plain(cls) -> "Recipe":
        """No DeiT ingredient: random crop + flip only (the baseline of notebook 00)."""
        return cls(aa="", reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0, drop_path=0.0,
                   repeated_aug=False)

    def but(self, **changes) -> "Recipe":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)

    def batch_transform(self, num_classes: int = 10, generator=None) -> BatchAugment:
        per_image = None
        if self.aa:
            from helpers.batch_randaugment import BatchRandAugment
            per_image = BatchRandAugment.from_string(self.aa, generator=generator)
        return BatchAugment(crop_flip=True, mixup=self.mixup, cutmix=self.cutmix,
                            switch_prob=self.mixup_switch_prob, mix_prob=self.mixup_prob,
                            smoothing=self.smoothing, reprob=self.reprob, num_classes=num_classes,
                            per_image=per_image, generator=generator)

    def build_model(self, **model_config):
        return build_vit(drop_path_rate=self.drop_path, distilled=self.distillation_type != "none",
                         **model_config)

    def loss_fn(self, teacher=None):
        """fit's loss_fn(outputs, targets, images); the teacher sees the student's exact inputs."""
        if self.distillation_type != "none" and teacher is None:
            raise ValueError(f"distillation_type={self.distillation_type!r} needs a teacher: pass "
                             f"teacher=helpers.teacher.load_or_train_teacher(...).")
        return DistillationLoss(teacher if self.distillation_type != "none" else None, self.distillation_type,
                                alpha=self.distillation_alpha, tau=self.distillation_tau,
                                smoothing=self.smoothing, kl_reduction=self.distillation_kl)

    def train_batches(self, arrays, batch_size: int, seed: int = 0, num_replicas: int = 1,
                      rank: int = 0) -> TensorBatches:
        return TensorBatches(arrays, batch_size, shuffle=True, seed=seed, drop_last=True,
                             num_replicas=num_replicas, rank=rank,
                             num_repeats=3 if self.repeated_aug else 1)
