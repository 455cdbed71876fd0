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
    try:
        return fn(*_copies(args)), None
    except NotImplementedError:
        return None, "the function still raises NotImplementedError; replace the TODO with your code."
    except Exception as err:  # a student's bug should become a hint, not a traceback
        return None, f"calling it raised {type(err).__name__}: {err}"


def _copies(args) -> list:
    return [a.clone() if isinstance(a, torch.Tensor) else a for a in args]


def check_choice(answer, right: str, praise: str, hints: dict) -> bool:
    """A multiple-choice answer "a" to "d" (any case; "b", "b)", "(b)" and "b." alike): `praise`
    when right, the chosen option's hint when not."""
    choice = str(answer).strip().lower().strip("().") if answer is not None else ""
    if choice not in ("a", "b", "c", "d"):
        return report(False, f'answer with one of "a", "b", "c" or "d", not {answer!r}.')
    return report(True, praise) if choice == right else report(False, hints[choice])


def gradient_problem(fn, reference, args, trained: dict[int, str]) -> str | None:
    """A loss with the right value can still fail to train: None if fn's loss is a tensor whose
    gradients, with respect to the args at the positions in `trained` (named by its values), are
    reference's; else a not-yet message. A .item(), .detach() or torch.no_grad() cuts the path."""
    def grads(loss_fn):
        leaves = {k: args[k].clone().requires_grad_() for k in trained}
        with torch.enable_grad():  # copies of the leaves: a student's in-place `logits /= tau` is fine
            loss = loss_fn(*_copies([leaves.get(k, a) for k, a in enumerate(args)]))
            if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
                return None
            found = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True)
        return dict(zip(trained.values(), found))

    try:
        got = grads(fn)
    except Exception as err:  # the value was right, so this is a bug in the gradient's path
        return f"backward() through your loss raised {type(err).__name__}: {err}"
    if got is None:
        return ("the value is right, but training needs a tensor still connected to the logits to call "
                "backward() on: no .item(), float(), .detach() or torch.no_grad() on the way.")
    for name, want in grads(reference).items():
        if got[name] is None or not torch.allclose(got[name], want, rtol=1e-4, atol=1e-6):
            wrong = "no gradient reaches" if got[name] is None else "the gradient differs from the reference's for"
            return (f"the value is right, but {wrong} {name}: is a part of the loss that depends on it "
                    f"detached, or computed under torch.no_grad()?")
    return None
