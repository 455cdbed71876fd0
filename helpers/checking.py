"""What every exercise checker shares: run the student's code safely, print the verdict."""
from __future__ import annotations

import torch


def report(ok: bool, message: str) -> bool:
    print(("Correct! " if ok else "Not yet: ") + message)
    return ok


def attempt(fn, *args):
    """(result, None), or (None, a not-yet message) when the student's function fails. Tensors are
    passed as copies: a student's in-place edit (`logits /= tau`) must not change the checker's
    cases or its expected values."""
    args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, "the function still raises NotImplementedError; replace the TODO with your code."
    except Exception as err:  # a student's bug should become a hint, not a traceback
        return None, f"calling it raised {type(err).__name__}: {err}"


def check_choice(answer, right: str, praise: str, hints: dict) -> bool:
    """A multiple-choice answer "a" to "d" (any case; "b", "b)", "(b)" and "b." alike): `praise`
    when right, the chosen option's hint when not."""
    choice = str(answer).strip().lower().strip("().") if answer is not None else ""
    if choice not in ("a", "b", "c", "d"):
        return report(False, f'answer with one of "a", "b", "c" or "d", not {answer!r}.')
    return report(True, praise) if choice == right else report(False, hints[choice])
