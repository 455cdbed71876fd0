"""One process of the 2-process DDP test (run by torchrun from test_ddp.py)."""
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from helpers.batch_augment import BatchAugment
from helpers.data import TensorBatches, load_cifar10
from helpers.models import build_vit
from helpers.train import TrainConfig, fit
from helpers.weight_average import WeightAverage

out = Path(sys.argv[1])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
train, test = load_cifar10("train", n_per_class=8), load_cifar10("test", n_per_class=4)
torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
model = build_vit(embed_dim=16, depth=1, num_heads=2, drop_path_rate=0.1)
batches = TensorBatches(train, 10, num_replicas=world, rank=rank)
seen = batches.indices()  # this process's share of epoch 0
average = WeightAverage(model, 0.5)  # made from this rank's own weights, before DDP broadcasts rank 0's
history = fit(model, batches, TensorBatches(test, 16, shuffle=False, num_replicas=world, rank=rank),
              TrainConfig(epochs=2, batch_size=10, warmup_epochs=1, lr=1e-2),
              batch_transform=BatchAugment(), run_dir=out / "run", progress=False, device="cpu", averages=[average])
torch.save({"state": model.state_dict(), "average": average.module.state_dict(), "indices": seen, "history": history},
           out / f"rank{rank}.pt")
# Both ranks done before either tears gloo down: a rank that leaves while the other still talks
# (rank 0 writes the checkpoint) can abort ("terminate called without an active exception").
dist.barrier()
dist.destroy_process_group()
