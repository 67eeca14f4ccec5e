"""nnU-Net v2's own trainer on a wall-clock budget; run with the interpreter of an environment that has nnunetv2.

Executed as a script by ``benchmarks/nnunet_side_by_side.py`` (``--nnunet-python``), never imported by this project:
it needs only nnunetv2 and torch. ``nnUNetv2_train`` has no time limit and writes a checkpoint every 50 epochs, so
this driver builds nnU-Net's default ``nnUNetTrainer`` from the preprocessed plan (its network, loss, augmentation,
data loaders, optimiser and poly schedule) and calls its own hooks in the order of ``nnUNetTrainer.run_training``
(``on_train_start``; per epoch ``on_epoch_start``, ``on_train_epoch_start``, ``train_step`` x N,
``on_train_epoch_end``, validation steps, ``on_epoch_end``; ``on_train_end``), with two changes:

- it stops when the budget (seconds since ``--t0``, the parent's clock before it started this process) is spent,
  before an iteration that would end past it, and then calls ``on_train_end``, which writes ``checkpoint_final.pth``
  for ``nnUNetv2_predict``. An epoch cut short skips its validation and ``on_epoch_end``;
- ``--schedule budget`` sets the poly schedule's length (``num_epochs``) after every epoch to the epochs that fit
  the budget at the pace so far, so the learning rate decays to near 0 when time runs out, as the bundle's schedule
  does; ``--schedule default`` keeps nnU-Net's 1000 epochs (cut where the budget ends).

``--iterations-per-epoch`` (nnU-Net: 250) and ``--val-iterations`` (nnU-Net: 50) deviate from nnU-Net's defaults
when set; the curve file records the values used. The curve (JSON, rewritten after every iteration) holds a point per
train iteration (seconds, epoch, iteration, loss) and one per completed epoch (train and validation loss, nnU-Net's
pseudo Dice per class, its EMA).

    python benchmarks/nnunet_driver.py --dataset Dataset501_X --device cpu --budget-s 900 --curve curve.json
"""
from __future__ import annotations

import time

STARTED = time.time()

import argparse  # noqa: E402 - the clock above starts before the slow imports
import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def _write(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def _float_list(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="DatasetXXX_Name under nnUNet_preprocessed")
    ap.add_argument("--configuration", default="3d_fullres")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--plans", default="nnUNetPlans")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--budget-s", type=float, required=True)
    ap.add_argument("--t0", type=float, default=None, help="epoch seconds the budget counts from (default: now)")
    ap.add_argument("--schedule", choices=("budget", "default"), default="budget")
    ap.add_argument("--iterations-per-epoch", type=int, default=None)
    ap.add_argument("--val-iterations", type=int, default=None)
    ap.add_argument("--curve", required=True, help="JSON file for the curve and the run's facts")
    args = ap.parse_args(argv)
    t0 = args.t0 if args.t0 is not None else STARTED

    import torch

    if args.device == "cpu":  # as nnUNetv2_train -device cpu / cuda set them
        torch.set_num_threads(multiprocessing.cpu_count())
    else:
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from nnunetv2.paths import nnUNet_preprocessed
    # the class itself, not nnU-Net's lookup by name: that imports every trainer variant, some of which need a
    # working torchvision, which a CPU-only torch from PyPI does not get
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    base = join(nnUNet_preprocessed, args.dataset)
    plans = load_json(join(base, args.plans + ".json"))
    plans["continue_training"] = False
    trainer = nnUNetTrainer(plans=plans, configuration=args.configuration, fold=args.fold,
                            dataset_json=load_json(join(base, "dataset.json")), device=torch.device(args.device))
    defaults = {"iterations_per_epoch": trainer.num_iterations_per_epoch,
                "val_iterations": trainer.num_val_iterations_per_epoch, "num_epochs": trainer.num_epochs}
    if args.iterations_per_epoch:
        trainer.num_iterations_per_epoch = args.iterations_per_epoch
    if args.val_iterations:
        trainer.num_val_iterations_per_epoch = args.val_iterations
    facts: dict = {"trainer": type(trainer).__name__, "configuration": args.configuration, "fold": args.fold,
                   "device": args.device, "budget_s": args.budget_s, "schedule": args.schedule,
                   "nnunet_defaults": defaults, "iterations_per_epoch": trainer.num_iterations_per_epoch,
                   "val_iterations": trainer.num_val_iterations_per_epoch, "torch": torch.__version__,
                   "output_folder": trainer.output_folder, "finished": False}
    points: list[dict] = []
    elapsed = lambda: time.time() - t0  # noqa: E731

    def save() -> None:
        _write(args.curve, {**facts, "points": points})

    trainer.on_train_start()  # initialize(): network, optimiser, loss; data loaders, unpacking, plans copied
    facts["parameters"] = sum(p.numel() for p in trainer.network.parameters())
    facts["start_s"] = round(elapsed(), 1)
    facts["train_batch_size"] = trainer.batch_size
    save()
    iteration, step_s, cut = 0, None, False
    loop_start = time.time()
    while trainer.current_epoch < trainer.num_epochs and not cut:
        epoch = trainer.current_epoch
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
        outputs = []
        for _ in range(trainer.num_iterations_per_epoch):
            # stop before an iteration expected to end past the budget (half an iteration of slack either way)
            if elapsed() + 0.5 * (step_s or 0.0) >= args.budget_s:
                cut = True
                break
            t = time.time()
            outputs.append(trainer.train_step(next(trainer.dataloader_train)))
            step_s = time.time() - t
            iteration += 1
            points.append({"seconds": round(elapsed(), 2), "epoch": epoch, "iteration": iteration,
                           "train_loss": round(float(outputs[-1]["loss"]), 5), "step_s": round(step_s, 3)})
            save()
        if cut:
            break
        trainer.on_train_epoch_end(outputs)
        with torch.no_grad():
            trainer.on_validation_epoch_start()
            val = [trainer.validation_step(next(trainer.dataloader_val))
                   for _ in range(trainer.num_val_iterations_per_epoch)]
            trainer.on_validation_epoch_end(val)
        trainer.on_epoch_end()  # logs, checkpoint_best / _latest, progress.png; current_epoch += 1
        log = trainer.logger
        points.append({"seconds": round(elapsed(), 2), "epoch": epoch, "iteration": iteration, "epoch_end": True,
                       "train_loss": round(float(log.get_value("train_losses", step=-1)), 5),
                       "val_loss": round(float(log.get_value("val_losses", step=-1)), 5),
                       "pseudo_dice": _float_list(log.get_value("dice_per_class_or_region", step=-1)),
                       "ema_pseudo_dice": round(float(log.get_value("ema_fg_dice", step=-1)), 4),
                       "lr": round(float(trainer.optimizer.param_groups[0]["lr"]), 6)})
        if args.schedule == "budget":  # the epochs that fit at the pace so far; never fewer than those begun
            per_epoch = (time.time() - loop_start) / trainer.current_epoch
            fit = trainer.current_epoch + int(max(0.0, args.budget_s - elapsed()) // per_epoch)
            trainer.num_epochs = max(trainer.current_epoch, fit)  # == current_epoch: the loop ends here
            trainer.lr_scheduler.max_steps = max(trainer.num_epochs, 1)  # poly steps stay < max_steps
        save()
    facts.update({"cut_by_budget": cut, "epochs_completed": trainer.current_epoch, "iterations": iteration,
                  "num_epochs_final": trainer.num_epochs, "train_end_s": round(elapsed(), 1)})
    trainer.on_train_end()  # checkpoint_final.pth, data loaders shut down
    facts.update({"finished": True, "wall_s": round(elapsed(), 1),
                  "checkpoint": os.path.join(trainer.output_folder, "checkpoint_final.pth")})
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
