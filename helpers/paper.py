"""Numbers from the DeiT paper that the course compares itself with, each with where it stands.

Touvron et al., "Training data-efficient image transformers & distillation through attention",
ICML 2021, numbered as in arXiv 2012.12877 v2 (the ICML version may number its tables otherwise).
Table 8, "Ablation study on training methods on ImageNet": DeiT-B, hyper-parameters of Table 9
(300 epochs), top-1 accuracy (%) after training at 224x224 and after fine-tuning at 384x384.
"""
from __future__ import annotations

# The rows that switch off one of the course's ingredients, by the course's ingredient name.
# (None marks an ingredient the table does not ablate.) An asterisk in the paper marks a run
# that did not train well; those rows are flagged `converged: False`.
TABLE_8_DEFAULT = {"top1_224": 81.8, "pm_224": 0.2, "top1_384": 83.1, "pm_384": 0.1}
TABLE_8_WITHOUT = {
    "randaugment": {"top1_224": 79.6, "top1_384": 80.4, "converged": True},
    "mixup": {"top1_224": 78.7, "top1_384": 79.8, "converged": True},
    "cutmix": {"top1_224": 80.0, "top1_384": 80.6, "converged": True},
    "random-erasing": {"top1_224": 4.3, "top1_384": 0.1, "converged": False},
    "stochastic-depth": {"top1_224": 3.4, "top1_384": 0.1, "converged": False},
    "repeated-aug": {"top1_224": 76.5, "top1_384": 77.4, "converged": True},
    "label-smoothing": None,
}
# Other rows of the same table, quoted for completeness.
TABLE_8_OTHER = {
    "without mixup and cutmix": {"top1_224": 75.8, "top1_384": 76.7},
    "autoaugment instead of randaugment": {"top1_224": 81.2, "top1_384": 81.9},
    "with dropout": {"top1_224": 81.3, "top1_384": 83.1},
    "with EMA": {"top1_224": 81.9, "top1_384": 83.1},
    "SGD for pre-training": {"top1_224": 74.5, "top1_384": 77.3},
}
# Section 6 ("Initialization and hyper-parameters"): tau and lambda of the usual (soft)
# distillation, following Cho et al. (2019).
SOFT_DISTILLATION_TAU, SOFT_DISTILLATION_LAMBDA = 3.0, 0.1


def table_8_delta(ingredient: str) -> float | None:
    """The paper's leave-one-out change (points at 224 px) from removing `ingredient`; None if
    the table has no such row. Check table_8_converged first: a run that did not train well
    loses nearly everything, which is not the ingredient's worth in a working recipe."""
    row = TABLE_8_WITHOUT.get(ingredient)
    return None if row is None else round(TABLE_8_DEFAULT["top1_224"] - row["top1_224"], 1)


def table_8_converged(ingredient: str) -> bool | None:
    """False where the paper marks the run without `ingredient` as not training well."""
    row = TABLE_8_WITHOUT.get(ingredient)
    return None if row is None else row["converged"]
