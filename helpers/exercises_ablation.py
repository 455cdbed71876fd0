"""Checkers for notebook 05's exercises: they compare your answer with the ablation's numbers,
and accept every answer the data cannot tell apart from the best one."""
from __future__ import annotations

from helpers.ablate import INGREDIENTS, by_variant, contributions, leave_one_out_name
from helpers.stats import paired_difference

INGREDIENT_NAMES = tuple(name for name, _ in INGREDIENTS)


def _removal_costs(results: list[dict]) -> dict[str, dict]:
    """ingredient -> paired difference full - (full without it), for those measured."""
    return {r["ingredient"]: r["removed"] for r in contributions(results) if r["removed"] is not None}


def _names(answer, ordered: bool = False) -> list[str] | None:
    """`answer` as a list of names, or None unless it is a list (tuple, or set where the order does
    not matter) of strings (a None among the names would make sorted() raise instead of the
    checker giving a hint)."""
    if isinstance(answer, str) or ordered and isinstance(answer, (set, frozenset, dict)):
        return None  # a set's order is its hashes', which change from one Python process to the next
    try:
        names = list(answer)
    except TypeError:
        return None
    return names if all(isinstance(name, str) for name in names) else None


def misordered_pairs(prediction: list[str], results: list[dict]) -> list[tuple[str, str]]:
    """Pairs (a, b) with a ranked above b although removing b costs distinguishably more than
    removing a (paired over seeds: (full - b) - (full - a) = val(full-a) - val(full-b))."""
    val = by_variant(results, "final_val_acc")
    wrong = []
    for i, a in enumerate(prediction):
        for b in prediction[i + 1:]:
            d = paired_difference(val[leave_one_out_name(a)], val[leave_one_out_name(b)])  # > 0: removing b costs more
            if d is not None and d["distinguishable"] and d["mean"] > 0:
                wrong.append((a, b))
    return wrong


def check_ranking(prediction, results: list[dict]) -> bool:
    """Right when `prediction` lists the measured ingredients, most costly to remove first, in
    any order that the data does not contradict.

    Notebooks: used in 05.
    """
    costs = _removal_costs(results)
    if not costs:
        print("Not checkable yet: these results have no leave-one-out runs.")
        return False
    names = _names(prediction, ordered=True)
    if names is None or sorted(names) != sorted(costs):
        print(f"Not yet: list each of {sorted(costs)} once, in a list, the one whose removal costs most first "
              f"(cost: full minus full without it; a negative cost means removing it helps).")
        return False
    wrong = misordered_pairs(names, results)
    if not wrong:
        print("Correct: no pair in your order is contradicted by the data (ingredients whose costs are "
              "within noise of each other may come in either order).")
        return True
    print("Not quite: the data contradicts " + ", ".join(f"{a} above {b}" for a, b in wrong) + ".")
    return False


def within_noise(results: list[dict]) -> list[str]:
    """Ingredients whose removal changes the final validation accuracy by an amount not
    distinguishable from zero."""
    return [name for name, d in _removal_costs(results).items() if not d["distinguishable"]]


def check_within_noise(answer, results: list[dict]) -> bool:
    """Right when `answer` names exactly the ingredients whose removal a paired t-test (5 %) cannot
    tell from zero with the seeds there are.

    Notebooks: used in 05.
    """
    costs = _removal_costs(results)
    if not costs or all(d["se"] is None for d in costs.values()):
        print("Not checkable yet: with one seed per variant there is no measure of noise.")
        return False
    truth = sorted(within_noise(results))
    names = _names(answer)
    if names is None:
        print("Not yet: give a list of ingredient names (an empty list if the test tells every one from zero).")
        return False
    if sorted(names) == truth:
        print(f"Correct! {truth or 'none'}: a difference the seeds cannot tell from zero is not evidence.")
        return True
    if unknown := sorted(set(names) - set(_removal_costs(results))):
        print(f"Not yet: {unknown} {'is not an ingredient' if len(unknown) == 1 else 'are not ingredients'} "
              f"measured here; use the names {sorted(_removal_costs(results))}.")
        return False
    if len(set(names)) < len(names):
        print("Not yet: name each ingredient once.")
        return False
    print(f"Not yet: look at each 'removed' value without a *. (Names: {list(INGREDIENT_NAMES)}.)")
    return False
