r"""`python -m helpers train`: DeiT's recipe on CIFAR-10 from the command line.

    python -m helpers train --profile full --output-dir runs/deit
    python -m helpers train --aa none --mixup 0 --cutmix 0 --output-dir runs/no-aug   # ablate
    python -m helpers train --output-dir runs/deit --resume                        # continue
    python -m helpers train --eval runs/deit/last.pt                               # evaluate
    python -m helpers train --profile full --finetune runs/deit/last.pt --input-size 48 \
        --epochs 10 --warmup-epochs 2 --lr 5e-6 --min-lr 5e-6 --weight-decay 1e-8 \
        --output-dir runs/deit-48                                                  # at a higher resolution
    torchrun --nproc_per_node=4 -m helpers train --profile full                    # multi-GPU

Flag names follow DeiT's main.py, except two: --resume is a switch (continue the run in
--output-dir) and --eval takes the checkpoint (DeiT: --eval --resume PATH). Sizes (data, epochs,
batch, model) come from the profile (DEIT_PROFILE or --profile); any flag given overrides it.
--resume takes the run's own settings from its checkpoint (profile, recipe, model, schedule, data
size, weight average), so the folder is all it needs; --eval tests on the checkpoint's profile's test images.
--finetune CHECKPOINT starts from a finished run's weights, its position embeddings resampled to
--input-size (DeiT's fine-tuning at a higher resolution; helpers.resolution, notebook 04). The new
run is built from the flags: give that run's --profile and --distillation-type again. DeiT's
main.py refuses --finetune with distillation; here a teacher may teach, and it sees the images
made 32 px again.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path

import torch

from helpers.data import TensorBatches, load_cifar10
from helpers.constants import IMAGE_SIZE, OPTIMIZERS, RUNS
from helpers.weight_average import ema_key
from helpers.profile_runs import EVAL_BATCH, profile_config, train_in_profile
from helpers.models import count_parameters, vit_config
from helpers.profiles import PROFILES, get_profile
from helpers.provenance import provenance
from helpers.recipe import DISTILLATION_TYPES, Recipe
from helpers.resolution import ResizeInputs, at_resolution, upsample_images
from helpers.train import CHECKPOINT, CheckpointError, evaluate, load_checkpoint, pick_device

# The flags a resumed run takes from its checkpoint's training config when they are not given.
SAVED_CONFIG_FLAGS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "min_lr", "clip_grad", "seed",
                      "momentum")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


def device_name(text: str) -> str:
    """A torch device this machine has, e.g. cpu, cuda or cuda:1."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("no CUDA GPU here: leave out --device, or use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"there is no {text}: this machine has {torch.cuda.device_count()} GPU(s)")
    return text


def aa_spec(text: str) -> str:
    """--aa none means off, as '' does: Windows' cmd passes '' on as two quote marks."""
    return "" if text.lower() == "none" else text


def output_file(text: str) -> Path:
    """An output file's path, checked before any work: a long benchmark must not fail at its end."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name inside it")
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is None or not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{folder} is a file, so {path} cannot be made; choose another path")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{path} cannot be written here; choose a writable path")
    return path


def parser() -> argparse.ArgumentParser:
    d = Recipe()
    p = argparse.ArgumentParser(prog="python -m helpers train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=list(PROFILES), help="run size (default: DEIT_PROFILE, else by hardware)")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, help="per process, as in DeiT")
    p.add_argument("--lr", type=positive_float, help="for a global batch of 512; scaled linearly (default: the "
                                                      "profile's, for --opt)")
    p.add_argument("--weight-decay", type=non_negative_float, help="default: 0.05 for AdamW, the profile's for SGD")
    p.add_argument("--momentum", type=non_negative_float, help="SGD's (default 0.9)")
    p.add_argument("--warmup-epochs", type=non_negative_int)
    p.add_argument("--min-lr", type=non_negative_float)
    p.add_argument("--clip-grad", type=positive_float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=positive_int, help="training images per class (default: the profile's)")
    p.add_argument("--embed-dim", type=positive_int)
    p.add_argument("--depth", type=positive_int)
    p.add_argument("--num-heads", type=positive_int)
    p.add_argument("--input-size", type=positive_int,
                   help="image size in pixels (default 32, CIFAR-10's; larger sizes enlarge the images)")
    p.add_argument("--model-ema-decay", type=float, metavar="DECAY",
                   help="keep an average of the weights (EMA) with this decay beside the model and report its "
                        "accuracy too; DeiT's main.py keeps one with 0.99996 by default, which remembers 25,000 "
                        "steps: scale it to your run (helpers.weight_average.scaled_decay; notebook 02)")
    p.add_argument("--finetune", metavar="CHECKPOINT",
                   help="start from this run's weights, its position embeddings resampled to --input-size")
    g = p.add_argument_group("DeiT ingredients (defaults: DeiT's)")
    g.add_argument("--aa", default=d.aa, type=aa_spec,
                   help="RandAugment string; 'original' for AutoAugment's ImageNet policy (Table 8's row; "
                        "notebook 01); 'none' turns it off (so does '', where the shell passes it)")
    g.add_argument("--reprob", type=float, default=d.reprob)
    g.add_argument("--mixup", type=float, default=d.mixup)
    g.add_argument("--cutmix", type=float, default=d.cutmix)
    g.add_argument("--mixup-prob", type=float, default=d.mixup_prob)
    g.add_argument("--mixup-switch-prob", type=float, default=d.mixup_switch_prob)
    g.add_argument("--smoothing", type=float, default=d.smoothing)
    g.add_argument("--drop-path", type=float, default=d.drop_path)
    g.add_argument("--drop", type=float, default=d.drop,
                   help="dropout rate (DeiT: 0, its main.py's default; Table 8's 'with dropout' row; notebook 02)")
    g.add_argument("--opt", choices=OPTIMIZERS, default=d.opt,
                   help="the optimizer: adamw, or sgd (Nesterov momentum) as Table 8's 'SGD for pre-training'")
    g.add_argument("--repeated-aug", action=argparse.BooleanOptionalAction, default=d.repeated_aug)
    g.add_argument("--distillation-type", choices=DISTILLATION_TYPES, default=d.distillation_type)
    g.add_argument("--distillation-alpha", type=float, default=d.distillation_alpha,
                   help="weight of the teacher's term (default: 0.5 for hard, the paper's 0.1 for soft; "
                        "DeiT's main.py uses 0.5 for both)")
    g.add_argument("--distillation-tau", type=float, default=d.distillation_tau,
                   help="soft distillation's temperature (default: the paper's 3.0; DeiT's main.py uses 1.0)")
    g.add_argument("--teacher-path", help="teacher checkpoint (default: the profile's, trained if missing; "
                                          "`python -m helpers teacher` trains it alone)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile (default: on with a GPU)")
    p.add_argument("--output-dir", "--output_dir", help="checkpoints and history (default runs/<profile>/deit)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--eval", metavar="CHECKPOINT", help="only evaluate this checkpoint on the test set")
    p.add_argument("--no-progress", action="store_true")
    return p


def start_distributed() -> tuple[int, int, torch.device]:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPU); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, pick_device()
    import torch.distributed as dist
    if "LOCAL_RANK" not in os.environ:
        raise SystemExit(f"error: WORLD_SIZE is {world} but LOCAL_RANK is not set: start several processes "
                         f"with torchrun, or unset WORLD_SIZE for one.")
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return dist.get_rank(), world, torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, torch.device("cpu")


def recipe_from(args) -> Recipe:
    unused = [flag for flag, value, default in (("--distillation-alpha", args.distillation_alpha, None),
                                                ("--distillation-tau", args.distillation_tau, Recipe().distillation_tau),
                                                ("--teacher-path", args.teacher_path, None))
              if value != default]
    if args.distillation_type == "none" and unused:
        raise ValueError(f"{' and '.join(unused)} set how a student learns from its teacher: add "
                         f"--distillation-type hard or soft, or leave {'them' if len(unused) > 1 else 'it'} out.")
    return Recipe(aa=args.aa, reprob=args.reprob, mixup=args.mixup, cutmix=args.cutmix,
                  mixup_prob=args.mixup_prob, mixup_switch_prob=args.mixup_switch_prob,
                  smoothing=args.smoothing, drop_path=args.drop_path, drop=args.drop, repeated_aug=args.repeated_aug,
                  opt=args.opt,
                  distillation_type=args.distillation_type, distillation_alpha=args.distillation_alpha,
                  distillation_tau=args.distillation_tau)


def run_dir_of(args) -> Path:
    return Path(args.output_dir) if args.output_dir else RUNS / get_profile(args.profile).name / "deit"


def with_saved_settings(args):
    """For --resume: every flag left at its default takes the value the run was started with
    (from its checkpoint), so `--output-dir DIR --resume` alone continues it. A flag given with
    another value is kept, and resuming then refuses and names the difference (helpers.train)."""
    path = run_dir_of(args) / CHECKPOINT
    if not path.exists():  # most likely a mistyped folder: starting over there would hide it
        raise CheckpointError(f"--resume: there is no run to continue in {path.parent} (no {CHECKPOINT}). "
                              f"Check --output-dir, or leave out --resume to start a new run there.")
    state = load_checkpoint(path)
    meta, config = state.get("metadata", {}), state.get("config", {})
    if len(state.get("averages", {})) > 1:  # the command line keeps one; fit refuses to drop the others
        raise CheckpointError(f"--resume: {path} keeps {len(state['averages'])} weight averages and the command line "
                              f"resumes runs with one: resume it with helpers.profile_runs.train_in_profile(..., "
                              f"ema_decays=...), which made it.")
    saved = {"profile": meta.get("profile"), "train_per_class": meta.get("train_per_class"),
             **meta.get("recipe", {}), **{k: v for k, v in meta.get("model", {}).items() if k in ("embed_dim", "depth", "num_heads")},
             "input_size": meta.get("model", {}).get("img_size"), "finetune": meta.get("finetuned_from"),
             "model_ema_decay": next(iter(state.get("averages", {}).values()), {}).get("decay"),
             **{k: config.get(k) for k in SAVED_CONFIG_FLAGS}}
    defaults = parser().parse_args([])
    for name, value in saved.items():
        if value is not None and hasattr(args, name) and getattr(args, name) == getattr(defaults, name):
            setattr(args, name, value)
    return args


def trained_model(path, flag: str):
    """(model, checkpoint) of a run's last.pt, the model's weights loaded; `flag` names the option in errors."""
    if not Path(path).is_file():
        raise CheckpointError(f"no checkpoint at {path}. Training writes {CHECKPOINT} into its --output-dir "
                              f"(default runs/<profile>/deit); {flag} takes that file.")
    state = load_checkpoint(path, needs=("model",), fix=f"It was left untouched. {flag} takes a run's {CHECKPOINT}, "
                                                      f"written by `python -m helpers train`: check the path.")
    meta = state.get("metadata", {})
    if "model" not in meta:
        raise CheckpointError(f"{path} has no model config in its metadata: it is not a run of `python -m helpers "
                              f"train`. {flag} takes a run's {CHECKPOINT} (e.g. runs/<profile>/deit/{CHECKPOINT}); "
                              f"`python -m helpers teacher` evaluates the CNN teacher.")
    if newer := sorted(set(meta.get("recipe", {})) - set(Recipe().as_dict())):
        raise CheckpointError(f"{path} was written by a newer version of this course (recipe settings {newer} are "
                              f"unknown here): update this checkout (git pull) to read it.")
    recipe = Recipe(**meta.get("recipe", {}))
    model = recipe.build_model(**{k: v for k, v in meta["model"].items() if k not in ("drop_path_rate", "drop_rate", "distilled")})
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # weights of another shape than the config it recorded
        raise CheckpointError(f"{path}'s weights do not fit the model its metadata describes "
                              f"({str(err).splitlines()[0]}): the file was edited or damaged. Train it again.") from None
    return model, state


def finetune_start(path, model: torch.nn.Module) -> str:
    """DeiT's --finetune: load a finished run's weights into `model`, the position embeddings
    resampled to `model`'s image size; the run's model must otherwise have the same shape.
    Returns a line that says what was resampled."""
    trained, state = trained_model(path, "--finetune")
    try:
        model.load_state_dict(at_resolution(trained, model.patch_embed.img_size).state_dict())
    except (RuntimeError, ValueError) as err:  # ValueError: another patch size, which img_size must fit
        meta = state["metadata"]
        raise ValueError(f"--finetune: {path} holds another model than this run builds ({str(err).splitlines()[0]}). "
                         f"That run used --profile {meta.get('profile')} and --distillation-type "
                         f"{meta.get('recipe', {}).get('distillation_type', 'none')}: give the same, and its "
                         f"--embed-dim, --depth and --num-heads if it set them.") from None
    before, after = trained.patch_embed.img_size, model.patch_embed.img_size
    return (f"--finetune: the weights of {path}, trained on {before}x{before} images, "
            + (f"with their position embeddings resampled to {after}x{after} (--input-size)"
               if after != before else "at the same size (--input-size changes it)"))


def evaluate_checkpoint(path, profile_name, device) -> dict:
    model, state = trained_model(path, "--eval")
    meta = state["metadata"]
    profile = get_profile(profile_name or meta.get("profile"))  # the run's own test set unless told
    test = upsample_images(load_cifar10("test", n_per_class=profile.test_per_class), model.patch_embed.img_size)
    result = evaluate(model.to(device), TensorBatches(test, EVAL_BATCH, shuffle=False), device)
    print(f"{path}: test accuracy {result['val_acc']:.2f}% on {len(test):,} images "
          f"(loss {result['val_loss']:.3f}; epoch {state['epoch']})")
    return result


def main(argv=None) -> int:
    from helpers.errors import reports_errors
    args = parser().parse_args(argv)

    def hint(err) -> str:  # for the run's own folder, not for a checkpoint given to --eval or --finetune
        if (isinstance(err, CheckpointError) and not args.eval and not str(err).startswith("--resume")
                and not (args.finetune and str(args.finetune) in str(err))):
            return "(On the command line: --resume continues a run; --output-dir picks another folder.)"
        return ""
    return reports_errors(run, also=(FloatingPointError, ValueError), hint=hint)(args)


def run(args) -> int:
    if args.eval:
        evaluate_checkpoint(args.eval, args.profile, pick_device())
        return 0
    if args.resume:
        args = with_saved_settings(args)
    recipe = recipe_from(args)  # a setting out of range fails before any data, teacher or model is made
    if args.model_ema_decay is not None and not 0 <= args.model_ema_decay < 1:
        raise ValueError(f"--model-ema-decay must lie in [0, 1), not {args.model_ema_decay} (DeiT's is 0.99996).")
    profile = get_profile(args.profile)
    rank, world, device = start_distributed()
    sizes = {k: v for k, v in dict(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads).items() if v}
    model_config = {**profile.vit_sizes, **sizes, **({"img_size": args.input_size} if args.input_size else {})}
    overrides = {k: v for k, v in dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                       weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                                       min_lr=args.min_lr, clip_grad=args.clip_grad,
                                       momentum=args.momentum).items() if v is not None}
    config = profile_config(profile, seed=args.seed, smoothing=recipe.smoothing, opt=recipe.opt,
                            compile=device.type == "cuda" if args.compile is None else args.compile,
                            **overrides)
    if args.warmup_epochs is not None and args.warmup_epochs > config.epochs:
        raise ValueError(f"--warmup-epochs {args.warmup_epochs} is more than the run's {config.epochs} epochs: the "
                         f"learning rate would never reach its peak. Give fewer warmup epochs or more --epochs.")
    torch.manual_seed(args.seed)
    model = recipe.build_model(**model_config)
    # a resumed run's own checkpoint holds its weights: the run it started from is not read again
    started_from = finetune_start(args.finetune, model) if args.finetune and not args.resume else None
    teacher = None
    if recipe.distillation_type != "none":
        from helpers.teacher import TeacherError, load_or_train_teacher, teacher_path
        if world > 1 and args.teacher_path is None and not teacher_path(profile).exists():
            raise TeacherError(f"No teacher at {teacher_path(profile)}: under torchrun every process would train "
                               f"one and save it there at once. Train it first in one process (`python -m helpers "
                               f"teacher --profile {profile.name}`), then start torchrun again.")
        teacher = load_or_train_teacher(profile, path=args.teacher_path, train_if_missing=args.teacher_path is None,
                                        device=device).to_device(device)
        teacher = ResizeInputs(teacher, IMAGE_SIZE)  # at --input-size it would see enlarged images, and err more
    run_dir = run_dir_of(args)
    if rank == 0:
        if started_from:
            print(started_from, flush=True)
        train_images = 10 * args.train_per_class if args.train_per_class else profile.train_size
        print(f"profile {profile.name}: {train_images:,} training images ({profile.val_size:,} held out "
              f"for validation), {config.epochs} epochs, batch {config.batch_size} x {world} process(es), "
              f"ViT {model_config} ({count_parameters(model):,} parameters) on {device}\nrecipe: {recipe}",
              flush=True)
    history = train_in_profile(
        run_dir.name, model, profile, recipe=recipe, teacher=teacher, run_dir=run_dir, device=device,
        train_per_class=args.train_per_class, num_replicas=world, rank=rank, img_size=args.input_size,
        progress=not args.no_progress, log_epochs=True, resume=args.resume,
        ema_decays=() if args.model_ema_decay is None else (args.model_ema_decay,),
        metadata={"model": vit_config(**model_config), "profile": profile.name, "world_size": world,
                  "train_per_class": args.train_per_class, "finetuned_from": args.finetune, **provenance()},
        **asdict(config))
    if rank == 0:
        final = history[-1]
        print(f"final validation accuracy {final['val_acc']:.2f}% (epoch {final['epoch']}), test accuracy "
              f"{final['test_acc']:.2f}%; {sum(r['seconds'] for r in history):.0f} s of training; files in {run_dir}")
        if args.model_ema_decay is not None:
            decay = args.model_ema_decay
            print(f"the average of the weights (EMA, decay {decay:g}): final validation accuracy "
                  f"{final[ema_key(decay, 'val_acc')]:.2f}%, test accuracy {final[ema_key(decay, 'test_acc')]:.2f}% "
                  f"(saved in the checkpoint under 'averages')")
    if world > 1:
        torch.distributed.destroy_process_group()
    return 0
