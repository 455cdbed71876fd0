"""Stochastic depth, label smoothing and repeated augmentation, checked against timm (notebook 02)."""
import itertools
import math
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
                                    expected_calibration_error, record_kept_paths, reliability_bins,
                                    smooth_targets, survival_rates)
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
    # timm's ViT too; it puts an Identity where the rate is 0, so its first block has no DropPath
    timm_vit = TimmViT(img_size=32, patch_size=8, embed_dim=24, depth=4, num_heads=2, drop_path_rate=0.5)
    assert record_kept_paths(timm_vit.train(), images).shape == (64, 6)
    with pytest.raises(ValueError, match="drop_path_rate"):
        record_kept_paths(torch.nn.Linear(3, 3), torch.randn(2, 3))


# --- Label smoothing ------------------------------------------------------------------------------

def test_smoothed_targets_equal_timm_mixup_target():
    labels = torch.tensor([0, 3, 9, 3, 7])
    ours = smooth_targets(labels, 10, 0.1)
    assert torch.allclose(ours, mixup_target(labels, 10, lam=1.0, smoothing=0.1))
    assert torch.allclose(ours.sum(1), torch.ones(5))
    assert ours[0, 0].item() == pytest.approx(0.91) and ours[0, 1].item() == pytest.approx(0.01)


@pytest.mark.parametrize("smoothing", [0.1, 0.3])
def test_label_smoothing_loss_equals_torch_and_timm(smoothing):
    torch.manual_seed(0)
    logits, labels = torch.randn(32, 10) * 3, torch.randint(0, 10, (32,))
    ours = label_smoothing_cross_entropy(logits, labels, smoothing)
    assert torch.allclose(ours, torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, labels), atol=1e-6)
    assert torch.allclose(ours, TimmLabelSmoothingCE(smoothing)(logits, labels), atol=1e-6)
    assert torch.allclose(LabelSmoothingCrossEntropy(smoothing)(logits, labels), ours)
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


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [7, 100, 256, 600])  # 256: exactly DeiT's rounding; 3 does not divide it
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


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_without_repeats_the_sampler_is_torchs_distributed_sampler(world):
    from torch.utils.data.distributed import DistributedSampler

    for shuffle, epoch in itertools.product([True, False], [0, 3]):
        for rank in range(world):  # 7 images: the last ranks wrap around to the start, as torch pads
            ours = RepeatedAugSampler(7, num_replicas=world, rank=rank, num_repeats=1, shuffle=shuffle)
            theirs = DistributedSampler(range(7), num_replicas=world, rank=rank, shuffle=shuffle)
            ours.set_epoch(epoch), theirs.set_epoch(epoch)
            assert list(ours) == list(theirs)


def test_sampler_takes_world_size_and_rank_from_torch_distributed(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(dist, "get_rank", lambda: 2)
    sampler = RepeatedAugSampler(100, num_replicas=None, rank=None)
    assert (sampler.num_replicas, sampler.rank) == (4, 2)
    assert list(sampler) == list(RepeatedAugSampler(100, num_replicas=4, rank=2))


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


# --- Calibration -----------------------------------------------------------------------------------

def _two_class(confidences, correct):
    """Probabilities [c, 1 - c] (so c is the confidence, class 0 the prediction); label 0 where correct."""
    c = torch.tensor(confidences, dtype=torch.float32)
    return torch.stack([c, 1 - c], dim=1), (~torch.tensor(correct)).long()


def test_ece_is_zero_when_every_bin_is_right_as_often_as_it_is_sure():
    # 0.6 sure and 3 of 5 right, 0.8 sure and 8 of 10 right, 1.0 sure and all right.
    probs, labels = _two_class([0.6] * 5 + [0.8] * 10 + [1.0] * 4,
                               [True] * 3 + [False] * 2 + [True] * 8 + [False] * 2 + [True] * 4)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-6)


def test_ece_of_an_overconfident_model_is_its_weighted_gap():
    # 12 samples 0.95 sure but 6 right (gap 0.45), 8 samples 0.75 sure and 6 right (gap 0):
    # ECE = 12/20 * 0.45 + 8/20 * 0 = 0.27 (unweighted bins would give 0.225).
    probs, labels = _two_class([0.95] * 12 + [0.75] * 8,
                               [True, False] * 6 + [True] * 6 + [False] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.27, abs=1e-6)


def test_ece_on_sampled_predictions():
    g = torch.Generator().manual_seed(0)
    confidence = 0.5 + 0.5 * torch.rand(200_000, generator=g)
    calibrated = torch.rand(200_000, generator=g) < confidence
    overconfident = torch.rand(200_000, generator=g) < confidence - 0.2   # right 20 points less often
    calibrated_ece = expected_calibration_error(*_two_class(confidence.tolist(), calibrated.tolist()))
    overconfident_ece = expected_calibration_error(*_two_class(confidence.tolist(), overconfident.tolist()))
    assert calibrated_ece < 0.01
    assert overconfident_ece == pytest.approx(0.2, abs=0.01)


def test_ece_takes_logits_and_one_bin_is_the_global_gap():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(300, 10, generator=g) * 3, torch.randint(0, 10, (300,), generator=g)
    probs = logits.softmax(1)
    from_logits = expected_calibration_error(logits, labels)
    assert from_logits == pytest.approx(expected_calibration_error(probs, labels))
    confidence, predicted = probs.max(1)
    global_gap = abs(float((predicted == labels).float().mean() - confidence.mean()))
    assert expected_calibration_error(probs, labels, bins=1) == pytest.approx(global_gap, abs=1e-6)


def test_logits_between_0_and_1_are_still_logits():
    # Rows in [0, 1] that do not sum to 1 are not probabilities: their softmax maxima are
    # sigmoid(0.1) (class 0, wrong) and sigmoid(0.5) (class 1, right).
    scores, labels = torch.tensor([[0.9, 0.8], [0.1, 0.6]]), torch.tensor([1, 1])
    sigmoid = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    gap = abs(0.5 - (sigmoid(0.1) + sigmoid(0.5)) / 2)
    assert expected_calibration_error(scores, labels, bins=1) == pytest.approx(gap, abs=1e-6)


def test_reliability_bins_are_closed_on_the_right():
    # Top probabilities 0.5, 0.6, 0.75, 1.0 with 4 bins: (0, .25], (.25, .5], (.5, .75], (.75, 1].
    probs, labels = _two_class([0.5, 0.6, 0.75, 1.0], [True, False, True, True])
    b = reliability_bins(probs, labels, bins=4)
    assert b["edges"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert b["count"].tolist() == [0, 1, 2, 1]
    assert torch.isnan(b["accuracy"][0]) and torch.isnan(b["confidence"][0])
    assert b["accuracy"][1:].tolist() == [1.0, 0.5, 1.0]
    assert b["confidence"][1:].tolist() == pytest.approx([0.5, 0.675, 1.0])


@pytest.mark.parametrize("scores, labels, bins, message", [
    (torch.rand(5), torch.zeros(5, dtype=torch.long), 15, r"\(N, K\)"),
    (torch.rand(5, 3), torch.zeros(5), 15, "integer class indices"),
    (torch.rand(5, 3), torch.zeros(4, dtype=torch.long), 15, "5 predictions but 4 labels"),
    (torch.rand(5, 3), torch.full((5,), 3), 15, r"0\.\.2"),
    (torch.rand(0, 3), torch.zeros(0, dtype=torch.long), 15, "at least one"),
    (torch.full((2, 3), float("nan")), torch.zeros(2, dtype=torch.long), 15, "NaN"),
    (torch.rand(5, 3), torch.zeros(5, dtype=torch.long), 0, "bins must be a whole number"),
])
def test_calibration_input_errors_name_the_fix(scores, labels, bins, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(scores, labels, bins)


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
    assert not ex.check_drop_path_schedule(lambda d, p: [p * (i + 1) / d for i in range(d)])
    assert "Huang et al.'s rule" in capsys.readouterr().out
    assert not ex.check_drop_path_schedule(lambda d, p: [None] * d)
    assert "not list holding None." in capsys.readouterr().out


def test_mask_question_checker(capsys):
    assert ex.check_mask_question("b")
    assert "Correct" in capsys.readouterr().out
    for wrong in ("a", "c", "d", None, "e"):
        assert not ex.check_mask_question(wrong)
        assert "Not yet" in capsys.readouterr().out


def test_calibration_checker(capsys):
    assert ex.check_expected_calibration_error(expected_calibration_error)
    assert not ex.check_expected_calibration_error(_stub)
    assert "NotImplementedError" in capsys.readouterr().out

    def unweighted(probs, labels, bins=15):
        b = reliability_bins(probs, labels, bins)
        filled = b["count"] > 0
        return float((b["accuracy"][filled] - b["confidence"][filled]).abs().mean())

    def signed(probs, labels, bins=15):  # one global gap: over- and under-confidence cancel
        confidence, predicted = probs.max(1)
        return float((predicted == labels).float().mean() - confidence.mean())

    for wrong, hint in [(unweighted, "share of the samples"), (signed, "absolute gap"),
                        (lambda probs, labels, bins=15: expected_calibration_error(probs, labels), "`bins`"),
                        (lambda probs, labels, bins=15: float("nan"), "skip empty bins"),
                        (lambda probs, labels, bins=15: (0.2, 0.1), "one number")]:
        assert not ex.check_expected_calibration_error(wrong)
        assert hint in capsys.readouterr().out


def test_schedule_checker_says_depth_minus_1_only_to_who_divided_by_depth(capsys):
    assert not ex.check_drop_path_schedule(lambda d, p: [int(p * i / (d - 1)) for i in range(d)])  # rounds to 0
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and "depth - 1" not in out and "expected" in out


@pytest.mark.parametrize("answer", ["(b)", "b."])
def test_choice_checkers_accept_the_letter_however_it_is_written(answer, capsys):
    assert ex.check_mask_question(answer)
    assert capsys.readouterr().out.startswith("Correct!")


def test_calibration_checker_compares_with_the_ece_of_the_inputs_it_gave(capsys):
    probs, labels = ex._calibration_case()
    right = expected_calibration_error(probs, labels, 15)

    def clamps_in_place(probs, labels, bins=15):  # a wrong answer that also changes the caller's probs
        probs.clamp_(0, 0.5)
        return expected_calibration_error(probs, labels, bins)

    assert not ex.check_expected_calibration_error(clamps_in_place)
    assert f"expected {right:.4f}" in capsys.readouterr().out
