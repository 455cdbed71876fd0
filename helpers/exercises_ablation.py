"""Checkers for notebook 05's exercises: they compare your answer with the ablation's numbers."""
from __future__ import annotations

from helpers.ablate import INGREDIENTS, contributions

INGREDIENT_NAMES = tuple(name for name, _ in INGREDIENTS)


def leave_one_out_ranking(results: list[dict]) -> list[str]:
    """Ingredients from the one whose removal costs most to the one that costs least."""
    rows = [r for r in contributions(results) if r["leave_one_out"] is not None]
    return [r["ingredient"] for r in sorted(rows, key=lambda r: -r["leave_one_out"])]


def check_ranking(prediction, results: list[dict]) -> bool:
    """Right when `prediction` lists the ingredients in the data's leave-one-out order."""
    truth = leave_one_out_ranking(results)
    if not truth:
        print("Not checkable yet: these results have no leave-one-out runs.")
        return False
    if prediction is None or sorted(prediction) != sorted(truth):
        print(f"Not yet: list each of {sorted(truth)} once, most important first.")
        return False
    if list(prediction) == truth:
        print("Correct! That is the order the data shows.")
        return True
    hits = sum(p == t for p, t in zip(prediction, truth))
    print(f"Not quite: {hits} of {len(truth)} in the right place. The data says: {truth}. "
          f"Compare with your reasoning - which surprised you?")
    return False


def within_noise(results: list[dict]) -> list[str]:
    """Ingredients whose leave-one-out effect is smaller than the seed spread."""
    return [r["ingredient"] for r in contributions(results)
            if r["leave_one_out"] is not None and r["noise"] is not None and abs(r["leave_one_out"]) <= r["noise"]]


def check_within_noise(answer, results: list[dict]) -> bool:
    """Right when `answer` names exactly the ingredients whose effect is within seed noise."""
    if all(r["noise"] is None for r in contributions(results)):
        print("Not checkable yet: with one seed per variant there is no measure of noise.")
        return False
    truth = sorted(within_noise(results))
    if answer is None:
        print("Not yet: give a list of ingredient names (an empty list if none is within noise).")
        return False
    if sorted(answer) == truth:
        print(f"Correct! {truth or 'none'}: a difference smaller than the spread between seeds is not evidence.")
        return True
    print(f"Not yet: compare each |removed| value with its seed spread. (Names: {list(INGREDIENT_NAMES)}.)")
    return False
