"""The statistics of the ablation: means with standard errors, and paired differences.

A paired difference compares two variants trained with the same seeds (the same data order and
augmentation where they sample and augment alike, the same initial weights where they have one
model shape): the differences per seed remove much of the seed-to-seed noise that two
independent means would carry. "Distinguishable from zero" means a two-sided paired t-test
rejects a zero mean difference at the 5 % level (Student's t with n - 1 degrees of freedom),
each test on its own. An ablation table makes many such tests, so holm_rejections says which
of them still hold when the whole table must keep its chance of any false claim under 5 %.
"""
from __future__ import annotations

import math
import statistics

SIGNIFICANCE = 0.05


def mean_and_se(values: list[float]) -> tuple[float, float | None]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); None with one value."""
    if not values:
        raise ValueError("mean_and_se needs at least one value.")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None)


def paired_difference(a: dict, b: dict) -> dict | None:
    """a - b over the seeds both have ({seed: value} each): mean, se, n, t, p and whether the
    difference is distinguishable from zero. None when they share no seed.

    Notebooks: used in 05.
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    mean, se = mean_and_se(diffs)
    row = {"mean": mean, "se": se, "n": len(seeds), "t": None, "p": None, "distinguishable": False}
    if se is not None:
        if se == 0:  # identical differences: zero only if they are all zero
            row.update(t=math.copysign(math.inf, mean) if mean else 0.0, p=0.0 if mean else 1.0,
                       distinguishable=mean != 0)
        else:
            t = mean / se
            p = 2 * stats.t.sf(abs(t), df=len(seeds) - 1)
            row.update(t=t, p=float(p), distinguishable=bool(p < SIGNIFICANCE))
    return row


def holm_rejections(p_values: list[float | None], level: float = SIGNIFICANCE) -> list[bool]:
    """Which of m tests reject at `level` under Holm's step-down correction (Holm 1979, "A simple
    sequentially rejective multiple test procedure"): the k-th smallest p (k = 0, 1, ...) must
    be below level / (m - k), and the first one that is not stops the rejections. This keeps
    the chance of any false rejection among the m below `level`. A None (no test) is not counted.
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    rejected = [False] * len(p_values)
    for k, (p, i) in enumerate(tested):
        if p >= level / (len(tested) - k):
            break
        rejected[i] = True
    return rejected


def critical_t(n: int, level: float = SIGNIFICANCE) -> float:
    """How many standard errors a mean paired difference over n seeds must lie from zero for a
    two-sided paired t-test at `level` to call it distinguishable: Student's t with n - 1
    degrees of freedom (about 4.30 for 3 seeds at 5 %).

    Notebooks: used in 05.
    """
    from scipy import stats

    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 seeds, not {n}.")
    return float(stats.t.ppf(1 - level / 2, df=n - 1))


def format_estimate(mean: float, se: float | None, signed: bool = False) -> str:
    """'+1.23 ± 0.45' (or without ± when there is no standard error).

    Notebooks: used in 05.
    """
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text + (f" ± {se:.2f}" if se is not None else "")
