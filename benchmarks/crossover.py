"""Where does DeiT's recipe overtake the plain ViT? Validation accuracy against epochs, plain vs
the full recipe, seed by seed, on a laptop-sized setting (issue: the premise on a laptop).

    python -m benchmarks.crossover --train-per-class 200 --epochs 400 --seeds 3 --threads 1
    python -m benchmarks.crossover --train-per-class 50 --epochs 800 --seeds 3 --threads 1 \\
        --results-dir results/crossover/50pc-800ep      # fewer images: plain over-fits sooner
    python -m benchmarks.crossover --train-per-class 50 --epochs 1600 --seeds 3 --threads 1 \\
        --results-dir results/crossover/50pc-1600ep     # a schedule long enough for the recipe to pay off

Trains on `train-per-class` images per class and validates on a held-out split of the training
set (helpers.data.train_validation_split), the same split for every run. Every `--seen-every`
epochs it also records the accuracy on a fixed sample of the (unaugmented) training images, so
over-fitting shows as the gap between the two. Seed k gives both recipes the same initial
weights. Each (recipe, seed) writes results/crossover/<recipe>-seed<k>.json when it finishes
and is skipped once that exists; an interrupted run resumes from its checkpoint in
runs/crossover/ (one checkpoint per epoch). Use --threads 1 beside other work on two cores.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from helpers.cli import non_negative_int, positive_int
from helpers.constants import RESULTS, RUNS
from helpers.data import TensorBatches, load_cifar10, train_validation_split
from helpers.files import read_result, write_json_atomically
from helpers.models import count_parameters
from helpers.profiles import PROFILES
from helpers.provenance import provenance
from helpers.recipe import Recipe
from helpers.train import TrainConfig, evaluate, fit
from helpers.errors import check_same_settings, reports_errors

RECIPES = {"plain": Recipe.plain(), "full": Recipe()}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-per-class", type=positive_int, default=200)
    p.add_argument("--val-per-class", type=positive_int, default=100)
    p.add_argument("--embed-dim", type=positive_int, default=128)
    p.add_argument("--depth", type=positive_int, default=6)
    p.add_argument("--heads", type=positive_int, default=4)
    p.add_argument("--patch", type=positive_int, default=8)
    p.add_argument("--epochs", type=positive_int, default=400)
    p.add_argument("--warmup-epochs", type=non_negative_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=PROFILES["cpu"].lr, help="per 512 images, scaled")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--seeds", type=positive_int, default=3)
    p.add_argument("--seen-every", type=positive_int, default=5, help="epochs between training-set accuracies")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--results-dir", default=str(RESULTS / "crossover"))
    p.add_argument("--runs-dir", default=str(RUNS / "crossover"))
    return p


def crossover_data(args) -> tuple:
    """(train, val, seen): the training images, the held-out validation split, and the fixed
    sample of training images whose accuracy shows over-fitting (as many as validation has)."""
    train, val = train_validation_split(load_cifar10("train"), args.val_per_class, args.train_per_class)
    seen = train.subset(torch.arange(0, len(train), max(1, len(train) // len(val)))[:len(val)])
    return train, val, seen


def run_one(name: str, seed: int, args, train, val, seen) -> dict:
    recipe = RECIPES[name]
    model_config = dict(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.heads, patch_size=args.patch)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         warmup_epochs=args.warmup_epochs, smoothing=recipe.smoothing, seed=seed)
    torch.manual_seed(seed)
    model = recipe.build_model(**model_config)

    def on_epoch(history):
        record = history[-1]
        if record["epoch"] % args.seen_every == 0 or record["epoch"] == args.epochs:
            # saved with the next epoch's checkpoint; the last one is in the returned history
            record["train_seen_acc"] = evaluate(model, TensorBatches(seen, 500, shuffle=False))["val_acc"]
            print(f"{name} seed {seed} epoch {record['epoch']}: val {record['val_acc']:.1f}%  "
                  f"train (seen) {record['train_seen_acc']:.1f}%  ({record['seconds']:.1f} s/epoch)", flush=True)

    started = time.perf_counter()
    history = fit(model, recipe.train_batches(train, config.batch_size, seed), TensorBatches(val, 500, shuffle=False),
                  config, batch_transform=recipe.batch_transform(), loss_fn=recipe.loss_fn(), progress=False,
                  log_epochs=False, device="cpu", on_epoch=on_epoch,
                  run_dir=Path(args.runs_dir) / f"{name}-seed{seed}-{args.train_per_class}pc-{args.epochs}ep",
                  metadata={"recipe": recipe.as_dict(), "model": model_config})
    return {"experiment": "crossover", "recipe_name": name, "seed": seed, "recipe": recipe.as_dict(),
            "model": model_config, "parameters": count_parameters(model), "config": vars(args),
            "train_images": len(train), "val_images": len(val), "seen_images": len(seen),
            "threads": torch.get_num_threads(), "history": history,
            "train_seconds": sum(r["train_seconds"] for r in history),
            "wall_clock_seconds_this_session": time.perf_counter() - started, **provenance()}


# What defines a run; a finished one is reused only if these match (threads, folders and the
# recipes and seeds asked for this time do not change what that run is).
RUN_SETTINGS = ("train_per_class", "val_per_class", "embed_dim", "depth", "heads", "patch", "epochs",
                "warmup_epochs", "batch_size", "lr", "seen_every")


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, val, seen = crossover_data(args)
    out = Path(args.results_dir)
    for seed in range(args.seeds):  # seed-major: a complete plain/full pair comes first
        for name in args.recipes:
            path = out / f"{name}-seed{seed}.json"
            if path.exists():
                saved = read_result(path).get("config", {})
                check_same_settings({k: saved.get(k) for k in RUN_SETTINGS}, {k: vars(args)[k] for k in RUN_SETTINGS},
                                    path, "Give this comparison its own --results-dir.")
                print(f"{path} exists: skipped", flush=True)
                continue
            result = run_one(name, seed, args, train, val, seen)
            write_json_atomically(result, path)
            print(f"{name} seed {seed}: final val {result['history'][-1]['val_acc']:.2f}% -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
