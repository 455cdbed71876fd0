"""Repeated augmentation (Hoffer et al., 2020; Berman et al., 2019) as DeiT samples it.

Each epoch every image index is repeated num_repeats times in a row, and the repeated list is
dealt out round-robin to the processes, so the copies of one image land on different GPUs (all
of them on different ones with at least num_repeats processes) and each GPU augments its copy
differently (in a single process they sit next to each other).
Every process then keeps only about len(dataset) / num_replicas indices, so an epoch costs what
it did without repeats: it sees about 1 / num_repeats of the images, each num_repeats times.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class RepeatedAugSampler(Sampler[int]):
    """Indices for one process (`rank` of `num_replicas`) with DeiT's repeated augmentation.

    Yields the same indices in the same order as timm's RepeatAugSampler (and DeiT's RASampler)
    for the same epoch when seed=0; like DistributedSampler, the shuffle is seeded with
    seed + epoch. One documented difference: DeiT rounds the epoch down to a
    multiple of 256 images, which on a 500-image subset would discard half of it, so here that
    is opt-in (`round_epoch_to=256`) and by default each process gets ceil(N / num_replicas).

    With num_replicas=1 the copies of an image are consecutive, so a batch holds each image up
    to num_repeats times. DeiT does this too: its main.py builds the RASampler under
    `if True:  # args.distributed:` with num_replicas = the world size, so also in one process.
    Call set_epoch(epoch) before each epoch, in every process, to re-shuffle consistently.

    Notebooks: built in 02 (repeated augmentation).
    """

    def __init__(self, dataset_len_or_dataset, num_replicas: int | None = 1, rank: int | None = 0,
                 num_repeats: int = 3, shuffle: bool = True, seed: int = 0,
                 round_epoch_to: int = 0):
        self.dataset_len = _dataset_len(dataset_len_or_dataset)
        self.num_replicas, self.rank = _replicas_and_rank(num_replicas, rank)
        if isinstance(num_repeats, bool) or not float(num_repeats).is_integer() or num_repeats < 1:
            raise ValueError(f"num_repeats must be a whole number >= 1, not {num_repeats!r}; "
                             "DeiT uses 3, and 1 turns repeated augmentation off.")
        if int(round_epoch_to) != round_epoch_to or round_epoch_to < 0:
            raise ValueError(f"round_epoch_to must be 0 (no rounding) or a positive whole number "
                             f"such as DeiT's 256, not {round_epoch_to!r}.")
        self.num_repeats = int(num_repeats)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.round_epoch_to = int(round_epoch_to)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """How many indices this process yields per epoch: about dataset_len / num_replicas."""
        n, replicas = self.dataset_len, self.num_replicas
        if self.round_epoch_to and n >= self.round_epoch_to:
            rounded = n // self.round_epoch_to * self.round_epoch_to
            selected = rounded // replicas
        else:
            selected = math.ceil(n / replicas)
        # Never more than this process's share of the repeated list.
        return min(selected, math.ceil(n * self.num_repeats / replicas))

    def set_epoch(self, epoch: int) -> None:
        """Re-shuffle for this epoch; every process must pass the same epoch to stay in step."""
        self.epoch = int(epoch)

    def epoch_order(self) -> torch.Tensor:
        """The repeated index list shared by all processes this epoch: (dataset_len * num_repeats,)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_len, generator=generator)
        else:
            order = torch.arange(self.dataset_len)
        return order.repeat_interleave(self.num_repeats)  # [a, a, a, b, b, b, ...]

    def __iter__(self):
        repeated = self.epoch_order()
        # Deal round-robin: consecutive copies of one image go to consecutive ranks. Positions
        # past the end wrap to the start, as DistributedSampler pads, when the list is short.
        positions = torch.arange(self.num_samples) * self.num_replicas + self.rank
        return iter(repeated[positions % len(repeated)].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"RepeatedAugSampler(dataset_len={self.dataset_len}, num_replicas={self.num_replicas}, "
                f"rank={self.rank}, num_repeats={self.num_repeats}, shuffle={self.shuffle}, "
                f"seed={self.seed}, epoch={self.epoch})")


def _dataset_len(dataset_len_or_dataset) -> int:
    if isinstance(dataset_len_or_dataset, bool):
        raise TypeError("Pass the dataset or its length (an int), not a bool.")
    if isinstance(dataset_len_or_dataset, int):
        n = dataset_len_or_dataset
    elif hasattr(dataset_len_or_dataset, "__len__"):
        n = len(dataset_len_or_dataset)
    else:
        raise TypeError(f"Pass the dataset or its length (an int), not "
                        f"{type(dataset_len_or_dataset).__name__}.")
    if n < 1:
        raise ValueError(f"The dataset is empty (length {n}); there is nothing to sample.")
    return n


def _replicas_and_rank(num_replicas, rank) -> tuple[int, int]:
    # None means: ask torch.distributed, as DistributedSampler does under DDP.
    if num_replicas is None or rank is None:
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("num_replicas/rank are None but torch.distributed is not initialised: "
                               "pass num_replicas=world_size and rank=this process's rank, "
                               "or use num_replicas=1, rank=0 in a single process.")
        num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        rank = dist.get_rank() if rank is None else rank
    if int(num_replicas) != num_replicas or num_replicas < 1:
        raise ValueError(f"num_replicas (the world size) must be a whole number >= 1, not {num_replicas!r}.")
    if int(rank) != rank or not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank!r} is out of range for num_replicas={num_replicas}: ranks run "
                         f"from 0 to {num_replicas - 1}; pass each process its own rank "
                         f"(torch.distributed.get_rank()).")
    return int(num_replicas), int(rank)
