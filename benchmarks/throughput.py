"""Training throughput of BYOL with and without rotation, against the bare backbone's limit.

For every precision x channels-last x rotation combination this script trains
``rotaux.BYOL`` (ResNet-18, CIFAR stem, 32x32 synthetic images) through the real Lightning loop,
``lightning.Trainer.fit`` with ``rotaux.SSLDataModule``, and reports images per second, next to
the throughput limit set by the bare backbone measured in the same process on the same device.

What is timed
    A small callback takes ``time.perf_counter`` stamps (after a CUDA synchronise) at
    ``on_train_batch_start`` and ``on_train_batch_end``. *Step* time is the span between them:
    forward, backward, optimizer step and EMA update of the target network. *End-to-end* time is
    the span from one ``on_train_batch_end`` to the next, so it adds everything else in the loop:
    loading and augmenting the batch, moving it to the device, normalising it, making the rotated
    copies (``SSLDataModule.on_after_batch_transfer`` runs before ``on_train_batch_start``) and
    stepping the learning-rate schedule. The gap between the two columns is the data cost. The
    first ``--warmup`` steps are discarded; the table shows medians over ``--steps`` steps. An
    image is one source image of the batch (``--batch-size`` per step), whatever number of
    views and rotated copies is made from it. Progress bar, logger, checkpointing, validation and
    the online linear probe are all off.

The limit
    The bare backbone (``rotaux.build_backbone`` with the same width, CIFAR stem, channels-last
    and autocast as the row) is timed on random images in training mode, where ``fwd+bwd`` is
    forward plus backward of ``features.sum()`` (no optimizer) and ``fwd`` is a forward under
    ``torch.no_grad``. BYOL runs the online backbone on each of its 2 views with gradient and
    the target backbone on each view without gradient, all on batches of ``B = --batch-size``.
    With rotation on, it also runs the ``c`` rotated copies of one extra crop of the same size
    (``--rotation-copies``, 4 by default: all four rotations) through the online backbone with
    gradient, as one batch of ``c * B`` images. So the limit is measured three ways: ``t_fb``
    (fwd+bwd at batch ``B``), ``t_f`` (fwd at batch ``B``) and ``t_rot`` (fwd+bwd at batch
    ``c * B``), each as the median time per image. Timing the rotation pass at its own batch
    matters because larger batches are often cheaper per image. One BYOL image then costs the
    backbone

        passes = 2 + 2 * t_f / t_fb + c * t_rot / t_fb

    forward+backward passes at batch ``B`` (``c = 0`` without rotation), and

        limit = (backbone fwd+bwd images/s at batch B) / passes
        ratio = (BYOL step images/s) / limit

    A ratio of 1 would mean BYOL costs nothing beyond its backbone passes. The limit leaves out
    the projector, predictor and rotation heads (MLPs with 4096/2048 hidden units), the
    optimizer step and the EMA update, so the ratio stays below 1 by their share. Small or
    width-reduced runs on a CPU are noisy (other processes, threads waiting on each other).
    Their ratios can land above 1, so read only full-size runs on a quiet machine.

Full-size run (ResNet-18 at width 64, batch 256; a few minutes on a GPU, hours on a small CPU)::

    python benchmarks/throughput.py --num-workers 8 --output benchmarks/throughput.md
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import lightning
import torch
from lightning import Callback, LightningModule, Trainer

import rotaux
from rotaux import BYOL, SSLDataModule, build_backbone

IMAGE_SIZE = 32
ONLINE_VIEWS = 2
TARGET_VIEWS = 2
ROTATION_WEIGHT = 0.4
PRECISIONS = ("32-true", "bf16-mixed")


@dataclass(frozen=True)
class Limit:
    """Bare-backbone images per second for one precision and memory format."""

    forward_backward: float
    forward: float
    rotation_forward_backward: float

    def passes(self, rotation_copies: int) -> float:
        """Backbone costs per BYOL image, in forward+backward passes at the training batch."""
        forward_cost = self.forward_backward / self.forward
        rotation_cost = self.forward_backward / self.rotation_forward_backward
        return ONLINE_VIEWS + TARGET_VIEWS * forward_cost + rotation_copies * rotation_cost


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    precision: str
    channels_last: bool
    rotation_copies: int
    step_images_per_s: float
    end_to_end_images_per_s: float
    backbone_fwd_bwd_images_per_s: float
    backbone_fwd_images_per_s: float
    backbone_rotation_fwd_bwd_images_per_s: float
    passes: float
    limit_images_per_s: float
    ratio: float


class StepTimer(Callback):
    """Per-step wall-clock stamps at the start and end of every training batch."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        self.starts.append(_now(self.device))

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        self.ends.append(_now(self.device))

    def medians(self, warmup: int) -> tuple[float, float]:
        """Median step time and median end-to-end time (end to end of consecutive batches)
        over the batches after the first ``warmup``."""
        steps = [end - start for start, end in zip(self.starts, self.ends, strict=True)]
        loops = [self.ends[i] - self.ends[i - 1] for i in range(warmup, len(self.ends))]
        return statistics.median(steps[warmup:]), statistics.median(loops)


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context Lightning's ``precision`` plugin puts around ``training_step``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def _median_seconds(
    steps: list[Callable[[], None]], device: torch.device, warmup: int, repeats: int
) -> list[float]:
    """Median time of each of ``steps``, run in turn so that a noisy machine slows all alike."""
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, step_times in zip(steps, times, strict=True):
            start = _now(device)
            step()
            step_times.append(_now(device) - start)
    return [statistics.median(step_times) for step_times in times]


def measure_limit(
    args: argparse.Namespace, device: torch.device, precision: str, channels_last: bool
) -> Limit:
    """Images per second of the bare backbone: forward+backward and forward-only at the training
    batch, and forward+backward at the batch of rotated copies."""
    net = build_backbone("resnet18", cifar_stem=True, width=args.width).to(device).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    images = torch.randn(args.batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
    rotation_batch = args.rotation_copies * args.batch_size
    rotated = torch.randn(rotation_batch, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)

    def forward_backward(inputs: torch.Tensor) -> None:
        with _autocast(device, precision):
            features = net(inputs)
        features.float().sum().backward()
        net.zero_grad(set_to_none=True)

    def forward() -> None:
        with torch.no_grad(), _autocast(device, precision):
            net(images)

    steps = [partial(forward_backward, images), forward, partial(forward_backward, rotated)]
    fwd_bwd, fwd, rotation_fwd_bwd = _median_seconds(steps, device, args.warmup, args.steps)
    return Limit(
        args.batch_size / fwd_bwd, args.batch_size / fwd, rotation_batch / rotation_fwd_bwd
    )


def measure_byol(
    args: argparse.Namespace,
    device: torch.device,
    precision: str,
    channels_last: bool,
    rotation: bool,
) -> tuple[float, float]:
    """Step and end-to-end images per second of ``Trainer.fit`` on ``rotaux.BYOL``."""
    lightning.seed_everything(0, verbose=False)
    total_steps = args.warmup + args.steps
    model = BYOL(
        backbone="resnet18",
        cifar_stem=True,
        backbone_width=args.width,
        channels_last=channels_last,
        rotation_weight=ROTATION_WEIGHT if rotation else 0.0,
    )
    data = SSLDataModule(
        dataset="synthetic",
        download=False,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        rotation_copies=args.rotation_copies,
        synthetic_size=total_steps * args.batch_size,
    )
    timer = StepTimer(device)
    trainer = Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        max_steps=total_steps,
        benchmark=args.cudnn_benchmark,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=data)
    if len(timer.ends) != total_steps:
        raise RuntimeError(f"Expected {total_steps} training steps, timed {len(timer.ends)}.")
    step, end_to_end = timer.medians(args.warmup)
    return args.batch_size / step, args.batch_size / end_to_end


def run(args: argparse.Namespace, device: torch.device) -> list[Row]:
    rows = []
    for precision in args.precision:
        for channels_last in (value == "on" for value in args.channels_last):
            limit = measure_limit(args, device, precision, channels_last)
            for rotation in (value == "on" for value in args.rotation):
                copies = args.rotation_copies if rotation else 0
                step, end_to_end = measure_byol(args, device, precision, channels_last, rotation)
                passes = limit.passes(copies)
                bound = limit.forward_backward / passes
                rows.append(
                    Row(
                        precision=precision,
                        channels_last=channels_last,
                        rotation_copies=copies,
                        step_images_per_s=step,
                        end_to_end_images_per_s=end_to_end,
                        backbone_fwd_bwd_images_per_s=limit.forward_backward,
                        backbone_fwd_images_per_s=limit.forward,
                        backbone_rotation_fwd_bwd_images_per_s=limit.rotation_forward_backward,
                        passes=passes,
                        limit_images_per_s=bound,
                        ratio=step / bound,
                    )
                )
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: torch.device) -> dict[str, str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    env = {
        "device": f"{device.type} ({name})",
        "cpu": cpu_model(),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "rotaux": rotaux.__version__,
    }
    if device.type == "cuda":
        env["cudnn.benchmark"] = str(torch.backends.cudnn.benchmark)
        env["cudnn.allow_tf32 (fp32 convolutions in TF32)"] = str(torch.backends.cudnn.allow_tf32)
        env["float32 matmul precision"] = torch.get_float32_matmul_precision()
    return env


def markdown(args: argparse.Namespace, env: dict[str, str], rows: list[Row]) -> str:
    lines = [
        f"# BYOL training throughput (ResNet-18 width {args.width}, CIFAR stem, "
        f"{IMAGE_SIZE}x{IMAGE_SIZE}, batch {args.batch_size})",
        "",
        *(f"- {key}: {value}" for key, value in env.items()),
        f"- data: synthetic, {args.num_workers} loader workers; medians over {args.steps} "
        f"steps after {args.warmup} warm-up steps",
        "",
        "Images/s count source images (batch size per step). *step*: Lightning "
        "`on_train_batch_start` -> `on_train_batch_end` (forward, backward, optimizer, EMA); "
        "*end-to-end*: `on_train_batch_end` -> next `on_train_batch_end` (adds data loading, "
        "transfer, normalisation, rotated copies). Backbone columns: the bare backbone at the "
        "training batch B, and fwd+bwd at the batch of c x B rotated copies. *passes* = 2 + 2 x "
        "(fwd+bwd / fwd img/s) + c x (fwd+bwd / rotation fwd+bwd img/s): the backbone's work "
        "per image (2 online views, 2 target forwards, c rotated copies, c = 0 without "
        "rotation) in fwd+bwd passes at batch B. *limit* = fwd+bwd img/s / passes; *ratio* = "
        "step img/s / limit. The limit ignores the MLP heads, optimizer and EMA.",
        "",
        "| precision | channels_last | rotation | step img/s | end-to-end img/s "
        "| backbone fwd+bwd img/s | backbone fwd img/s "
        f"| backbone fwd+bwd img/s at {args.rotation_copies}xB | passes | limit img/s | ratio |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        rotation = f"{row.rotation_copies} rotated" if row.rotation_copies else "off"
        lines.append(
            f"| {row.precision} | {'on' if row.channels_last else 'off'} | {rotation} "
            f"| {row.step_images_per_s:.1f} | {row.end_to_end_images_per_s:.1f} "
            f"| {row.backbone_fwd_bwd_images_per_s:.1f} | {row.backbone_fwd_images_per_s:.1f} "
            f"| {row.backbone_rotation_fwd_bwd_images_per_s:.1f} "
            f"| {row.passes:.2f} | {row.limit_images_per_s:.1f} | {row.ratio:.2f} |"
        )
    if any(row.backbone_fwd_images_per_s <= row.backbone_fwd_bwd_images_per_s for row in rows):
        lines += [
            "",
            "**Unreliable run:** the backbone's forward alone measured no faster than forward "
            "plus backward, so other work on the machine disturbed the timings.",
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="measured steps per row")
    parser.add_argument("--warmup", type=int, default=5, help="discarded steps per row (>= 1)")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64 = full)")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--channels-last", nargs="+", choices=("on", "off"), default=["on", "off"])
    parser.add_argument("--rotation", nargs="+", choices=("on", "off"), default=["off", "on"])
    parser.add_argument("--rotation-copies", type=int, choices=(1, 4), default=4)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader workers")
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's choice)"
    )
    parser.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="let cuDNN pick convolution algorithms (Trainer(benchmark=True)); off by default "
        "as in `rotaux fit`",
    )
    parser.add_argument(
        "--output", type=Path, help="also write the table here (JSON if the name ends in .json)"
    )
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1.")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1.")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    env = environment(device)
    print(", ".join(f"{key}: {value}" for key, value in env.items()), flush=True)
    started = time.perf_counter()
    rows = run(args, device)
    table = markdown(args, env, rows)
    print(table)
    print(f"Benchmark time: {time.perf_counter() - started:.0f} s")
    if args.output is not None:
        if args.output.suffix == ".json":
            payload = {"settings": vars(args) | {"output": str(args.output)}, "environment": env}
            payload["rows"] = [asdict(row) for row in rows]
            args.output.write_text(json.dumps(payload, indent=2) + "\n")
        else:
            args.output.write_text(table)


if __name__ == "__main__":
    main()
