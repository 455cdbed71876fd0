"""helpers.resolution: position embeddings resampled for a larger image, as DeiT fine-tunes at 384
after training at 224, checked against timm; the copy of a model at another size; upsampled data;
the fine-tuning settings in DeiT's proportions; and a run at the larger size."""
import dataclasses
import json
import re

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.layers import resample_abs_pos_embed

from helpers.data import CIFAR10Arrays
from helpers.models import build_vit, vit_config
from helpers.profiles import PROFILES
from helpers.resolution import at_resolution, finetune_overrides, resample_pos_embed, upsample_images
from helpers.train import TrainConfig, lr_at

SMALL = dict(embed_dim=24, depth=2, num_heads=2)


def embeddings(prefix, side, dim=16, seed=0):
    return torch.randn(1, prefix + side * side, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prefix", [1, 2])
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_equal_to_timm_without_antialiasing_as_deit_resamples(prefix, mode):
    pos = embeddings(prefix, 8)
    ours = resample_pos_embed(pos, 12, prefix, mode)
    theirs = resample_abs_pos_embed(pos, [12, 12], num_prefix_tokens=prefix, interpolation=mode, antialias=False)
    assert ours.shape == (1, prefix + 144, 16)
    assert torch.equal(ours, theirs)


def test_timms_default_antialiasing_gives_other_embeddings():
    """What notebook 04 says: timm's default (antialias=True) is not DeiT's main.py resampling."""
    pos = embeddings(1, 8)
    assert not torch.allclose(resample_pos_embed(pos, 12), resample_abs_pos_embed(pos, [12, 12]), atol=1e-4)


def test_prefix_tokens_are_kept_and_the_same_grid_is_unchanged():
    pos = embeddings(2, 8)
    assert torch.equal(resample_pos_embed(pos, 12, 2)[:, :2], pos[:, :2])
    assert torch.equal(resample_pos_embed(pos, 8, 2), pos)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "nearest"])
def test_a_constant_grid_stays_constant_and_rows_follow_the_grid(mode):
    pos = torch.zeros(1, 1 + 16, 3)
    pos[:, 1:] = torch.tensor([1.0, -2.0, 0.5])
    torch.testing.assert_close(resample_pos_embed(pos, 6, mode=mode)[:, 1:], torch.tensor([1.0, -2.0, 0.5]).expand(1, 36, 3))
    # each embedding dimension is resampled as an image: row r, column c of the grid is token 1 + r * side + c
    ramp = torch.arange(16.0).view(4, 4)   # value = 4 * row + column
    pos = torch.cat([torch.zeros(1, 1, 1), ramp.reshape(1, 16, 1)], dim=1)
    grid = resample_pos_embed(pos, 8, mode=mode)[0, 1:, 0].view(8, 8)
    assert (grid[1:] >= grid[:-1] - 1e-5).all() and (grid[:, 1:] >= grid[:, :-1] - 1e-5).all()
    assert grid[-1, 0] > grid[0, -1]   # rows weigh 4, columns 1: not transposed


def test_bilinear_shrinks_uncorrelated_embeddings_more_than_bicubic():
    """The paper's reason for bicubic (Section 6): averaging neighbours shortens the vectors."""
    pos = embeddings(1, 8, dim=64)
    norm = pos[:, 1:].norm(dim=-1).mean()
    shrink = {mode: (resample_pos_embed(pos, 12, mode=mode)[:, 1:].norm(dim=-1).mean() / norm).item()
              for mode in ("bilinear", "bicubic")}
    assert shrink["bilinear"] < shrink["bicubic"] < 1.0


@pytest.mark.parametrize("bad, message", [
    (dict(mode="area"), "bicubic"), (dict(grid=0), "at least 1"), (dict(num_prefix_tokens=2), "square"),
    (dict(num_prefix_tokens=70), "num_prefix_tokens"),
])
def test_bad_arguments_are_explained(bad, message):
    args = dict(pos_embed=embeddings(1, 8), grid=12) | bad
    with pytest.raises(ValueError, match=message):
        resample_pos_embed(**args)
    with pytest.raises(ValueError, match="shape"):
        resample_pos_embed(torch.zeros(65, 16), 12)


@pytest.mark.parametrize("distilled", [False, True])
def test_a_model_at_48_px_equals_timms_vit_built_for_48_px(distilled):
    torch.manual_seed(0)
    model = build_vit(**SMALL, distilled=distilled)
    resized = at_resolution(model, 48)
    cfg = vit_config(**SMALL, img_size=48)
    kind = timm.models.deit.VisionTransformerDistilled if distilled else timm.models.vision_transformer.VisionTransformer
    reference = kind(img_size=48, patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"], depth=cfg["depth"],
                     num_heads=cfg["num_heads"], num_classes=10)
    reference.load_state_dict(resized.state_dict())  # strict: 144 patches' embeddings and the prefix
    resized.eval(), reference.eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(resized(x), reference(x), rtol=1e-4, atol=1e-5)


def test_the_original_model_is_left_as_it_was():
    torch.manual_seed(0)
    model = build_vit(**SMALL, distilled=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    resized = at_resolution(model, 48)
    assert model.patch_embed.img_size == 32 and model.pos_embed.shape == (1, 66, 24)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert resized.patch_embed.img_size == 48 and resized.patch_embed.num_patches == 144
    assert resized.pos_embed.requires_grad and resized.pos_embed.shape == (1, 146, 24)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():   # at its own size, the copy is the same model
        torch.testing.assert_close(at_resolution(model, 32).eval()(x), model(x))


def test_a_size_that_is_not_a_multiple_of_the_patch_is_refused_with_one_that_is():
    with pytest.raises(ValueError, match="try 48"):
        at_resolution(build_vit(**SMALL), 47)
    with pytest.raises(ValueError, match="try 4"):
        at_resolution(build_vit(**SMALL), 2)


def test_images_of_another_size_name_the_fix():
    model = build_vit(**SMALL)
    with pytest.raises(ValueError, match=r"reads 32x32 images.*not 48x48.*at_resolution\(model, 48\)"):
        model(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match=r"not 32x48\. Make the images square"):   # no size would fit
        model(torch.zeros(1, 3, 32, 48))
    model(torch.zeros(1, 3, 32, 32))


def test_upsampled_images_match_pillows_bicubic_resize(cifar_train_small):
    """Pillow rounds and clips to uint8 between its two passes: on noise, whose overshoot is
    clipped there, the two differ by tens of levels; on photographs a few values by up to ~7, the
    rest by a level at most. (Without antialiasing, torch's bicubic kernel differs: mean ~1.0.)"""
    arrays = cifar_train_small.subset(range(40))
    big = upsample_images(arrays, 48, chunk=16)   # chunks join in order
    assert big.images.shape == (40, 48, 48, 3) and big.images.dtype == torch.uint8
    assert torch.equal(big.labels, arrays.labels)
    pil = torch.stack([torch.from_numpy(np.array(Image.fromarray(img.numpy()).resize((48, 48), Image.Resampling.BICUBIC)))
                       for img in arrays.images])
    d = (big.images.int() - pil.int()).abs().float()
    assert d.mean() < 0.3 and (d > 2).float().mean() < 1e-3, (d.max(), d.mean())
    assert upsample_images(arrays, 32) is arrays   # already that size


def test_finetuning_overrides_give_deits_command_for_deits_run():
    """README_deit.md fine-tunes with --lr 5e-6 --min-lr 5e-6 --weight-decay 1e-8 --epochs 30 at a
    global batch of 512, after 300 epochs at 5e-4; main.py warms up 5 epochs from 1e-6."""
    deit = dataclasses.replace(PROFILES["full"], epochs=300, lr=5e-4, batch_size=512)
    assert finetune_overrides(deit) == pytest.approx(dict(epochs=30, lr=5e-6, min_lr=5e-6, warmup_lr=1e-6,
                                                          warmup_epochs=5, weight_decay=1e-8), rel=1e-12)
    config = TrainConfig(batch_size=128, **finetune_overrides(PROFILES["cpu"]))
    assert config.epochs == 6 and config.warmup_epochs == 1 and config.scaled_lr == pytest.approx(config.min_lr)
    after_warmup = [lr_at(s, 600, 100, config.scaled_lr, config.warmup_lr, config.min_lr) for s in range(100, 600, 50)]
    assert after_warmup == pytest.approx([config.scaled_lr] * 10)   # constant, as DeiT's min-lr = lr makes it
    assert finetune_overrides(PROFILES["ci"])["epochs"] == 1


def test_a_run_at_48_px_trains_on_upsampled_data_and_records_the_size(tmp_path):
    from helpers.profile_runs import train_in_profile
    from helpers.train import CheckpointError
    profile = dataclasses.replace(PROFILES["ci"], epochs=1, warmup_epochs=0)
    torch.manual_seed(0)
    model = at_resolution(build_vit(**profile.vit_sizes), 48)
    history = train_in_profile("ft48", model, profile, run_dir=tmp_path / "ft48", img_size=48, progress=False)
    assert len(history) == 1 and 0 <= history[-1]["test_acc"] <= 100
    saved = torch.load(tmp_path / "ft48" / "last.pt", weights_only=False)
    assert saved["metadata"]["img_size"] == 48 and saved["model"]["pos_embed"].shape[1] == 1 + 144
    with pytest.raises(CheckpointError, match="img_size"):   # the same run folder at another size is not resumed
        train_in_profile("ft48", at_resolution(build_vit(**profile.vit_sizes), 40), profile,
                         run_dir=tmp_path / "ft48", img_size=40, progress=False)


def test_a_teacher_trained_at_32_px_sees_a_students_48_px_images_at_32_px(cifar_train_small):
    from helpers.augment import normalize
    from helpers.losses import DistillationLoss
    from helpers.resolution import ResizeInputs
    seen = []
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10))
    cnn.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    teacher = ResizeInputs(cnn, 32)
    small = normalize(cifar_train_small.images[:8].permute(0, 3, 1, 2))
    big = normalize(upsample_images(cifar_train_small.subset(range(8)), 48).images.permute(0, 3, 1, 2))
    assert torch.equal(teacher(small), cnn(small))          # its own size: passed as it is
    with torch.no_grad():
        back = teacher(big)                               # enlarged, then made small again
        torch.testing.assert_close(back, cnn(small), atol=0.02, rtol=0.05)
    assert seen[-1] == (8, 3, 32, 32)
    loss = DistillationLoss(teacher, "hard")((torch.randn(8, 10), torch.randn(8, 10)), torch.arange(8), big)
    assert torch.isfinite(loss) and seen[-1] == (8, 3, 32, 32)


def test_finetune_in_profile_trains_a_copy_at_the_size_in_deits_proportions(tmp_path):
    from helpers.profile_runs import finetune_in_profile
    profile = dataclasses.replace(PROFILES["ci"], epochs=10)   # a tenth: one epoch
    torch.manual_seed(0)
    student = build_vit(**profile.vit_sizes)
    before = student.pos_embed.detach().clone()
    history = finetune_in_profile("ft", student, 48, profile, run_dir=tmp_path / "ft", progress=False)
    saved = torch.load(tmp_path / "ft" / "last.pt", weights_only=False)
    assert len(history) == 1 and saved["config"]["lr"] == pytest.approx(profile.lr / 100)
    assert saved["config"]["weight_decay"] == 1e-8 and saved["metadata"]["img_size"] == 48
    assert torch.equal(student.pos_embed, before) and student.patch_embed.img_size == 32


def test_before_finetuning_measures_the_student_both_ways_and_the_teacher_three_ways(cifar_train_small):
    from helpers.resolution import before_finetuning
    torch.manual_seed(0)
    student = build_vit(**SMALL)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10))
    found = before_finetuning(student, cnn, cifar_train_small, 48, "cpu")
    assert set(found["student"]) == {"own_size", "bicubic", "bilinear"}
    assert set(found["teacher"]) == {"own_size", "enlarged", "enlarged_resized"}
    assert found["student"]["bilinear"]["norm_ratio"] < found["student"]["bicubic"]["norm_ratio"] < 1.0
    assert all(0 <= v <= 100 for v in (found["student"]["own_size"], *found["teacher"].values()))


def test_the_benchmark_records_each_seed_with_provenance_and_the_teacher_each_run_had(tmp_path, monkeypatch, capsys):
    from benchmarks import finetune_resolution as bench
    from helpers.resolution import ResizeInputs
    taught = {}
    real = bench.finetune_in_profile

    def recording(name, student, size, profile, **kwargs):
        taught[name] = (size, isinstance(kwargs["teacher"], ResizeInputs))
        return real(name, student, size, profile, **kwargs)
    monkeypatch.setattr(bench, "finetune_in_profile", recording)
    assert bench.main(["--profile", "ci", "--seeds", "1", "--results-dir", str(tmp_path)]) == 0
    assert taught == {"48px": (48, True), "48px_teacher_enlarged": (48, False), "32px": (32, True)}
    result = json.loads((tmp_path / "ci" / "seed0.json").read_text())
    assert result["seed"] == 0 and result["size"] == 48 and result["settings"]["epochs"] == 1
    assert {"commit", "device", "torch", "command", "seconds"} <= set(result)
    assert set(result["finetuned"]) == set(taught) and len(result["finetuned"]["48px"]["val_acc_per_epoch"]) == 1
    assert "SMOKE TEST" in capsys.readouterr().out
    assert bench.main(["--profile", "ci", "--seeds", "1", "--results-dir", str(tmp_path)]) == 0   # kept, not redone
    assert "exists, skipped" in capsys.readouterr().out
    older = {**result, "settings": {**result["settings"], "epochs": 2}}
    (tmp_path / "ci" / "seed0.json").write_text(json.dumps(older))
    with pytest.raises(SystemExit, match=r"(?s)differs in \['settings.epochs'\].*Use another --results-dir"):
        bench.main(["--profile", "ci", "--seeds", "1", "--results-dir", str(tmp_path)])


def test_the_summary_pairs_the_seeds_and_marks_what_is_distinguishable(capsys):
    from helpers.resolution import describe_finetuning

    def seed(k, at_48, control, enlarged):
        student = {"own_size": 40.0 + k, "bicubic": {"val_acc": 35.0, "norm_ratio": 0.97},
                   "bilinear": {"val_acc": 33.0, "norm_ratio": 0.84}}
        teacher = {"own_size": 51.0, "enlarged": 34.0, "enlarged_resized": 50.0}
        return {"seed": k, "profile": "cpu", "size": 48, "settings": {"epochs": 6},
                "before": {"student": student, "teacher": teacher},
                "finetuned": {"48px": {"val_acc": at_48}, "32px": {"val_acc": control},
                              "48px_teacher_enlarged": {"val_acc": enlarged}}}
    print(describe_finetuning([seed(0, 38.0, 43.0, 32.0), seed(1, 39.0, 43.5, 32.5), seed(2, 37.0, 42.0, 31.0)]))
    out = capsys.readouterr().out
    assert "3 seed(s), profile cpu" in out and "+ 6 epochs at 48 px, the teacher at 32 px" in out
    assert "38.00 ± 0.58" in out                          # 37, 38, 39
    assert re.search(r"fine-tuned at 48 px minus at 32 px\s+-4\.83 ± 0\.17\*", out)
    assert re.search(r"teacher at 32 px minus at 48 px\s+\+6\.17 ± 0\.17\*", out)
    assert "97.00 ± 0.00" in out                          # the norm, in %


# --- the exercise's checker -----------------------------------------------------------------------

def written_resample(pos_embed, grid, num_prefix_tokens):
    """A student's right answer, written as the notebook's solution."""
    import math
    import torch.nn.functional as F
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    side, dim = math.isqrt(patches.shape[1]), patches.shape[2]
    image = patches.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([prefix, image.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)], dim=1)


def test_the_checker_accepts_right_answers(capsys):
    from helpers.exercises_fast import check_resample_pos_embed
    assert check_resample_pos_embed(resample_pos_embed)
    assert check_resample_pos_embed(written_resample)
    assert check_resample_pos_embed(lambda p, g, n: written_resample(p, g, n).double())   # any float dtype
    assert check_resample_pos_embed(lambda p, g, n: written_resample(p, g, n).half())  # to its precision
    def in_place(p, g, n):   # editing its own copy of the input does no harm
        out = written_resample(p, g, n)
        p.zero_()
        return out
    assert check_resample_pos_embed(in_place)
    assert capsys.readouterr().out.count("Correct!") == 5


def test_the_checker_explains_a_reshape_that_takes_the_prefix_tokens_in(capsys):
    from helpers.exercises_fast import check_resample_pos_embed

    def one_prefix_token(pos, grid, prefix):  # [:, 1:] written for [CLS] alone: a distilled ViT has two
        return written_resample(pos, grid, 1)
    assert not check_resample_pos_embed(one_prefix_token)
    assert "set the first num_prefix_tokens rows aside before the reshape" in capsys.readouterr().out


@pytest.mark.parametrize("slip, says", [
    (dict(scramble=True), "mixes up tokens and dimensions"), (dict(transpose=True), "transposed"),
    (dict(mode="bilinear"), "bilinear"), (dict(align_corners=True), "align_corners=False"),
    (dict(antialias=True), "antialias"),
])
def test_the_checker_names_the_usual_slips(slip, says, capsys):
    from helpers.exercises_fast import _resampled, check_resample_pos_embed
    assert not check_resample_pos_embed(lambda p, g, n: _resampled(p, g, n, **slip))
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and says in out


@pytest.mark.parametrize("answer, says", [
    (lambda p, g, n: resample_pos_embed(p, g, n)[:, n:], "should have shape"),
    (lambda p, g, n: torch.cat([p[:, :n] * 0, resample_pos_embed(p, g, n)[:, n:]], 1), "keep the first num_prefix_tokens"),
    (lambda p, g, n: resample_pos_embed(p, g, n, mode="nearest"), "the patches' embeddings differ"),
    (lambda p, g, n: resample_pos_embed(p, g, n).tolist(), "return a tensor"),
    (lambda p, g, n: resample_pos_embed(p, g, 0), "raised ValueError"),
])
def test_the_checker_explains_other_mistakes_without_raising(answer, says, capsys):
    from helpers.exercises_fast import check_resample_pos_embed
    assert not check_resample_pos_embed(answer)
    assert says in capsys.readouterr().out


def test_the_same_grid_gives_a_copy_of_the_position_embeddings():
    pos = torch.randn(1, 1 + 16, 8)
    same = resample_pos_embed(pos, 4, 1)
    torch.testing.assert_close(same, pos)
    same.add_(1.0)  # changing the copy leaves the model it came from as it was
    assert not torch.equal(same, pos)


def test_the_teacher_sees_antialiased_bicubic_downsamples():
    from helpers.resolution import ResizeInputs

    images = torch.rand(2, 3, 48, 48)
    seen = ResizeInputs(torch.nn.Identity(), 32)(images)
    torch.testing.assert_close(seen, torch.nn.functional.interpolate(images, size=(32, 32), mode="bicubic",
                                                                     align_corners=False, antialias=True))
    assert not torch.allclose(seen, torch.nn.functional.interpolate(images, size=(32, 32), mode="bicubic",
                                                                    align_corners=False))


def test_fine_tuning_takes_a_tenth_of_the_epochs_rounded_not_cut():
    epochs = {n: finetune_overrides(dataclasses.replace(PROFILES["cpu"], epochs=n))["epochs"] for n in (3, 15, 60, 300)}
    assert epochs == {3: 1, 15: 2, 60: 6, 300: 30}  # DeiT: 30 fine-tuning epochs after 300
