import json
import re

import pytest
import torch

from helpers import cli
from helpers.data import load_cifar10
from helpers.models import VisionTransformer
from helpers.profiles import get_profile
from helpers.recipe import Recipe


@pytest.fixture(scope="module")
def batch():
    data = load_cifar10("train", n_per_class=4)
    return data.images.permute(0, 3, 1, 2).contiguous(), data.labels


def test_defaults_are_deits():
    r = Recipe()  # Touvron et al. (2021), Table 9
    assert (r.aa, r.reprob, r.mixup, r.cutmix, r.mixup_switch_prob) == ("rand-m9-mstd0.5-inc1", 0.25, 0.8, 1.0, 0.5)
    assert (r.smoothing, r.drop_path, r.repeated_aug, r.distillation_type) == (0.1, 0.1, True, "none")


def test_bad_recipes_fail_at_once():
    with pytest.raises(ValueError, match="distillation_type"):
        Recipe(distillation_type="medium")
    with pytest.raises(ValueError, match="rand-m9"):
        Recipe(aa="rand-x9")
    with pytest.raises(ValueError, match=r"drop must lie in \[0, 0.99\]"):
        Recipe(drop=1.0)


def test_plain_recipe_keeps_integer_labels(batch):
    images, labels = batch
    x, y = Recipe.plain().batch_transform()(images, labels)
    assert x.dtype == torch.float32 and x.shape == images.shape and torch.equal(y, labels)


def test_full_recipe_gives_soft_targets_and_augmented_images(batch):
    images, labels = batch
    torch.manual_seed(0)
    x, y = Recipe().batch_transform()(images, labels)
    assert y.shape == (len(labels), 10) and torch.allclose(y.sum(1), torch.ones(len(labels)))
    assert torch.isfinite(x).all() and x.shape == images.shape
    plain_x, _ = Recipe.plain().but(aa="").batch_transform()(images, labels)
    assert not torch.allclose(x, plain_x)


def test_model_and_loss_follow_the_recipe():
    assert Recipe().build_model(embed_dim=16, depth=2, num_heads=2).head_dist is None
    distilled = Recipe(distillation_type="hard")
    model = distilled.build_model(embed_dim=16, depth=2, num_heads=2)
    assert isinstance(model, VisionTransformer) and model.head_dist is not None
    assert model.blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    with pytest.raises(ValueError, match="needs a teacher"):
        distilled.loss_fn(None)
    def rates(recipe):
        return [b.drop_path.drop_prob for b in recipe.build_model(embed_dim=16, depth=4, num_heads=2).blocks]
    assert rates(Recipe(drop_path=0.3)) == pytest.approx([0.0, 0.1, 0.2, 0.3]) and rates(Recipe.plain()) == [0.0] * 4
    def dropouts(recipe):
        return [m.p for m in recipe.build_model(embed_dim=16, depth=4, num_heads=2).modules()
                if isinstance(m, torch.nn.Dropout)]
    assert dropouts(Recipe(drop=0.1)) == [0.1] * (1 + 2 * 4) and dropouts(Recipe()) == []


def test_loss_fn_carries_every_distillation_setting():
    from helpers.losses import distillation_loss
    torch.manual_seed(0)
    teacher, images = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10)), torch.randn(4, 3, 2, 2)
    outputs, labels = (torch.randn(4, 10), torch.randn(4, 10)), torch.tensor([0, 1, 2, 3])
    # distinct non-default values, so that a dropped or swapped setting cannot pass
    recipe = Recipe(distillation_type="soft", distillation_alpha=0.3, distillation_tau=2.0,
                    distillation_kl="batchmean", smoothing=0.2)
    want = distillation_loss("soft", outputs, labels, teacher(images).detach(), alpha=0.3, tau=2.0, smoothing=0.2,
                             kl_reduction="batchmean")
    assert torch.allclose(recipe.loss_fn(teacher)(outputs, labels, images), want)


def test_repeated_augmentation_repeats_each_image_three_times():
    data = load_cifar10("test", n_per_class=3)
    order = Recipe().train_batches(data, batch_size=5).indices()
    assert len(order) == 30 and order.bincount(minlength=30).max() == 3
    assert torch.equal(order[0::3], order[1::3])
    assert len(Recipe(repeated_aug=False).train_batches(data, 5).indices().unique()) == 30


def test_train_batches_follow_the_seed_and_rank_and_drop_the_last_partial_batch():
    data = load_cifar10("test", n_per_class=3)
    plain = Recipe.plain()
    assert [len(x) for x, _ in plain.train_batches(data, batch_size=7)] == [7] * 4  # 30 images: 2 dropped
    first = plain.train_batches(data, 5, seed=0).indices()
    assert torch.equal(plain.train_batches(data, 5, seed=0).indices(), first)
    assert not torch.equal(plain.train_batches(data, 5, seed=1).indices(), first)
    halves = [plain.train_batches(data, 5, num_replicas=2, rank=r).indices().tolist() for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == list(range(30))  # each process its own half


def cli_args(out, *extra):
    return ["--profile", "ci", "--epochs", "1", "--train-per-class", "10", "--output-dir", str(out),
            "--no-progress", *extra]


def test_cli_trains_writes_history_and_evaluates(tmp_path, capsys):
    assert cli.main(cli_args(tmp_path, "--aa", "none", "--drop-path", "0.2")) == 0  # none: as '' does
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved["history"]) == 1 and saved["metadata"]["recipe"]["drop_path"] == 0.2
    assert saved["metadata"]["recipe"]["aa"] == "" and "torch" in saved["metadata"]
    assert (tmp_path / "history.csv").read_text().startswith("epoch,train_loss,val_loss,val_acc,lr,seconds")
    trained = capsys.readouterr().out
    assert f"final validation accuracy {saved['history'][-1]['val_acc']:.2f}%" in trained
    test_accuracy = trained.split("test accuracy ")[1].split("%")[0]
    assert cli.main(["--profile", "ci", "--eval", str(tmp_path / "last.pt")]) == 0
    assert f"test accuracy {test_accuracy}%" in capsys.readouterr().out  # the same model, the same test set


def test_cli_refuses_to_overwrite_and_resumes(tmp_path, capsys):
    assert cli.main(cli_args(tmp_path, "--aa", "")) == 0
    before = (tmp_path / "last.pt").read_bytes()
    assert cli.main(cli_args(tmp_path, "--aa", "")) == 2
    assert "--resume continues a run" in capsys.readouterr().err
    assert (tmp_path / "last.pt").read_bytes() == before
    assert cli.main(cli_args(tmp_path, "--aa", "", "--resume")) == 0


def test_resume_with_another_recipe_is_refused_and_shows_both(tmp_path, capsys):
    assert cli.main(cli_args(tmp_path, "--aa", "", "--mixup", "0.8")) == 0
    before = (tmp_path / "last.pt").read_bytes()
    assert cli.main(cli_args(tmp_path, "--aa", "", "--mixup", "0", "--resume")) == 2
    err = capsys.readouterr().err
    assert "another config or recipe" in err and "recipe.mixup: saved 0.8, now 0.0" in err
    assert (tmp_path / "last.pt").read_bytes() == before


def test_resume_with_another_runtime_option_continues(tmp_path, capsys):
    assert cli.main(cli_args(tmp_path, "--aa", "", "--no-compile")) == 0
    history = json.loads((tmp_path / "history.json").read_text())["history"]
    # one more epoch, now compiled: compile is how the run executes, not what it trains
    assert cli.main(["--profile", "ci", "--epochs", "1", "--train-per-class", "10", "--output-dir", str(tmp_path),
                     "--no-progress", "--aa", "", "--compile", "--resume"]) == 0
    assert json.loads((tmp_path / "history.json").read_text())["history"] == history  # finished: returned as is


def test_lr_and_weight_decay_given_with_opt_sgd_replace_the_profiles_sgd_settings(tmp_path):
    assert cli.main(cli_args(tmp_path, "--aa", "", "--opt", "sgd", "--lr", "0.2", "--weight-decay", "1e-4")) == 0
    config = torch.load(tmp_path / "last.pt", weights_only=False)["config"]
    assert (config["opt"], config["lr"], config["weight_decay"], config["momentum"]) == ("sgd", 0.2, 1e-4, 0.9)


def test_resume_needs_only_the_folder_and_takes_the_runs_own_settings(tmp_path, capsys, monkeypatch):
    assert cli.main(cli_args(tmp_path, "--aa", "", "--mixup", "0", "--drop-path", "0.2", "--drop", "0.1",
                             "--seed", "3", "--opt", "sgd", "--momentum", "0.8")) == 0
    config = torch.load(tmp_path / "last.pt", weights_only=False)["config"]
    ci = get_profile("ci")  # SGD takes the profile's SGD learning rate and decay unless given
    assert (config["opt"], config["momentum"], config["lr"], config["weight_decay"]) == ("sgd", 0.8, ci.sgd_lr,
                                                                                       ci.sgd_weight_decay)
    history = json.loads((tmp_path / "history.json").read_text())["history"]
    capsys.readouterr()
    monkeypatch.setenv("DEIT_PROFILE", "cpu")  # not the run's profile: the checkpoint says ci
    # Without the saved settings this differs from the run in epochs, seed, profile and recipe and is refused.
    assert cli.main(["--output-dir", str(tmp_path), "--resume", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "profile ci: 100 training images" in out and "mixup=0.0" in out and "drop_path=0.2" in out
    assert "drop=0.1" in out and "opt='sgd'" in out
    assert json.loads((tmp_path / "history.json").read_text())["history"] == history  # finished: returned as is
    assert cli.main(["--output-dir", str(tmp_path), "--resume", "--mixup", "0.5", "--no-progress"]) == 2
    assert "recipe.mixup: saved 0.0, now 0.5" in capsys.readouterr().err  # a flag given explicitly is not overridden


def test_finetune_at_a_higher_resolution_starts_from_a_run_and_keeps_its_size(tmp_path, capsys):
    from helpers.resolution import resample_pos_embed
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert cli.main(cli_args(base, "--aa", "")) == 0
    trained = torch.load(base / "last.pt", weights_only=False)["model"]
    model = Recipe(aa="").build_model(**get_profile("ci").vit_sizes, img_size=48)
    cli.finetune_start(base / "last.pt", model)   # what --finetune starts from
    assert torch.equal(model.pos_embed, resample_pos_embed(trained["pos_embed"], 12))
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items() if k != "pos_embed")
    assert cli.main(cli_args(tuned, "--aa", "", "--finetune", str(base / "last.pt"), "--input-size", "48",
                             "--lr", "5e-6", "--min-lr", "5e-6", "--weight-decay", "1e-8", "--warmup-epochs", "0")) == 0
    saved = torch.load(tuned / "last.pt", weights_only=False)
    assert saved["metadata"]["model"]["img_size"] == 48 and saved["metadata"]["finetuned_from"] == str(base / "last.pt")
    assert saved["model"]["pos_embed"].shape == (1, 1 + 144, trained["pos_embed"].shape[2])
    assert "trained on 32x32 images, with their position embeddings resampled to 48x48" in capsys.readouterr().out
    assert cli.main(["--eval", str(tuned / "last.pt")]) == 0   # on the test images enlarged to 48 px
    assert "test accuracy" in capsys.readouterr().out
    # the folder alone resumes it: its size comes from the checkpoint (a 32-px model would not load),
    # and it keeps the run it started from, without needing that run's checkpoint any more
    resumed = cli.with_saved_settings(cli.parser().parse_args(["--output-dir", str(tuned), "--resume"]))
    assert resumed.input_size == 48 and resumed.finetune == str(base / "last.pt")
    (base / "last.pt").unlink()
    assert cli.main(["--output-dir", str(tuned), "--resume", "--no-progress"]) == 0


def test_a_distilled_finetuning_shows_the_teacher_its_own_32_px(tmp_path, monkeypatch):
    from helpers.losses import FrozenTeacher
    base, seen = tmp_path / "base", []
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10))
    cnn.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    monkeypatch.setattr("helpers.teacher.load_or_train_teacher", lambda *a, **k: FrozenTeacher(cnn))
    assert cli.main(cli_args(base, "--aa", "", "--distillation-type", "hard")) == 0
    seen.clear()
    assert cli.main(cli_args(tmp_path / "tuned", "--aa", "", "--distillation-type", "hard", "--input-size", "48",
                             "--finetune", str(base / "last.pt"))) == 0
    assert seen and set(seen) == {(32, 32)}   # every training batch, though the student reads 48 px


def test_finetune_from_another_model_or_no_checkpoint_says_what_to_give(tmp_path, capsys):
    assert cli.main(cli_args(tmp_path / "base", "--aa", "")) == 0
    capsys.readouterr()
    assert cli.main(cli_args(tmp_path / "deeper", "--aa", "", "--finetune", str(tmp_path / "base" / "last.pt"),
                             "--depth", "4")) == 2
    assert "holds another model than this run builds" in capsys.readouterr().err
    assert cli.main(cli_args(tmp_path / "none", "--finetune", str(tmp_path / "missing.pt"))) == 2
    err = capsys.readouterr().err
    assert "no checkpoint at" in err and "--finetune takes that file" in err
    assert not (tmp_path / "deeper").exists() or not (tmp_path / "deeper" / "last.pt").exists()


def test_eval_uses_the_checkpoints_profile_unless_told(tmp_path, capsys, monkeypatch):
    assert cli.main(cli_args(tmp_path, "--aa", "")) == 0
    capsys.readouterr()
    monkeypatch.setenv("DEIT_PROFILE", "cpu")
    assert cli.main(["--eval", str(tmp_path / "last.pt")]) == 0
    ci_test_images = get_profile("ci").test_size
    assert f"on {ci_test_images:,} images" in capsys.readouterr().out


def test_bad_sizes_and_a_missing_checkpoint_end_in_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(cli_args(tmp_path, "--batch-size", "0"))
    assert "--batch-size: must be at least 1, not 0" in capsys.readouterr().err
    assert cli.main(["--eval", str(tmp_path / "missing.pt")]) == 2
    assert re.search(r"error: no checkpoint at .*missing.pt. Training writes last.pt", capsys.readouterr().err)
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    assert cli.main(["--eval", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err and "--resume continues" not in err
    assert (tmp_path / "bad.pt").read_text() == "not a checkpoint"  # left as it was


def test_cli_flags_follow_deits_names():
    args = cli.parser().parse_args(["--no-repeated-aug", "--distillation-type", "soft", "--mixup-switch-prob", "0.3",
                                    "--output_dir", "x", "--drop", "0.1"])
    recipe = cli.recipe_from(args)
    assert recipe.repeated_aug is False and recipe.distillation_type == "soft" and recipe.drop == 0.1
    assert recipe.mixup_switch_prob == 0.3 and args.output_dir == "x"


def test_soft_distillation_has_one_set_of_defaults_the_papers():
    from helpers.losses import DEFAULT_ALPHA, distillation_loss
    recipe = cli.recipe_from(cli.parser().parse_args(["--distillation-type", "soft"]))
    assert recipe == Recipe(distillation_type="soft")
    torch.manual_seed(0)
    teacher, images = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10)), torch.randn(4, 3, 2, 2)
    cls_logits, dist_logits, labels = torch.randn(4, 10), torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    papers = distillation_loss("soft", (cls_logits, dist_logits), labels, teacher(images).detach(),
                               alpha=0.1, tau=3.0, smoothing=recipe.smoothing)
    ours = recipe.loss_fn(teacher)((cls_logits, dist_logits), labels, images)
    assert torch.allclose(ours, papers)
    assert recipe.comparable()["distillation_alpha"] == DEFAULT_ALPHA["soft"] == 0.1
    assert Recipe(distillation_type="hard").comparable()["distillation_alpha"] == 0.5


def test_comparable_recipe_ignores_only_settings_the_run_does_not_use():
    from helpers.recipe import comparable_recipe
    # a plain run saved when the defaults were alpha 0.5 and tau 1.0 trains exactly as one saved now
    older = {k: v for k, v in Recipe.plain().as_dict().items() if k not in ("distillation_kl", "drop")}
    older.update(distillation_alpha=0.5, distillation_tau=1.0)
    assert comparable_recipe(older) == Recipe.plain().comparable()
    older_soft = {k: v for k, v in Recipe(distillation_type="soft").as_dict().items() if k != "distillation_kl"}
    assert comparable_recipe(older_soft) == Recipe(distillation_type="soft").comparable()  # numel, the default
    hard = Recipe(distillation_type="hard")
    assert hard.but(distillation_tau=1.0).comparable() == hard.comparable()
    assert hard.but(distillation_kl="batchmean").comparable() == hard.comparable()
    assert hard.but(distillation_alpha=0.3).comparable() != hard.comparable()
    soft = Recipe(distillation_type="soft")
    assert soft.but(distillation_tau=1.0).comparable() != soft.comparable()
    assert soft.but(distillation_kl="batchmean").comparable() != soft.comparable()


def test_time_pipeline_counts_images_and_splits_the_time():
    from helpers.speed import count_host_syncs, endless, time_pipeline
    data = load_cifar10("test", n_per_class=2)
    calls = []
    result = time_pipeline(endless(Recipe().train_batches(data, 4)), Recipe().batch_transform(),
                           lambda x, y: calls.append(x.shape), "cpu", warmup=1, steps=3)
    # warmup, the back-to-back pass, then the pass timed part by part
    assert len(calls) == 1 + 3 + 3 and calls[0] == (4, 3, 32, 32)
    assert result["images"] == 12  # the timed pass's batches; how the time splits: the test below
    assert count_host_syncs(endless(Recipe().train_batches(data, 4)), Recipe().batch_transform(),
                            lambda x, y: None, "cpu") is None  # only CUDA can count them


def test_cli_explains_a_corrupt_teacher_and_keeps_it(tmp_path, capsys):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"not a checkpoint")
    assert cli.main(cli_args(tmp_path / "run", "--distillation-type", "hard", "--teacher-path", str(teacher))) == 2
    err = capsys.readouterr().err
    assert "cannot be used" in err and "Check the path, or leave out --teacher-path" in err
    assert "--retrain" not in err  # retraining would write the profile's own file, not this one
    assert teacher.read_bytes() == b"not a checkpoint"


def test_cli_names_a_bad_profile_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("DEIT_PROFILE", "bogus")
    assert cli.main(["--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: DEIT_PROFILE='bogus' is not a profile") and "Traceback" not in err


def test_a_diverging_run_ends_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    # warmup epoch 1 is fine; at the absurd peak rate of epoch 2 the weights blow up
    assert cli.main(cli_args(tmp_path, "--aa", "", "--lr", "1e30", "--epochs", "3", "--warmup-epochs", "1")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The ") and "became nan" in err and "Lower the learning rate" in err
    assert "Traceback" not in err and f"last good checkpoint is {tmp_path / 'last.pt'}" in err
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_starter_loader_clamps_posterize_in_its_own_transform_only():
    from PIL import Image, ImageOps
    from timm.data.auto_augment import RandAugment

    from helpers.speed import starter_loader
    original = ImageOps.posterize
    loader, _ = starter_loader(load_cifar10("test", n_per_class=1), 2, 0)
    assert ImageOps.posterize is original  # nothing patched for the rest of the process
    rand_augment = next(t for t in loader.dataset.transform.transforms if isinstance(t, RandAugment))
    img = Image.fromarray(load_cifar10("test", n_per_class=1).images[0].numpy())
    for op in (o for o in rand_augment.ops if o.name.startswith("Posterize")):
        assert op.aug_fn(img, 0).size == img.size  # 0 bits: Pillow 13 alone would raise


def test_starter_loader_works_with_workers_started_by_spawn():
    # macOS and Windows start DataLoader workers by spawn, which pickles the dataset and its
    # transform: a clamped posterize defined inside a function could not be pickled there.
    from helpers.speed import starter_loader
    loader, _ = starter_loader(load_cifar10("test", n_per_class=1), 2, 0)
    spawned = torch.utils.data.DataLoader(loader.dataset, batch_size=2, num_workers=1,
                                          multiprocessing_context="spawn")
    images, labels = next(iter(spawned))
    assert images.shape == (2, 3, 32, 32) and labels.shape == (2,)


def test_batch_transform_carries_every_recipe_field_into_the_batch_augment():
    from helpers.augment import RandAugmentConfig
    from helpers.batch_randaugment import BatchRandAugment
    g = torch.Generator().manual_seed(0)
    t = Recipe().batch_transform(num_classes=7, generator=g)
    # DeiT's 'rand-m9-mstd0.5-inc1' read by hand: 2 ops (timm's default), M 9, std 0.5, increasing pool
    assert isinstance(t.per_image, BatchRandAugment) and t.per_image.generator is g and t.generator is g
    assert t.per_image.config == RandAugmentConfig(n=2, m=9.0, mstd=0.5, mmax=10.0, inc=True, p=0.5)
    # DeiT's Table 9: erasing 0.25, MixUp 0.8, CutMix 1.0, switch 0.5, mix always, smoothing 0.1
    assert (t.reprob, t.mixup_alpha, t.cutmix_alpha, t.switch_prob, t.mix_prob, t.smoothing, t.num_classes) == \
        (0.25, 0.8, 1.0, 0.5, 1.0, 0.1, 7)
    # distinct values for every field, so that two swapped fields cannot pass
    custom = Recipe(aa="rand-m7-n3-mstd1-p0.3", reprob=0.3, mixup=0.6, cutmix=0.9, mixup_prob=0.7,
                    mixup_switch_prob=0.4, smoothing=0.2).batch_transform()
    assert custom.per_image.config == RandAugmentConfig(n=3, m=7.0, mstd=1.0, inc=False, p=0.3)
    assert (custom.reprob, custom.mixup_alpha, custom.cutmix_alpha, custom.switch_prob, custom.mix_prob,
            custom.smoothing, custom.num_classes) == (0.3, 0.6, 0.9, 0.4, 0.7, 0.2, 10)
    plain = Recipe.plain().batch_transform()
    assert plain.per_image is None and (plain.reprob, plain.mixup_alpha, plain.cutmix_alpha) == (0.0, 0.0, 0.0)
    assert t.crop_flip and custom.crop_flip and plain.crop_flip  # even the plain baseline crops and flips


def test_under_torchrun_a_missing_teacher_is_asked_for_before_any_process_trains_one(tmp_path, capsys, monkeypatch):
    # Every process would train a teacher and save it at the same path (one rank's save racing
    # another's load); one process trains it first instead.
    monkeypatch.setattr(cli, "start_distributed", lambda: (0, 2, torch.device("cpu")))
    monkeypatch.setattr("helpers.teacher.RUNS", tmp_path / "runs")  # no teacher there
    assert cli.main(cli_args(tmp_path / "run", "--distillation-type", "hard")) == 2
    err = capsys.readouterr().err
    assert "under torchrun every process would train one" in err and "python -m helpers teacher --profile ci" in err
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing saved


def test_time_pipeline_puts_the_preparation_time_in_data_s_and_the_step_in_step_s(monkeypatch):
    from types import SimpleNamespace

    from helpers import speed

    now = [0.0]  # a clock that moves only when the pipeline works: exact times, whatever the machine does
    monkeypatch.setattr(speed, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def prepare(images, labels):
        now[0] += 0.02
        return images, labels

    def step(inputs, targets):
        now[0] += 0.005
    result = speed.time_pipeline(speed.endless([(torch.zeros(2), torch.zeros(2))]), prepare, step, "cpu",
                                 warmup=1, steps=3)
    assert result["seconds"] == pytest.approx(3 * 0.025) and result["images_per_s"] == pytest.approx(6 / 0.075)
    assert result["data_s"] == pytest.approx(3 * 0.02) and result["step_s"] == pytest.approx(3 * 0.005)
    assert result["gpu_busy"] == pytest.approx(0.2)  # the step's share of the serialized pass


def test_timing_waits_for_the_gpu_cudas_or_apples(monkeypatch):
    from helpers import speed
    waited = []
    monkeypatch.setattr(speed.torch.cuda, "synchronize", lambda: waited.append("cuda"))
    monkeypatch.setattr(speed.torch.mps, "synchronize", lambda: waited.append("mps"))
    for device in ("cpu", "cuda", "mps", torch.device("cuda", 0)):
        speed.sync(device)
    assert waited == ["cuda", "mps", "cuda"]


def test_endless_reshuffles_each_pass_with_the_pass_number():
    from itertools import islice

    from helpers.speed import endless

    class Batches(list):
        epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)
    batches = Batches(["a", "b"])
    assert list(islice(endless(batches), 6)) == ["a", "b"] * 3 and batches.epochs == [0, 1, 2]


def test_operator_calls_skips_the_first_call_and_counts_no_views_as_device_work():
    from helpers.speed import _is_on, operator_calls
    x, seen = torch.empty(4, device="meta"), []

    def fn():  # the first call does extra work (fills a cache), as a first call may
        seen.append(1)
        return (x + 1) * 2 if len(seen) == 1 else x + 1
    assert operator_calls(fn) == (1, 1)
    assert operator_calls(lambda: x.view(2, 2)) == (1, 0)
    assert not _is_on(torch.device("cuda", 0), torch.device("cuda", 1)) and _is_on(torch.device("cuda", 1), torch.device("cuda"))


def test_a_weight_average_is_reported_saved_and_kept_on_resume(tmp_path, capsys):
    assert cli.main(cli_args(tmp_path, "--model-ema-decay", "0.5")) == 0
    assert "the average of the weights (EMA, decay 0.5): final validation accuracy" in capsys.readouterr().out
    assert set(torch.load(tmp_path / "last.pt", weights_only=False)["averages"]) == {"0.5"}
    assert cli.main(["--output-dir", str(tmp_path), "--resume", "--no-progress"]) == 0   # finished: returned at once
    assert "(EMA, decay 0.5)" in capsys.readouterr().out
    assert cli.main(cli_args(tmp_path / "bad", "--model-ema-decay", "1.5")) == 2
    assert "--model-ema-decay must lie in [0, 1)" in capsys.readouterr().err


def test_resume_names_what_to_use_for_a_run_with_several_weight_averages(tmp_path, capsys):
    from helpers.profile_runs import train_in_profile
    train_in_profile("two", profile=get_profile("ci"), recipe=Recipe(), run_dir=tmp_path, ema_decays=(0.5, 0.9),
                     progress=False, epochs=1, warmup_epochs=0)
    assert cli.main(["--output-dir", str(tmp_path), "--resume", "--no-progress"]) == 2
    assert "keeps 2 weight averages" in capsys.readouterr().err
