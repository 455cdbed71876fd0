"""Probe a laptop-sized setting: does DeiT's recipe beat the plain ViT there, and how fast?

    python benchmarks/cpu_setting.py --train-per-class 200 --epochs 300 --patch 8 \
        --recipes plain full --output results/cpu_probes/p8-2k-300.json

Trains each recipe on `train-per-class` images per class and validates on a held-out split of
the training set (helpers.data.train_validation_split); every epoch it records validation
accuracy and the accuracy on a fixed sample of the (unaugmented) training images, so
over-fitting shows as the gap between the two. One seed per call: probes to choose where to
measure, not results. Use --threads 1 to run two probes side by side on two cores.
"""
from __future__ import annotations

import argparse
import time

import torch

from helpers.data import TensorBatches, load_cifar10, train_validation_split
from helpers.files import write_json_atomically
from helpers.models import count_parameters
from helpers.profiles import PROFILES
from helpers.provenance import provenance
from helpers.recipe import Recipe
from helpers.train import TrainConfig, evaluate, fit


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--val-per-class", type=int, default=100)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--warmup-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=PROFILES["cpu"].lr, help="per 512 images, scaled")
    parser.add_argument("--recipes", nargs="+", default=["plain", "full"], choices=["plain", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train, val = train_validation_split(load_cifar10("train"), args.val_per_class, args.train_per_class)
    seen = train.subset(torch.arange(0, len(train), max(1, len(train) // len(val)))[:len(val)])
    model_config = dict(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.heads, patch_size=args.patch)
    runs = {}
    for name in args.recipes:
        recipe = Recipe.plain() if name == "plain" else Recipe()
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             warmup_epochs=args.warmup_epochs, smoothing=recipe.smoothing, seed=args.seed)
        torch.manual_seed(args.seed)
        model = recipe.build_model(**model_config)
        train_acc = []

        def on_epoch(history, model=model, train_acc=train_acc):
            train_acc.append(evaluate(model, TensorBatches(seen, 500, shuffle=False))["val_acc"])
            if len(history) % 10 == 0 or len(history) == args.epochs:
                r = history[-1]
                print(f"{name} epoch {r['epoch']}: val {r['val_acc']:.1f}%  train (seen) {train_acc[-1]:.1f}%  "
                      f"({r['seconds']:.1f} s/epoch)", flush=True)

        started = time.perf_counter()
        history = fit(model, recipe.train_batches(train, config.batch_size, config.seed),
                      TensorBatches(val, 500, shuffle=False), config, batch_transform=recipe.batch_transform(),
                      loss_fn=recipe.loss_fn(), progress=False, device="cpu", on_epoch=on_epoch)
        runs[name] = {"recipe": recipe.as_dict(), "val_acc": [r["val_acc"] for r in history],
                      "train_seen_acc": train_acc, "train_loss": [r["train_loss"] for r in history],
                      "seconds": time.perf_counter() - started}
        print(f"{name}: final val {history[-1]['val_acc']:.2f}%, {runs[name]['seconds'] / 60:.1f} min", flush=True)
    write_json_atomically({"benchmark": "cpu_setting_probe", "args": vars(args), "model": model_config,
                           "parameters": count_parameters(Recipe().build_model(**model_config)),
                           "train_images": len(train), "val_images": len(val), "threads": torch.get_num_threads(),
                           "runs": runs, **provenance()}, args.output)


if __name__ == "__main__":
    main()
