"""Baseline vs +rotation: how much faster does a method converge with the rotation auxiliary?

Trains the method of ``--config`` twice on the same data, seed and budget: once with
``rotation_weight 0`` (the baseline) and once with the rotation auxiliary. Each arm is one
``rotaux fit`` run of ``max(--eval-epochs)`` epochs that keeps a checkpoint after every epoch;
the checkpoints after the epochs in ``--eval-epochs`` are then evaluated offline with the
backbone in eval mode on un-augmented images:

- weighted kNN (k=200, T=0.1; Wu et al. 2018) of validation features against all training
  features, and
- linear evaluation on precomputed features (SGD + cosine, ``--linear-epochs`` epochs).

Wall-clock is the training time that :class:`rotaux.callbacks.TrainingClock` measured up to that
epoch (data loading and optimisation; validation and evaluation excluded). The report is
``<out>/report.md`` (a markdown table) and ``<out>/report.png`` (accuracy against epochs and
against training minutes, both arms on each panel).

The command is resumable: a finished arm is not trained again, an interrupted arm resumes from
its ``last.ckpt``, and evaluations already written are not repeated. Example (the CPU preset on
the shared CIFAR-10 training images, validation = a seeded stratified 10% of them)::

    python benchmarks/efficiency.py --config configs/efficiency/cifar10_byol_cpu.yaml \\
        --out runs/efficiency-byol --eval-epochs 1 2 4 -- --data.root /tmp/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from rotaux.callbacks.knn import knn_class_scores
from rotaux.data import SSLDataModule, ViewAugmentation
from rotaux.eval.features import extract_features
from rotaux.eval.linear import linear_eval_on_features
from rotaux.export import read_checkpoint

RUN_VERSION = "version_0"


@dataclass(frozen=True)
class Arm:
    name: str
    rotation_weight: float


@dataclass(frozen=True)
class Point:
    arm: str
    epoch: int
    images_seen: int
    train_seconds: float
    knn_top1: float
    linear_top1: float


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after `--` go to both `rotaux fit` runs unchanged.",
    )
    parser.add_argument("--config", required=True, help="the rotaux fit config of the method")
    parser.add_argument("--out", required=True, type=Path, help="output folder (resumable)")
    parser.add_argument("--eval-epochs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rotation-weight", type=float, default=0.4, help="the +rotation arm")
    parser.add_argument("--linear-epochs", type=int, default=30)
    parser.add_argument("--knn-k", type=int, default=200)
    parser.add_argument("--knn-temperature", type=float, default=0.1)
    parser.add_argument("--eval-batch-size", type=int, default=512)
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    if min(args.eval_epochs) < 1:
        parser.error("--eval-epochs must be positive")
    return args, extra


def run_dir(out: Path, arm: Arm) -> Path:
    return out / arm.name / RUN_VERSION


def checkpoint_after(out: Path, arm: Arm, epoch: int) -> Path:
    return run_dir(out, arm) / "checkpoints" / f"epoch{epoch - 1:04d}.ckpt"


def train(arm: Arm, args: argparse.Namespace, extra: list[str]) -> None:
    """One ``rotaux fit`` of the arm, resumed from its last.ckpt if it was interrupted."""
    epochs = max(args.eval_epochs)
    if checkpoint_after(args.out, arm, epochs).exists():
        print(f"[{arm.name}] trained already ({epochs} epochs)", flush=True)
        return
    command = [
        sys.executable, "-m", "rotaux.cli", "fit",
        "--config", args.config,
        "--model.rotation_weight", str(arm.rotation_weight),
        "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(args.out),
        "--trainer.logger.init_args.name", arm.name,
        "--trainer.logger.init_args.version", RUN_VERSION,
        "--checkpoint.monitor", "null",
        "--checkpoint.save_top_k", "-1",
        "--checkpoint.every_n_epochs", "1",
        "--checkpoint.filename", "epoch{epoch:04d}",
        *extra,
    ]  # fmt: skip
    last = run_dir(args.out, arm) / "checkpoints" / "last.ckpt"
    if last.exists():
        command += ["--ckpt_path", str(last)]
        print(f"[{arm.name}] resuming from {last}", flush=True)
    print(f"[{arm.name}] training {epochs} epochs: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"[{arm.name}] trained in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


def clock_at(out: Path, arm: Arm, epoch: int) -> tuple[int, float]:
    """Images seen and training seconds logged at the end of ``epoch`` (1-based)."""
    for line in (run_dir(out, arm) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("epoch") == epoch - 1 and "time/train_seconds" in row:
            return int(row["time/images_seen"]), row["time/train_seconds"]
    raise RuntimeError(f"No TrainingClock row for epoch {epoch} of {arm.name}.")


def evaluation_data(out: Path, arm: Arm) -> SSLDataModule:
    """The arm's data module as its run configured it, without rotation input."""
    options = yaml.safe_load((run_dir(out, arm) / "config.yaml").read_text())["data"]
    if options.get("augmentations"):
        options["augmentations"] = [ViewAugmentation(**view) for view in options["augmentations"]]
    data = SSLDataModule(**{**options, "with_rotation": False})
    data.setup("fit")
    return data


def evaluate(arm: Arm, epoch: int, data: SSLDataModule, args: argparse.Namespace) -> Point:
    """kNN and linear top-1 of the backbone after ``epoch``; cached as JSON next to the run."""
    cache = run_dir(args.out, arm) / f"eval_epoch{epoch:04d}.json"
    if not cache.exists():
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        backbone = read_checkpoint(checkpoint_after(args.out, arm, epoch)).build().to(device).eval()

        def features(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
            return extract_features(
                backbone, dataset, data.normalize, backbone.num_features, device,
                batch_size=args.eval_batch_size, num_workers=data.num_workers,
            )  # fmt: skip

        train_features, train_labels = features(data.eval_train_dataset())
        val_features, val_labels = features(data.val_dataloader().dataset)
        votes = knn_class_scores(
            val_features, train_features, train_labels, data.num_classes,
            k=args.knn_k, temperature=args.knn_temperature,
        )  # fmt: skip
        knn_top1 = (votes.argmax(dim=1) == val_labels).float().mean().item()
        linear = linear_eval_on_features(
            train_features, train_labels, val_features, val_labels,
            epochs=args.linear_epochs, num_classes=data.num_classes,
        )  # fmt: skip
        images_seen, train_seconds = clock_at(args.out, arm, epoch)
        point = Point(arm.name, epoch, images_seen, train_seconds, knn_top1, linear["top1"])
        cache.write_text(json.dumps(point.__dict__))
    point = Point(**json.loads(cache.read_text()))
    print(
        f"[{arm.name}] epoch {epoch}: kNN {point.knn_top1:.4f}, linear {point.linear_top1:.4f}, "
        f"{point.train_seconds / 60:.1f} training min",
        flush=True,
    )
    return point


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = f"{names[0]} x {len(names)}" if names else cpu
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu}; {device}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def write_report(points: list[Point], args: argparse.Namespace, argv: list[str]) -> None:
    rows = [
        "| arm | epochs | images seen | training min | kNN top-1 | linear top-1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        rows.append(
            f"| {p.arm} | {p.epoch} | {p.images_seen} | {p.train_seconds / 60:.1f} "
            f"| {100 * p.knn_top1:.2f} | {100 * p.linear_top1:.2f} |"
        )
    text = "\n".join(
        [
            "# Baseline vs +rotation",
            "",
            f"Command: `python benchmarks/efficiency.py {' '.join(argv)}`",
            f"Machine: {machine()}",
            "Accuracies: offline, on the validation split of the data module, backbone in eval "
            "mode; kNN k=200/T=0.1 on all training features, linear on precomputed features "
            f"({args.linear_epochs} epochs). Training minutes exclude validation/evaluation.",
            "",
            *rows,
            "",
        ]
    )
    (args.out / "report.md").write_text(text)
    plot(points, args.out / "report.png")
    print(text, flush=True)


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for arm in sorted({p.arm for p in points}):
        mine = [p for p in points if p.arm == arm]
        for metric, style in (("linear_top1", "-o"), ("knn_top1", "--s")):
            values = [100 * getattr(p, metric) for p in mine]
            label = f"{arm} ({metric.split('_')[0]})"
            by_epoch.plot([p.epoch for p in mine], values, style, label=label)
            by_time.plot([p.train_seconds / 60 for p in mine], values, style, label=label)
    by_epoch.set(xlabel="epochs", ylabel="top-1 accuracy (%)", title="accuracy vs epochs")
    by_time.set(xlabel="training minutes", title="accuracy vs wall-clock")
    by_epoch.legend(fontsize="small")
    for axis in (by_epoch, by_time):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    arms = [Arm("baseline", 0.0), Arm("rotation", args.rotation_weight)]
    for arm in arms:
        train(arm, args, extra)
    points = []
    for arm in arms:
        data = evaluation_data(args.out, arm)
        points += [evaluate(arm, epoch, data, args) for epoch in sorted(set(args.eval_epochs))]
    write_report(points, args, argv)


if __name__ == "__main__":
    main()
