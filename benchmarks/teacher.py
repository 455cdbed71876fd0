"""How long the CNN teacher takes to train, and how accurate it gets: the full profile's claim.

    python benchmarks/teacher.py                                  # the profile's teacher (DEIT_PROFILE; full on a GPU)
    python benchmarks/teacher.py --epochs 30 45 --output results/teacher_epochs.json
    python benchmarks/teacher.py --profile cpu --epochs 1 --train-per-class 200   # a quick CPU probe
    python benchmarks/teacher.py --trace results/teacher_profile.txt   # where the first steps' time goes

Seconds are the training loop only (data already on the device; evaluation excluded), measured
with the device synchronized. The target for the full profile: >= 94 % test accuracy in <= 60 s.
With --save the last run's teacher is saved where helpers.teacher.load_teacher finds it
(runs/<profile>/teacher/teacher.pt), so the GPU plan's later stages distill from it.
--trace trains nothing: it profiles a new teacher's first steps, set-up included, in this fresh
process (helpers.teacher.first_steps_profile), and writes torch.profiler's table.
"""
import argparse
import dataclasses
import sys

import torch

from helpers.cli import device_name, positive_int, output_file
from helpers.errors import reports_errors
from helpers.profile_runs import profile_data
from helpers.files import write_json_atomically, write_text_atomically
from helpers.gpu_results import epoch_split
from helpers.profiles import get_profile
from helpers.provenance import provenance
from helpers.teacher import estimated_teacher_time, first_steps_profile, save_teacher, teacher_config, teacher_path, train_teacher
from helpers.train import pick_device


@reports_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help="ci, cpu or full (default: DEIT_PROFILE, else full on a GPU and cpu without)")
    parser.add_argument("--epochs", type=positive_int, nargs="+", default=None,
                        help="one run per value (default: the profile's teacher epochs)")
    parser.add_argument("--train-per-class", type=positive_int, default=None,
                        help="fewer training images per class, for a quick probe (default: the profile's)")
    parser.add_argument("--device", type=device_name, help="cuda, cpu, ... (default: the best available)")
    parser.add_argument("--output", type=output_file, help="write a JSON with the results and provenance here")
    parser.add_argument("--save", action="store_true", help="save the last teacher for later use (runs/<profile>/teacher)")
    parser.add_argument("--trace", type=output_file, help="instead of training: profile a new teacher's first "
                                                          "--trace-steps steps, set-up included, into this file")
    parser.add_argument("--trace-steps", type=positive_int, default=20)
    args = parser.parse_args(argv)

    profile = get_profile(args.profile)
    if args.trace:
        table = first_steps_profile(profile, args.trace_steps, args.device)
        write_text_atomically(table, args.trace)
        print(table.split("\n")[0] + f"\nwrote {args.trace}")
        return 0
    data = profile_data(profile, train_per_class=args.train_per_class)
    if (torch.device(args.device) if args.device else pick_device()).type == "cpu":  # hours for the full teacher
        print(estimated_teacher_time(profile, args.device), flush=True)
    rows = []
    for epochs in args.epochs or [teacher_config(profile).epochs]:
        config = teacher_config(profile, epochs=epochs)
        model, record = train_teacher(profile, config, device=args.device, progress=False, data=data)
        history = record["history"]
        rows.append({"epochs": epochs, "seconds": round(record["seconds"], 2),
                     "val_acc": round(record["val_acc"], 2), "test_acc": round(record["test_acc"], 2),
                     "device": record["device"], "train_size": record["train_size"],
                     "val_size": record["val_size"], "test_size": record["test_size"],
                     # per epoch: where the seconds go (the first epoch also sets up the GPU's
                     # kernels) and how accuracy grows, to tell a short schedule from a ceiling
                     "epoch_seconds": [round(r["train_seconds"], 3) for r in history],
                     "val_acc_by_epoch": [round(r["val_acc"], 2) for r in history],
                     "final_train_loss": round(history[-1]["train_loss"], 4)})
        print(f"epochs {epochs}: {record['test_acc']:.2f}% in {record['seconds']:.1f} s "
              f"({epoch_split(rows[-1]['epoch_seconds'])})", flush=True)

    if args.save:
        save_teacher(model, record, teacher_path(profile))
        print(f"saved the {config.epochs}-epoch teacher at {teacher_path(profile)}")
    print(f"\nteacher of profile {profile.name}: layers {config.layers}, channels {config.channels}, "
          f"batch {config.batch_size}, {rows[0]['train_size']:,} training / {rows[0]['test_size']:,} test images\n")
    print(f"{'epochs':>6s} {'seconds':>8s} {'test acc':>9s}  device")
    for r in rows:
        print(f"{r['epochs']:6d} {r['seconds']:8.1f} {r['test_acc']:8.2f}%  {r['device']}; {epoch_split(r['epoch_seconds'])}")
    if args.output:
        write_json_atomically({
            "benchmark": "teacher", "profile": profile.name, "rows": rows,
            "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"},
            **provenance(),
        }, args.output)
        print(f"\nwrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
