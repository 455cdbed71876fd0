"""Checkers for notebook 03's exercises: each prints right or not-yet with a hint, never raises.

Every checker returns True when the answer is right, so a notebook (or a test) can assert on it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from helpers.checking import attempt, check_choice, gradient_problem, report
from helpers.losses import hard_distillation_term, soft_distillation_term


def _cases(seed: int = 0):
    """Fixed small logits: 6 images, 5 classes; the teacher disagrees with the labels on some."""
    g = torch.Generator().manual_seed(seed)
    cls, dist, teacher = (torch.randn(6, 5, generator=g) * 2 for _ in range(3))
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    return cls, dist, labels, teacher


def _as_float(got, reduce: str) -> tuple[float | None, str | None]:
    """The student's loss as a float, or a not-yet message that says how to `reduce` it to one."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        return float(got), None
    if isinstance(got, (int, float)):
        return float(got), None
    shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
    return None, f"return one number (a 0-dim tensor), not {shape}; {reduce}."


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(1.0, abs(b))


# --- Exercise 1: the hard-distillation loss ------------------------------------------------------

def _hard_loss(cls, dist, labels, teacher):
    return 0.5 * F.cross_entropy(cls, labels) + 0.5 * hard_distillation_term(dist, teacher)


def check_hard_distillation_loss(fn) -> bool:
    """fn(cls_logits, dist_logits, labels, teacher_logits) -> 1/2 CE(cls, labels) + 1/2 CE(dist, argmax teacher).

    Notebooks: used in 03.
    """
    for seed in (0, 1):
        cls, dist, labels, teacher = _cases(seed)
        got, failure = attempt(fn, cls, dist, labels, teacher)
        if failure:
            return report(False, failure)
        got, failure = _as_float(got, "average over the batch")
        if failure:
            return report(False, failure)
        ce_cls = F.cross_entropy(cls, labels).item()
        want = _hard_loss(cls, dist, labels, teacher).item()
        if _close(got, want):
            failure = gradient_problem(fn, _hard_loss, (cls, dist, labels, teacher),
                                       {0: "cls_logits", 1: "dist_logits"})
            if failure:
                return report(False, failure)
            continue
        soft_ce = -(teacher.softmax(-1) * dist.log_softmax(-1)).sum(-1).mean().item()
        if _close(got, 0.5 * ce_cls + 0.5 * soft_ce):
            return report(False, "that is cross-entropy against the teacher's probabilities; hard "
                                  "distillation uses its decision: teacher_logits.argmax(dim=-1).")
        if _close(got, ce_cls + hard_distillation_term(dist, teacher).item()):
            return report(False, "both terms are right but the weights are 1/2 each, not 1.")
        if _close(got, 0.5 * ce_cls + 0.5 * F.cross_entropy(dist, labels).item()):
            return report(False, "the DIST head should learn the teacher's labels, not the true ones.")
        swapped = 0.5 * F.cross_entropy(dist, labels).item() + 0.5 * hard_distillation_term(cls, teacher).item()
        if _close(got, swapped):
            return report(False, "the heads are swapped: CLS learns the labels, DIST the teacher.")
        return report(False, f"expected {want:.4f}, got {got:.4f}. Check each cross-entropy on its own.")
    return report(True, "1/2 CE(CLS, y) + 1/2 CE(DIST, argmax teacher), the paper's hard distillation.")


# --- Exercise 2: the soft-distillation term ------------------------------------------------------

def check_soft_distillation_term(fn) -> bool:
    """fn(dist_logits, teacher_logits, tau) -> tau^2 KL(softmax(teacher/tau) || softmax(dist/tau)), summed / B*K.

    Notebooks: used in 03.
    """
    for seed, tau in ((0, 3.0), (1, 1.5)):
        _, dist, _, teacher = _cases(seed)
        got, failure = attempt(fn, dist, teacher, tau)
        if failure:
            return report(False, failure)
        got, failure = _as_float(got, "sum the KL over every element and divide by batch x classes")
        if failure:
            return report(False, failure)
        want = soft_distillation_term(dist, teacher, tau).item()
        if _close(got, want):
            failure = gradient_problem(fn, soft_distillation_term, (dist, teacher, tau), {0: "dist_logits"})
            if failure:
                return report(False, failure)
            continue
        batch, classes = dist.shape
        if _close(got, want * classes):
            return report(False, f"you divided by the batch size ('batchmean'); DeiT's code divides the sum "
                                  f"by every element, batch x classes = {batch * classes}.")
        if _close(got, want / tau ** 2):
            return report(False, "multiply by tau**2, which keeps the gradient's size independent of tau.")
        reversed_kl = soft_distillation_term(teacher, dist, tau).item()
        if _close(got, reversed_kl):
            return report(False, "the KL is the wrong way round: the teacher's distribution is the target, "
                                  "KL(p_teacher || p_student) = sum p_teacher (log p_teacher - log p_student).")
        no_temperature = soft_distillation_term(dist, teacher, 1.0).item()  # includes 1**2
        if _close(got, no_temperature * tau ** 2) or _close(got, no_temperature):
            return report(False, "divide both the student's and the teacher's logits by tau before the softmax.")
        if _close(got, want / tau):
            return report(False, "multiply by tau**2, not tau: the softened gradients are 1/tau**2 as large.")
        if got != got:  # NaN
            return report(False, "the loss is NaN: F.kl_div takes the student's LOG-probabilities first, and the "
                                  "teacher's probabilities second (or its log-probabilities with log_target=True).")
        if any(_close(got, slip) for slip in _kl_slips(dist, teacher, tau)):
            return report(False, "F.kl_div(input, target) wants input = the student's log_softmax(dist / tau) "
                                  "and target = the teacher's softmax(teacher / tau), both at temperature tau.")
        return report(False, f"for tau={tau} expected {want:.5f}, got {got:.5f}.")
    return report(True, "tau^2 KL(teacher || student) at temperature tau, normalized like DeiT's code.")


def _kl_slips(dist, teacher, tau) -> list[float]:
    """Values of the usual misuses of F.kl_div, each normalized and scaled as the right one."""
    def term(student, target, **kwargs):
        return (F.kl_div(student, target, reduction="sum", **kwargs) * tau ** 2 / dist.numel()).item()
    log_p, p = F.log_softmax(dist / tau, -1), F.softmax(dist / tau, -1)
    return [term(p, F.softmax(teacher / tau, -1)),                  # probabilities as the input
            term(F.log_softmax(dist, -1), F.softmax(teacher / tau, -1)),  # tau on the teacher's side only
            term(log_p, F.softmax(teacher, -1))]                    # tau on the student's side only


# --- Exercise 3: the DIST head on the teacher's mistakes -----------------------------------------

MISTAKES_QUESTION = """In hard distillation, take a training image on which the teacher's decision is WRONG
(it differs from the label). What is the DIST head trained to output on it, and so what should
you expect of the DIST head, against the CLS head, on the test images the teacher gets wrong?
  a) The true label, like the CLS head: the dataset's labels are the targets of both heads.
  b) The teacher's wrong class: so expect the DIST head to repeat the teacher's mistakes more
     often than the CLS head does (a prediction to check, not a guarantee).
  c) A uniform distribution: the teacher's mistakes cancel out in training.
  d) Whatever the CLS head outputs: both heads read the same final features."""

_MISTAKES_HINTS = {
    "a": "look at the hard-distillation loss of exercise 1: the DIST head's only target is the "
         "teacher's decision, mistakes included; the labels reach it only through the shared layers.",
    "c": "hard distillation gives the DIST head one definite class per image, never a uniform target.",
    "d": "the two heads read different tokens (positions 0 and 1), which stay different to the end.",
}


def check_mistakes_question(answer) -> bool:
    """Multiple choice: pass "a", "b", "c" or "d" (see MISTAKES_QUESTION).

    Notebooks: used in 03.
    """
    return check_choice(answer, "b", "the DIST head is trained to copy the teacher's decisions, mistakes "
                                     "included. Check the prediction in the lines printed above: a barely "
                                     "trained student may not show it yet. (Copying is not the CNN's "
                                     "inductive bias helping the student: that is for accuracy to show.)",
                        _MISTAKES_HINTS)
