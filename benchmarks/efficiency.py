"""Baseline vs +rotation across methods and seeds: how much faster does each method converge with
the rotation auxiliary?

Every method (a ``rotaux fit`` config) is trained in every arm (a named set of extra options:
``baseline`` = ``--model.rotation_weight 0``, ``rotation`` = the config's own rotation setting,
and any arm you add, such as ``effssl="--model.rotation_source views --model.rotation_copies 1
--model.rotation_weight 0.1"``) with every seed, on the same data and budget. Budget points are
epochs, in one of two modes, and the report says which:

- ``schedule``: one run of ``max(--budgets)`` epochs per method, arm and seed, evaluated after
  each budget's epoch: "after N epochs of an M-epoch schedule" (the learning rate has not
  decayed to its end at N < M);
- ``separate``: an independent run of N epochs (its own warm-up and cosine schedule) per budget
  N: "a complete N-epoch run". The longest run is the same in both modes and trained once.

Each point is evaluated offline with the backbone in eval mode on un-augmented images: weighted
kNN (k=200, T=0.1; Wu et al. 2018) against all training features and linear evaluation on
precomputed features (SGD + cosine, ``--linear-epochs``). Training minutes are those that
:class:`rotaux.callbacks.TrainingClock` measured up to the point (data loading and optimisation;
validation and evaluation excluded).

Per method, over seeds (mean and sample standard deviation), the report gives the accuracy of
every arm at every budget point with its training minutes; for every arm against the reference
arm (``--reference``, the baseline): the lead at equal training time and the training time the
arm needs to reach the reference's final accuracy, as a fraction of the reference's time (see
:func:`lead_at_equal_time` and :func:`time_to_reach`; both are computed per seed, pairing the
arms' runs of one seed, then summarised over seeds). Outputs: ``<out>/report.md`` (tables),
``<out>/report.json`` (every point and summary) and ``<out>/report.png`` (accuracy against
epochs and against training minutes, bands = mean ± std over seeds).

Resumable with progress: finished runs are not trained again, an interrupted run resumes from its
``last.ckpt``, evaluations already written are not repeated. The CPU preset of two methods and
two seeds::

    python benchmarks/efficiency.py --spec configs/efficiency/cpu_two_methods.yaml \\
        --out runs/efficiency-cpu -- --data.dataset.root /tmp/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import torch
import yaml

from rotaux.callbacks.knn import knn_class_scores
from rotaux.data import DataSource, SSLDataModule, ViewAugmentation
from rotaux.eval.features import extract_features
from rotaux.eval.linear import linear_eval_on_features
from rotaux.export import read_checkpoint_backbone

METRICS = ("linear_top1", "knn_top1")
METRIC_NAMES = {"linear_top1": "linear top-1", "knn_top1": "kNN top-1"}
DEFAULT_ARMS = {"baseline": "--model.rotation_weight 0", "rotation": ""}
MODE_LABELS = {
    "schedule": "after N epochs of one {longest}-epoch cosine schedule (checkpoints of one run)",
    "separate": "a complete N-epoch run per budget (its own warm-up and cosine schedule)",
}


@dataclass(frozen=True)
class Arm:
    """A named set of extra ``rotaux fit`` options (``baseline``: rotation weight 0)."""

    name: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class Run:
    """One training run: a method's config in one arm with one seed, for ``epochs`` epochs."""

    method: str
    config: str
    arm: Arm
    seed: int
    epochs: int

    def folder(self, out: Path) -> Path:
        return (
            out / "runs" / self.method / self.arm.name / f"seed{self.seed}_{self.epochs}ep" / "run"
        )

    def checkpoint_after(self, out: Path, epoch: int) -> Path:
        return self.folder(out) / "checkpoints" / f"epoch{epoch - 1:04d}.ckpt"

    def label(self) -> str:
        return f"{self.method}/{self.arm.name}/seed{self.seed}/{self.epochs}ep"


@dataclass(frozen=True)
class Point:
    """One evaluated budget point of one run."""

    method: str
    arm: str
    seed: int
    epoch: int
    schedule_epochs: int
    images_seen: int
    train_seconds: float
    knn_top1: float
    linear_top1: float

    @property
    def minutes(self) -> float:
        return self.train_seconds / 60


# ---------------------------------------------------------------- aggregation (pure functions)


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (0 for one value) and count of values over seeds."""

    mean: float
    std: float
    n: int

    def format(self, scale: float = 1.0, digits: int = 2) -> str:
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return f"{scale * self.mean:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.std:.{digits}f}"


def summarise(values: Sequence[float | None]) -> Summary:
    """Mean and sample standard deviation (``n - 1`` in the denominator) of the values that are
    not ``None``."""
    present = [value for value in values if value is not None]
    if not present:
        return Summary(math.nan, math.nan, 0)
    spread = statistics.stdev(present) if len(present) > 1 else 0.0
    return Summary(statistics.fmean(present), spread, len(present))


def interpolate(times: Sequence[float], values: Sequence[float], at: float) -> float | None:
    """Piecewise-linear interpolation of ``values`` over increasing ``times`` at time ``at``;
    ``None`` outside ``[times[0], times[-1]]`` (no extrapolation)."""
    if not times or at < times[0] or at > times[-1]:
        return None
    for (t0, v0), (t1, v1) in pairwise(zip(times, values, strict=True)):
        if t0 <= at <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (at - t0) / (t1 - t0)
    return values[-1]


def lead_at_equal_time(
    reference: Sequence[tuple[float, float]], other: Sequence[tuple[float, float]]
) -> list[float | None]:
    """At each ``(minutes, accuracy)`` point of ``reference``: the accuracy of ``other`` at the
    same training time (interpolated linearly in minutes between its points) minus the
    reference's; ``None`` where that time is outside ``other``'s measured range."""
    times = [time for time, _ in other]
    values = [value for _, value in other]
    leads = []
    for minutes, accuracy in reference:
        at = interpolate(times, values, minutes)
        leads.append(None if at is None else at - accuracy)
    return leads


@dataclass(frozen=True)
class Reach:
    """When a curve first reaches a target accuracy: ``minutes`` (``None``: not reached) and
    whether it is only an upper bound (already reached at the first measured point)."""

    minutes: float | None
    upper_bound: bool = False


def time_to_reach(curve: Sequence[tuple[float, float]], target: float) -> Reach:
    """The training time at which the piecewise-linear ``(minutes, accuracy)`` curve first
    reaches ``target``: linear interpolation between the two points around the first crossing;
    the first point's time, as an upper bound, when that point already reaches it."""
    if curve[0][1] >= target:
        return Reach(curve[0][0], upper_bound=True)
    for (t0, a0), (t1, a1) in pairwise(curve):
        if a0 < target <= a1:
            return Reach(t0 + (target - a0) * (t1 - t0) / (a1 - a0))
    return Reach(None)


def curve_of(points: Sequence[Point], metric: str) -> list[tuple[float, float]]:
    """``(minutes, accuracy)`` of a run's points in epoch order."""
    ordered = sorted(points, key=lambda point: point.epoch)
    return [(point.minutes, getattr(point, metric)) for point in ordered]


@dataclass(frozen=True)
class Comparison:
    """An arm against the reference arm for one method and metric, summarised over seeds."""

    arm: str
    metric: str
    reference_epochs: list[int]
    reference_minutes: list[Summary]
    leads: list[Summary]
    time_fraction: Summary
    reached: int
    upper_bounds: int
    seeds: int


def compare(
    points: Sequence[Point], method: str, arm: str, reference: str, metric: str
) -> Comparison:
    """Lead at equal training time (at each of the reference's budget points) and the fraction of
    the reference's final training time that ``arm`` needs to reach the reference's final
    accuracy, per seed (pairing the two arms' runs of that seed), summarised over seeds."""
    mine = [point for point in points if point.method == method]
    seeds = sorted(
        {point.seed for point in mine if point.arm == arm}
        & {point.seed for point in mine if point.arm == reference}
    )
    epochs = sorted({point.epoch for point in mine if point.arm == reference})
    leads: list[list[float | None]] = []
    minutes: list[list[float]] = []
    fractions: list[float | None] = []
    upper_bounds = 0
    for seed in seeds:
        ref_curve = curve_of([p for p in mine if p.arm == reference and p.seed == seed], metric)
        arm_curve = curve_of([p for p in mine if p.arm == arm and p.seed == seed], metric)
        leads.append(lead_at_equal_time(ref_curve, arm_curve))
        minutes.append([time for time, _ in ref_curve])
        final_time, final_accuracy = ref_curve[-1]
        reach = time_to_reach(arm_curve, final_accuracy)
        upper_bounds += reach.upper_bound
        fractions.append(None if reach.minutes is None else reach.minutes / final_time)
    return Comparison(
        arm=arm,
        metric=metric,
        reference_epochs=epochs,
        reference_minutes=[summarise(column) for column in zip(*minutes, strict=True)],
        leads=[summarise(column) for column in zip(*leads, strict=True)],
        time_fraction=summarise(fractions),
        reached=sum(fraction is not None for fraction in fractions),
        upper_bounds=upper_bounds,
        seeds=len(seeds),
    )


def budget_table(points: Sequence[Point], method: str, arms: Sequence[str]) -> list[str]:
    """Markdown rows: per arm and budget point, training minutes and accuracies over seeds."""
    rows = [
        "| arm | epochs | seeds | training min | linear top-1 (%) | kNN top-1 (%) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        mine = [p for p in points if p.method == method and p.arm == arm]
        for epoch in sorted({p.epoch for p in mine}):
            at = [p for p in mine if p.epoch == epoch]
            rows.append(
                f"| {arm} | {epoch} | {len(at)} "
                f"| {summarise([p.minutes for p in at]).format(1, 1)} "
                f"| {summarise([p.linear_top1 for p in at]).format(100)} "
                f"| {summarise([p.knn_top1 for p in at]).format(100)} |"
            )
    return rows


def comparison_rows(comparison: Comparison, reference: str) -> list[str]:
    rows = []
    for epoch, minutes, lead in zip(
        comparison.reference_epochs, comparison.reference_minutes, comparison.leads, strict=True
    ):
        rows.append(
            f"| {comparison.arm} | {METRIC_NAMES[comparison.metric]} | {reference} after {epoch} "
            f"ep ({minutes.format(1, 1)} min) | {lead.format(100)} |"
        )
    return rows


def final_accuracy(points: Sequence[Point], arm: str, epoch: int, metric: str) -> str:
    """``metric`` of ``arm`` at budget ``epoch``, over seeds, in %."""
    return summarise(
        [getattr(p, metric) for p in points if p.arm == arm and p.epoch == epoch]
    ).format(100)


def describe_reach(comparison: Comparison) -> str:
    fraction = comparison.time_fraction
    if comparison.reached == 0:
        return "not reached"
    text = fraction.format(1, 2)
    if comparison.upper_bounds:
        text = f"≤ {text}"
    if comparison.reached < comparison.seeds:
        text += f" (reached in {comparison.reached} of {comparison.seeds} seeds)"
    return text


# ---------------------------------------------------------------- training and evaluation


def train(run: Run, out: Path, extra: Sequence[str], checkpoint_every: int) -> bool:
    """One ``rotaux fit`` of the run, resumed from its last.ckpt if it was interrupted. Returns
    whether it trained (False: finished before)."""
    if run.checkpoint_after(out, run.epochs).exists():
        return False
    folder = run.folder(out)
    command = [
        sys.executable, "-m", "rotaux.cli", "fit",
        "--config", run.config,
        "--seed_everything", str(run.seed),
        *run.arm.options,
        "--trainer.max_epochs", str(run.epochs),
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(folder.parent.parent),
        "--trainer.logger.init_args.name", folder.parent.name,
        "--trainer.logger.init_args.version", folder.name,
        "--checkpoint.monitor", "null",
        "--checkpoint.save_top_k", "-1",
        "--checkpoint.every_n_epochs", str(checkpoint_every),
        "--checkpoint.filename", "epoch{epoch:04d}",
        *extra,
    ]  # fmt: skip
    last = folder / "checkpoints" / "last.ckpt"
    if last.exists():
        command += ["--ckpt_path", str(last)]
        print(f"  resuming from {last}", flush=True)
    print(f"  {shlex.join(command)}", flush=True)
    subprocess.run(command, check=True)
    return True


def clock_at(run: Run, out: Path, epoch: int) -> tuple[int, float]:
    """Images seen and training seconds logged at the end of ``epoch`` (1-based)."""
    for line in (run.folder(out) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("epoch") == epoch - 1 and "time/train_seconds" in row:
            return int(row["time/images_seen"]), row["time/train_seconds"]
    raise RuntimeError(f"No TrainingClock row for epoch {epoch} of {run.label()}.")


def data_source(record: dict) -> DataSource:
    """The data source that a run's config.yaml records as ``{class_path, init_args}``."""
    module, _, name = record["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**record.get("init_args", {}))


@functools.lru_cache(maxsize=1)
def evaluation_data(run: Run, out: Path) -> SSLDataModule:
    """The run's data module as its config.yaml records it (kept for the run's next budget
    point). Set up without a model, it makes no rotation input."""
    options = yaml.safe_load((run.folder(out) / "config.yaml").read_text())["data"]
    for key in ("dataset", "eval_dataset"):
        if isinstance(options.get(key), dict):
            options[key] = data_source(options[key])
    if options.get("augmentations"):
        options["augmentations"] = [ViewAugmentation(**view) for view in options["augmentations"]]
    data = SSLDataModule(**options)
    data.setup("fit")
    return data


def evaluate(run: Run, epoch: int, out: Path, args: argparse.Namespace) -> Point:
    """kNN and linear top-1 of the run's backbone after ``epoch``; cached as JSON in the run
    folder."""
    cache = run.folder(out) / f"eval_epoch{epoch:04d}.json"
    if not cache.exists():
        data = evaluation_data(run, out)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        pretrained = read_checkpoint_backbone(run.checkpoint_after(out, epoch))
        backbone = pretrained.build().to(device).eval()

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
        images_seen, train_seconds = clock_at(run, out, epoch)
        point = Point(
            run.method, run.arm.name, run.seed, epoch, run.epochs, images_seen, train_seconds,
            knn_top1, linear["top1"],
        )  # fmt: skip
        cache.write_text(json.dumps(asdict(point)))
    return Point(**json.loads(cache.read_text()))


# ---------------------------------------------------------------- planning and the report


def plan(args: argparse.Namespace) -> tuple[list[Run], dict[Run, list[int]]]:
    """The runs to train and, per run, the epochs at which it is evaluated."""
    budgets = sorted(set(args.budgets))
    runs: list[Run] = []
    evaluated: dict[Run, list[int]] = {}
    for method, config in args.methods.items():
        for seed in args.seeds:
            for arm in args.arms:
                lengths = [max(budgets)] if args.budget_mode == "schedule" else budgets
                for epochs in lengths:
                    run = Run(method, config, arm, seed, epochs)
                    runs.append(run)
                    evaluated[run] = budgets if args.budget_mode == "schedule" else [epochs]
    return runs, evaluated


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = f"{names[0]} x {len(names)}" if names else cpu
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu}; {device}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def report_text(points: Sequence[Point], args: argparse.Namespace, argv: Sequence[str]) -> str:
    arms = [arm.name for arm in args.arms]
    others = [arm for arm in arms if arm != args.reference]
    mode = MODE_LABELS[args.budget_mode].format(longest=max(args.budgets))
    lines = [
        "# Efficiency report: arms against " + args.reference,
        "",
        f"Command: `python benchmarks/efficiency.py {shlex.join(argv)}`",
        "",
        f"Machine: {machine()}",
        "",
        f"Budget points ({args.budget_mode} mode): {mode}. Seeds: "
        f"{', '.join(map(str, args.seeds))}; values are mean ± sample std over seeds. Arms: "
        + "; ".join(
            f"{arm.name} = `{shlex.join(arm.options) or '(config as is)'}`" for arm in args.arms
        )
        + ".",
        "",
        "Accuracies: offline on the data module's validation split, backbone in eval mode; kNN "
        f"k={args.knn_k}/T={args.knn_temperature} on all training features, linear on "
        f"precomputed features ({args.linear_epochs} epochs). Training minutes exclude "
        "validation and evaluation. Lead at equal time: the arm's accuracy interpolated "
        "linearly in training minutes at the reference's point, minus the reference's "
        "(percentage points; n/a outside the arm's measured time range). Time to reach: the "
        "arm's training time, interpolated linearly between its points, at which it first "
        "reaches the reference's final accuracy, as a fraction of the reference's final "
        "training time (≤: reached at its first point already).",
        "",
        "## Summary",
        "",
        "| method | arm | metric | final accuracy (%) | " + args.reference + " final (%) "
        "| lead at "
        + args.reference
        + "'s final time (pp) | time to reach "
        + args.reference
        + "'s final accuracy (fraction of its time) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for method in args.methods:
        mine = [p for p in points if p.method == method]
        last = max(args.budgets)
        for arm in others:
            for metric in METRICS:
                comparison = compare(points, method, arm, args.reference, metric)

                lead = comparison.leads[-1].format(100) if comparison.leads else "n/a"
                lines.append(
                    f"| {method} | {arm} | {METRIC_NAMES[metric]} "
                    f"| {final_accuracy(mine, arm, last, metric)} "
                    f"| {final_accuracy(mine, args.reference, last, metric)} "
                    f"| {lead} | {describe_reach(comparison)} |"
                )
    for method in args.methods:
        lines += ["", f"## {method}", "", "### Accuracy at each budget point", ""]
        lines += budget_table(points, method, arms)
        lines += [
            "",
            f"### Lead at equal training time over {args.reference}",
            "",
            "| arm | metric | at | lead (pp) |",
            "|---|---|---|---:|",
        ]
        for arm in others:
            for metric in METRICS:
                lines += comparison_rows(
                    compare(points, method, arm, args.reference, metric), args.reference
                )
    return "\n".join(lines) + "\n"


def plot(points: Sequence[Point], args: argparse.Namespace, path: Path) -> None:
    """Per method (rows): linear top-1 against epochs and against training minutes, kNN top-1
    against minutes; lines are means over seeds, bands mean ± std."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    methods = list(args.methods)
    figure, axes = plt.subplots(len(methods), 3, figsize=(14, 3.6 * len(methods)), squeeze=False)
    panels = (("epoch", "linear_top1"), ("minutes", "linear_top1"), ("minutes", "knn_top1"))
    for row, method in zip(axes, methods, strict=True):
        for axis, (x_name, metric) in zip(row, panels, strict=True):
            for arm in (arm.name for arm in args.arms):
                mine = [p for p in points if p.method == method and p.arm == arm]
                epochs = sorted({p.epoch for p in mine})
                if not epochs:
                    continue
                xs, means, stds = [], [], []
                for epoch in epochs:
                    at = [p for p in mine if p.epoch == epoch]
                    xs.append(summarise([getattr(p, x_name) for p in at]).mean)
                    accuracy = summarise([100 * getattr(p, metric) for p in at])
                    means.append(accuracy.mean)
                    stds.append(accuracy.std)
                (line,) = axis.plot(xs, means, "-o", label=arm)
                lower = [m - s for m, s in zip(means, stds, strict=True)]
                upper = [m + s for m, s in zip(means, stds, strict=True)]
                axis.fill_between(xs, lower, upper, color=line.get_color(), alpha=0.2)
            axis.set(
                xlabel="epochs" if x_name == "epoch" else "training minutes (mean over seeds)",
                ylabel=f"{METRIC_NAMES[metric]} (%)",
                title=f"{method}: {METRIC_NAMES[metric]}",
            )
            axis.grid(alpha=0.3)
        row[0].legend(fontsize="small")
    mode = MODE_LABELS[args.budget_mode].format(longest=max(args.budgets))
    figure.suptitle(f"mean ± std over seeds {args.seeds}; budget points: {mode}", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------- command line


def parse_named(values: Sequence[str], what: str) -> dict[str, str]:
    """``NAME=VALUE`` strings as a dict, in order."""
    named = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"efficiency.py: {what} must be NAME=VALUE, got {value!r}")
        named[name] = rest
    return named


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after `--` go to every `rotaux fit` run unchanged.",
    )
    parser.add_argument(
        "--spec",
        type=Path,
        help="YAML file giving defaults for the options below (keys methods, seeds, arms, "
        "budgets, budget_mode, reference, options, ...); the command line overrides them",
    )
    parser.add_argument("--out", type=Path, help="output folder (resumable)")
    parser.add_argument(
        "--methods", nargs="+", metavar="NAME=CONFIG", help="methods as name=rotaux fit config"
    )
    parser.add_argument(
        "--config", help="a single method's config (the method is named after the file)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="seed_everything values (default 0)")
    parser.add_argument(
        "--arms",
        nargs="+",
        metavar="NAME=OPTIONS",
        help='arms as name="extra rotaux fit options" (default: baseline="--model.'
        'rotation_weight 0" rotation="")',
    )
    parser.add_argument("--reference", help="the arm the others are compared with (baseline)")
    parser.add_argument(
        "--budgets", "--eval-epochs", type=int, nargs="+", help="budget points in epochs (1 2 4 8)"
    )
    parser.add_argument(
        "--budget-mode",
        choices=["schedule", "separate"],
        help="schedule: checkpoints of one run of max(budgets) epochs; separate: one complete run "
        "per budget (default schedule)",
    )
    parser.add_argument("--linear-epochs", type=int, help="linear evaluation epochs (30)")
    parser.add_argument("--knn-k", type=int, help="kNN neighbours (200)")
    parser.add_argument("--knn-temperature", type=float, help="kNN temperature (0.1)")
    parser.add_argument("--eval-batch-size", type=int, help="feature extraction batch (512)")
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    spec = yaml.safe_load(args.spec.read_text()) if args.spec else {}
    defaults = {
        "seeds": [0],
        "reference": "baseline",
        "budgets": [1, 2, 4, 8],
        "budget_mode": "schedule",
        "linear_epochs": 30,
        "knn_k": 200,
        "knn_temperature": 0.1,
        "eval_batch_size": 512,
        "out": None,
    }
    for key, default in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, spec.get(key, default))
    if args.out is None:
        parser.error("--out is required (here or in the spec)")
    args.out = Path(args.out)
    if args.methods is not None:
        args.methods = parse_named(args.methods, "--methods")
    elif args.config is not None:
        args.methods = {Path(args.config).stem: args.config}
    elif "methods" in spec:
        args.methods = dict(spec["methods"])
    else:
        parser.error("give the methods: --methods NAME=CONFIG ..., --config, or a --spec")
    arms = parse_named(args.arms, "--arms") if args.arms else spec.get("arms", DEFAULT_ARMS)
    args.arms = [Arm(name, tuple(shlex.split(options or ""))) for name, options in arms.items()]
    if args.reference not in arms:
        parser.error(f"--reference {args.reference} is not one of the arms {list(arms)}")
    if len(arms) < 2:
        parser.error("give at least two arms: the reference and one to compare with it")
    if min(args.budgets) < 1:
        parser.error("--budgets must be positive epochs")
    extra = [str(option) for option in spec.get("options", [])] + extra
    return args, extra


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs, evaluated = plan(args)
    checkpoint_every = math.gcd(*sorted(set(args.budgets)))
    started, trained_seconds, trained = time.perf_counter(), 0.0, 0
    for index, run in enumerate(runs, 1):
        print(f"[{index}/{len(runs)}] {run.label()}", flush=True)
        begin = time.perf_counter()
        every = checkpoint_every if args.budget_mode == "schedule" else run.epochs
        if train(run, args.out, extra, every):
            trained += 1
            trained_seconds += time.perf_counter() - begin
            remaining = len(runs) - index
            print(
                f"  trained in {(time.perf_counter() - begin) / 60:.1f} min; about "
                f"{remaining * trained_seconds / trained / 60:.0f} min of training left "
                f"({remaining} runs)",
                flush=True,
            )
        else:
            print("  trained already", flush=True)
    points = []
    evaluations = [(run, epoch) for run in runs for epoch in evaluated[run]]
    for index, (run, epoch) in enumerate(evaluations, 1):
        point = evaluate(run, epoch, args.out, args)
        points.append(point)
        print(
            f"[eval {index}/{len(evaluations)}] {run.label()} after {epoch} ep: linear "
            f"{100 * point.linear_top1:.2f}%, kNN {100 * point.knn_top1:.2f}%, "
            f"{point.minutes:.1f} training min",
            flush=True,
        )
    text = report_text(points, args, argv)
    (args.out / "report.md").write_text(text)
    comparisons = [
        {"method": method, **asdict(compare(points, method, arm.name, args.reference, metric))}
        for method in args.methods
        for arm in args.arms
        if arm.name != args.reference
        for metric in METRICS
    ]
    summary = {
        "budget_mode": args.budget_mode,
        "reference": args.reference,
        "points": [asdict(p) for p in points],
        "comparisons": comparisons,
    }
    (args.out / "report.json").write_text(json.dumps(summary, indent=1))
    plot(points, args, args.out / "report.png")
    print(text, flush=True)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
