"""Stochastic depth, label smoothing and repeated augmentation, checked against timm (notebook 02)."""
import itertools
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from timm.data.distributed_sampler import RepeatAugSampler
from timm.data.mixup import mixup_target
from timm.layers import DropPath as TimmDropPath
from timm.loss import LabelSmoothingCrossEntropy as TimmLabelSmoothingCE
from timm.models.vision_transformer import Block as TimmBlock
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch.utils.data import DataLoader, TensorDataset

from helpers import exercises_regularization as ex
from helpers.models import Block, build_vit
from helpers.losses import LabelSmoothingCrossEntropy, label_smoothing_cross_entropy
from helpers.regularization import (DropPath, StochasticDepth, drop_path_rates, expected_depth,
                                    record_kept_paths, smooth_targets, survival_rates)
from helpers.sampler import RepeatedAugSampler


# --- Stochastic depth -----------------------------------------------------------------------------

def test_drop_path_keeps_or_drops_whole_samples_and_rescales():
    torch.manual_seed(0)
    x = torch.rand(256, 5, 7) + 0.5  # strictly positive, so a zero means "dropped"
    out = DropPath(0.25).train()(x)
    ratio = out / x
    per_sample = ratio.flatten(1)
    # Every sample is either all zero or all scaled by exactly 1 / keep.
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    factors = per_sample[:, 0]
    dropped = factors == 0
    assert 0 < dropped.sum() < len(factors)
    assert torch.allclose(factors[~dropped], torch.full_like(factors[~dropped], 1 / 0.75))


def test_drop_path_is_identity_in_eval_and_at_rate_zero():
    x = torch.randn(8, 4, 3)
    assert DropPath(0.5).eval()(x) is x
    assert DropPath(0.0).train()(x) is x
    assert StochasticDepth is DropPath


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_drop_path_rate_and_expectation_match_timm(rate):
    torch.manual_seed(0)
    x = torch.ones(20_000, 1, 4)
    ours, theirs = DropPath(rate).train()(x), TimmDropPath(rate).train()(x)
    for out in (ours, theirs):
        # Binomial standard deviation of the rate is at most 0.0036 here; allow about 4 of them.
        assert abs((out[:, 0, 0] == 0).float().mean().item() - rate) < 0.015
        assert abs(out.mean().item() - 1.0) < 0.03  # the 1/keep scaling keeps the mean at 1


def test_drop_path_equals_timm_for_the_same_random_state():
    x = torch.randn(64, 5, 8)
    torch.manual_seed(3)
    ours = DropPath(0.3).train()(x)
    torch.manual_seed(3)
    theirs = TimmDropPath(0.3).train()(x)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_drop_path_gradient_only_reaches_kept_samples():
    torch.manual_seed(1)
    x = torch.randn(32, 3, requires_grad=True)
    out = DropPath(0.5).train()(x)
    out.sum().backward()
    kept = out.detach().ne(0).any(1)
    assert 0 < kept.sum() < 32
    assert torch.all(x.grad[~kept] == 0) and torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_drop_path_rejects_rates_outside_0_1(bad):
    with pytest.raises(ValueError, match="DeiT uses 0.1"):
        DropPath(bad)


def test_helpers_block_equals_timm_block_in_train_mode():
    torch.manual_seed(0)
    theirs = TimmBlock(32, 2, 4.0, qkv_bias=True, drop_path=0.3)
    ours = Block(32, 2, 4.0, drop_path=0.3)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(64, 5, 32)
    torch.manual_seed(1)
    a = theirs.train()(x)
    torch.manual_seed(1)
    b = ours.train()(x)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(b, ours.eval()(x))  # some branches really were dropped


def test_schedule_is_linear_and_matches_timm_vit():
    rates = drop_path_rates(12, 0.1)
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert all(b - a == pytest.approx(0.1 / 11) for a, b in zip(rates, rates[1:]))
    timm_vit = TimmViT(img_size=32, patch_size=8, embed_dim=24, depth=12, num_heads=2, drop_path_rate=0.1)
    # timm puts an Identity where the rate is 0.
    assert rates == pytest.approx([getattr(blk.drop_path1, "drop_prob", 0.0) for blk in timm_vit.blocks])
    ours = build_vit(embed_dim=24, depth=12, num_heads=2, drop_path_rate=0.1)
    assert rates == pytest.approx([blk.drop_path.drop_prob for blk in ours.blocks])


def test_survival_and_expected_depth():
    assert survival_rates(5, 0.2) == pytest.approx([1.0, 0.95, 0.9, 0.85, 0.8])
    assert drop_path_rates(1, 0.3) == [0.0]
    # Linear 0 -> p over L blocks drops p / 2 of them on average.
    assert expected_depth(drop_path_rates(12, 0.1)) == pytest.approx(12 - 12 * 0.05)
    assert expected_depth(drop_path_rates(12, 0.2)) == pytest.approx(10.8)


@pytest.mark.parametrize("depth, rate", [(0, 0.1), (2.5, 0.1), (4, -0.1), (4, 1.0)])
def test_schedule_rejects_bad_input(depth, rate):
    with pytest.raises(ValueError):
        drop_path_rates(depth, rate)


def test_record_kept_paths_sees_the_drops():
    torch.manual_seed(0)
    model = build_vit(embed_dim=24, depth=4, num_heads=2, drop_path_rate=0.5)
    images = torch.randn(64, 3, 32, 32)
    kept = record_kept_paths(model.train(), images)
    assert kept.shape == (64, 8) and kept.dtype == torch.bool  # two branches per block
    assert kept[:, :2].all()  # the first block's rate is 0
    last = kept[:, -2:].float().mean().item()
    assert 0.3 < last < 0.7  # the last block keeps about half
    assert record_kept_paths(model.eval(), images).all()
    with pytest.raises(ValueError, match="drop_path_rate"):
        record_kept_paths(torch.nn.Linear(3, 3), torch.randn(2, 3))


# --- Label smoothing ------------------------------------------------------------------------------

def test_smoothed_targets_equal_timm_mixup_target():
    labels = torch.tensor([0, 3, 9, 3, 7])
    ours = smooth_targets(labels, 10, 0.1)
    assert torch.allclose(ours, mixup_target(labels, 10, lam=1.0, smoothing=0.1))
    assert torch.allclose(ours.sum(1), torch.ones(5))
    assert ours[0, 0].item() == pytest.approx(0.91) and ours[0, 1].item() == pytest.approx(0.01)


def test_label_smoothing_loss_equals_torch_and_timm():
    torch.manual_seed(0)
    logits, labels = torch.randn(32, 10) * 3, torch.randint(0, 10, (32,))
    ours = label_smoothing_cross_entropy(logits, labels, 0.1)
    assert torch.allclose(ours, torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels), atol=1e-6)
    assert torch.allclose(ours, TimmLabelSmoothingCE(0.1)(logits, labels), atol=1e-6)
    assert torch.allclose(LabelSmoothingCrossEntropy(0.1)(logits, labels), ours)
    assert not torch.allclose(ours, F.cross_entropy(logits, labels), atol=1e-3)


def test_double_smoothing_is_what_torch_does_to_soft_targets():
    """MixUp targets already carry smoothing; label_smoothing in the loss smooths them again."""
    torch.manual_seed(0)
    logits, labels = torch.randn(16, 10), torch.randint(0, 10, (16,))
    once = smooth_targets(labels, 10, 0.1)
    twice = smooth_targets(once, 10, 0.1)
    assert twice.max().item() == pytest.approx(0.9 * 0.91 + 0.01)
    torch_double = F.cross_entropy(logits, once, label_smoothing=0.1)
    assert torch.allclose(torch_double, label_smoothing_cross_entropy(logits, once, 0.1), atol=1e-6)
    assert torch.allclose(torch_double, -(twice * logits.log_softmax(-1)).sum(-1).mean(), atol=1e-6)


def test_smoothing_rejects_bad_input():
    with pytest.raises(ValueError, match="smoothing"):
        smooth_targets(torch.tensor([1]), 10, 1.0)
    with pytest.raises(ValueError, match="integers"):
        smooth_targets(torch.tensor([1.0]), 10)
    with pytest.raises(ValueError, match="probabilities"):
        smooth_targets(torch.zeros(2, 5), 10)


# --- Repeated augmentation -----------------------------------------------------------------------

def _all_ranks(n, world, **kwargs):
    """One sampler per process of a world of `world` processes, as DDP would build them."""
    return [RepeatedAugSampler(n, num_replicas=world, rank=r, **kwargs) for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize("n", [7, 100, 600])
def test_sampler_matches_timm_index_for_index(world, n):
    for shuffle, epoch, round_to in itertools.product([True, False], [0, 5], [0, 256]):
        for rank in range(world):
            theirs = RepeatAugSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle,
                                      selected_round=round_to)
            ours = RepeatedAugSampler(n, num_replicas=world, rank=rank, shuffle=shuffle,
                                      round_epoch_to=round_to)
            theirs.set_epoch(epoch)
            ours.set_epoch(epoch)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_epoch_length_stays_near_dataset_size_and_repeats_images(world):
    n = 600
    samplers = _all_ranks(n, world)
    per_rank = [list(s) for s in samplers]
    assert [len(s) for s in samplers] == [len(p) for p in per_rank] == [-(-n // world)] * world
    counts = Counter(i for p in per_rank for i in p)
    # About n indices in all, but only about n / 3 distinct images, each seen 3 times.
    assert sum(counts.values()) == n
    assert set(counts.values()) <= {1, 2, 3} and Counter(counts.values())[3] >= n // 3 - 1


def test_copies_go_to_different_processes_when_there_are_enough():
    rank_indices = [list(s) for s in _all_ranks(600, 4)]
    for indices in rank_indices:
        assert len(set(indices)) == len(indices)  # no process sees an image twice...
    # ...while across processes each image appears up to three times.
    assert max(Counter(i for p in rank_indices for i in p).values()) == 3


def test_single_process_batches_hold_duplicates():
    indices = list(RepeatedAugSampler(600, num_replicas=1, rank=0))
    batches = [indices[i:i + 6] for i in range(0, len(indices), 6)]
    assert all(len(set(b)) == 2 for b in batches)  # a batch of 6 holds only 2 distinct images
    assert indices[0] == indices[1] == indices[2] != indices[3]


def test_set_epoch_reshuffles_and_seed_offsets():
    sampler = RepeatedAugSampler(100, seed=0)
    first = list(sampler)
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    assert list(RepeatedAugSampler(100, seed=1)) == second  # the generator is seeded with seed + epoch
    assert list(RepeatedAugSampler(9, shuffle=False, num_repeats=3)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_sampler_accepts_a_dataset_and_drives_a_dataloader():
    data = TensorDataset(torch.arange(30))
    sampler = RepeatedAugSampler(data, num_replicas=2, rank=1)
    loader = DataLoader(data, batch_size=5, sampler=sampler)
    seen = torch.cat([b[0] for b in loader]).tolist()
    assert seen == list(sampler) and len(seen) == 15


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_repeats=0), "num_repeats"),
    (dict(num_repeats=2.5), "num_repeats"),
    (dict(num_replicas=4, rank=4), "rank 4 is out of range"),
    (dict(num_replicas=2, rank=-1), "out of range"),
    (dict(num_replicas=0, rank=0), "num_replicas"),
    (dict(round_epoch_to=-1), "round_epoch_to"),
])
def test_sampler_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RepeatedAugSampler(100, **kwargs)


def test_sampler_rejects_empty_dataset_and_missing_world_size():
    with pytest.raises(ValueError, match="empty"):
        RepeatedAugSampler([])
    with pytest.raises(TypeError, match="length"):
        RepeatedAugSampler(object())
    with pytest.raises(RuntimeError, match="num_replicas=world_size"):
        RepeatedAugSampler(10, num_replicas=None, rank=None)


# --- Exercise checkers -----------------------------------------------------------------------------

def _stub(*args):
    raise NotImplementedError


def test_schedule_checker(capsys):
    assert ex.check_drop_path_schedule(drop_path_rates)
    assert not ex.check_drop_path_schedule(_stub)
    assert "NotImplementedError" in capsys.readouterr().out
    assert not ex.check_drop_path_schedule(lambda d, p: [p * i / d for i in range(d)])
    assert "depth - 1" in capsys.readouterr().out
    assert not ex.check_drop_path_schedule(lambda d, p: [1 - r for r in drop_path_rates(d, p)])
    assert "survival" in capsys.readouterr().out
    assert not ex.check_drop_path_schedule(lambda d, p: drop_path_rates(d, p)[::-1])
    assert "reversed" in capsys.readouterr().out


def test_mask_question_checker(capsys):
    assert ex.check_mask_question("b")
    assert "Correct" in capsys.readouterr().out
    for wrong in ("a", "c", "d", None, "e"):
        assert not ex.check_mask_question(wrong)
        assert "Not yet" in capsys.readouterr().out


def test_smooth_targets_checker(capsys):
    assert ex.check_smooth_targets(smooth_targets)
    assert not ex.check_smooth_targets(_stub)

    def forgot_uniform_on_true_class(labels, k, eps):
        return F.one_hot(labels, k).float() * (1 - eps) + (1 - F.one_hot(labels, k).float()) * eps / (k - 1)

    capsys.readouterr()
    assert not ex.check_smooth_targets(forgot_uniform_on_true_class)
    assert "eps/K goes to every class" in capsys.readouterr().out
    assert not ex.check_smooth_targets(lambda labels, k, eps: "nope")
