"""Training throughput of every method, with and without rotation, against the backbone's limit.

Each row trains one method from its CIFAR-10 recipe (``configs/cifar10/<method>.yaml``: heads,
crops, optimizer, rotation copies as shipped) through the real Lightning loop, on 32x32 synthetic
images, and reports images per second next to the limit set by the bare backbone, measured in
the same process on the same device. Only the backbone (``--backbone``: the recipes' ResNet-18 at
``--width``, or a WideResNet, ViT, Swin or ConvNeXt for 32 px), batch size, precision, memory
format and data source are set by the script; ``--model.rotation_weight 0`` makes the baseline
row. By default rotaux's training callbacks run as ``rotaux fit`` runs them (online linear probe,
divergence guard, training clock); progress bar, logger, checkpoints and validation are off.

What is timed
    Stamps at ``on_train_batch_start`` and ``on_train_batch_end``: ``time.perf_counter`` on a
    CPU, CUDA events on a GPU (so the timer itself never makes the host wait for the GPU).
    *Step* is the span between the two: forward, backward, the divergence guard's checks,
    optimizer step and EMA update. The timer's ``on_train_batch_end`` runs before those of the
    other callbacks, so the online probe's update after each batch falls outside *step*.
    *End-to-end* is the span between consecutive ``on_train_batch_end`` stamps, so it adds the
    probe's update, loading, moving, normalising and augmenting the batch
    (``SSLDataModule.on_after_batch_transfer``) and the schedule. The first ``--warmup``
    steps are discarded; the table shows medians over ``--steps`` steps. An image is one source
    image of the batch, whatever number of views, crops and rotated copies is made from it.

The limit
    During the last warm-up step, hooks record every call of a backbone (the online one, and
    momentum targets or teachers): its input shape and whether it ran with gradient. Each
    distinct call is then timed on a bare backbone of the same architecture (train mode, same
    memory format and autocast): forward plus backward of ``features.sum()`` for calls with
    gradient, a forward under ``torch.no_grad`` for the others. The limit is the batch size
    divided by the summed time of the recorded calls: the throughput the method would reach if it
    cost nothing but its backbone passes. *passes* expresses that work in units of one
    forward+backward pass over a batch of 32x32 images, and ``ratio = step img/s / limit``. The
    limit leaves out the heads, losses, optimizer, EMA and callbacks, so the ratio says what
    share of the step is backbone work. With ``--compile`` the backbones of the method are
    compiled (``CompileBackbones``) and the limit stays the eager backbone's, so the ratio then
    also shows the gain from compiling.

    Only the first epoch is measured: methods whose recipes switch parts on later run without
    them (SwAV's queue from epoch 50 and its prototypes, frozen for 2 epochs; DINO's last layer,
    frozen for its first epoch).

Host syncs
    On a GPU, the measured steps run under ``torch.cuda.set_sync_debug_mode("warn")`` (from the
    first measured step's start to the last one's end, data loading between steps included) and
    the table gives the calls that made the host wait for the GPU per step, with their source
    lines.

Full CPU run (bf16-mixed, channels-last, ResNet-18 at width 64, batch 256; about 25 minutes on
2 cores)::

    python benchmarks/throughput.py --steps 4 --warmup 2 \\
        --output benchmarks/results/throughput_cpu.md

The same command runs on a CUDA machine (the device is picked automatically), there with
``--num-workers 8`` and more steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import lightning
import torch
from lightning import Callback, LightningModule, Trainer
from torch import nn

import rotaux
from rotaux import SSLDataModule, SSLMethod
from rotaux.backbones import Backbone, ConvNeXt, ResNet, Swin, ViT, WideResNet
from rotaux.callbacks import CompileBackbones, DivergenceGuard, OnlineLinearProbe, TrainingClock
from rotaux.cli import RotauxArgumentParser, RotauxCLI
from rotaux.errors import RotauxError
from rotaux.methods import METHODS as REGISTERED_METHODS

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "cifar10"
METHODS = tuple(REGISTERED_METHODS)
"""The registered methods by short name; ``configs/cifar10/<name>.yaml`` is each one's recipe."""

BACKBONES = (
    "resnet18",
    "wide_resnet28_2",
    "wide_resnet28_8",
    "vit_tiny",
    "vit_small",
    "swin",
    "convnext",
)
"""The backbones a run can replace the recipes' with, for 32x32 images (``--backbone``)."""


def backbone(name: str, width: int) -> Backbone:
    """The 32 px description of ``--backbone name`` (``width`` applies to the ResNet)."""
    return {
        "resnet18": ResNet("resnet18", cifar_stem=True, width=width),
        "wide_resnet28_2": WideResNet(28, 2),
        "wide_resnet28_8": WideResNet(28, 8),
        "vit_tiny": ViT("tiny", patch_size=4, image_size=IMAGE_SIZE),
        "vit_small": ViT("small", patch_size=4, image_size=IMAGE_SIZE),
        "swin": Swin(image_size=IMAGE_SIZE, window_size=2),
        "convnext": ConvNeXt(),
    }[name]


def runs_on(method: str, name: str) -> bool:
    """Whether ``method`` trains on ``--backbone name`` (masked-image methods need a ViT)."""
    return REGISTERED_METHODS[method].backbones == "any" or name.startswith("vit")


PRECISIONS = ("32-true", "bf16-mixed")
IMAGE_SIZE = 32
SYNC_WARNING = "synchronizing CUDA operation"


@dataclass(frozen=True, order=True)
class BackboneCall:
    """One call of a backbone in a training step: its input shape and whether it had gradient."""

    shape: tuple[int, ...]
    grad: bool

    def describe(self) -> str:
        batch, _, height, _ = self.shape
        return f"{batch}@{height}px {'fwd+bwd' if self.grad else 'fwd'}"


@dataclass
class Row:
    """One line of the result table."""

    method: str
    rotation: bool
    step_images_per_s: float
    end_to_end_images_per_s: float
    backbone_calls: str
    backbone_fwd_bwd_images_per_s: float
    passes: float
    limit_images_per_s: float | None
    ratio: float | None
    syncs_per_step: float | None = None
    sync_sites: dict[str, int] = field(default_factory=dict)


# MAE and iBOT run their encoder on token sequences (visible patches, masked tokens) through the
# ViT's blocks rather than its forward, so the recorded backbone calls miss that work and a limit
# built from them would be meaningless: their rows show no limit or ratio.
ENCODER_OUTSIDE_BACKBONE_CALLS = frozenset({"mae", "ibot"})


class BackboneCallRecorder(Callback):
    """Records the backbone calls made during training batch ``batch_index``.

    The hooks stay in place for the whole run and are hidden from ``torch.compile``
    (``torch.compiler.disable``), so a compiled backbone is not recompiled when recording starts
    and stops; the compiler breaks its graph at the hook, before the backbone's forward.
    """

    def __init__(self, batch_index: int) -> None:
        self.batch_index = batch_index
        self.calls: list[BackboneCall] = []
        self._recording = False
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        record = torch.compiler.disable(self._record)
        for module in pl_module.modules():
            if isinstance(module, type(pl_module.backbone)):
                self._hooks.append(module.register_forward_pre_hook(record))

    def _record(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if self._recording:
            self.calls.append(BackboneCall(tuple(inputs[0].shape), torch.is_grad_enabled()))

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        self._recording = batch_idx == self.batch_index

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        self._recording = False

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


class StepTimer(Callback):
    """Stamps at the start and end of every training batch, without making the host wait."""

    def __init__(self, device: torch.device, warmup: int) -> None:
        self.device = device
        self.warmup = warmup
        self.starts: list[Callable[[], float]] = []
        self.ends: list[Callable[[], float]] = []

    def _stamp(self) -> Callable[[], float]:
        """A stamp in milliseconds, read later: CUDA events are only read after the run."""
        if self.device.type != "cuda":
            now = time.perf_counter() * 1e3
            return lambda: now
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        first = self._first_event
        return lambda: first.elapsed_time(event)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.device.type == "cuda":
            self._first_event = torch.cuda.Event(enable_timing=True)
            self._first_event.record()

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        self.starts.append(self._stamp())

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        self.ends.append(self._stamp())

    def medians(self) -> tuple[float, float]:
        """Median step and end-to-end seconds over the batches after the warm-up."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        starts = [stamp() / 1e3 for stamp in self.starts]
        ends = [stamp() / 1e3 for stamp in self.ends]
        # no CUDA event may outlive the row: a data loader worker forked for the next row would
        # inherit it and fail when it frees it
        self.starts.clear()
        self.ends.clear()
        self._first_event = None
        steps = [end - start for start, end in zip(starts, ends, strict=True)]
        loops = [ends[i] - ends[i - 1] for i in range(self.warmup, len(ends))]
        return statistics.median(steps[self.warmup :]), statistics.median(loops)


class SyncCounter(Callback):
    """Records the warnings of CUDA's sync debug mode (one or more per call that makes the host
    wait for the GPU) from the start of batch ``first`` to the end of batch ``last``."""

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last
        self.log: list[warnings.WarningMessage] = []
        self._catcher: warnings.catch_warnings | None = None

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        if batch_idx == self.first:
            self._catcher = warnings.catch_warnings(record=True)
            self.log = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        if batch_idx == self.last and self._catcher is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._catcher.__exit__(None, None, None)
            self._catcher = None

    def sites(self) -> Counter[str]:
        return Counter(
            f"{Path(record.filename).name}:{record.lineno}"
            for record in self.log
            if SYNC_WARNING in str(record.message)
        )


def warnings_per_sync(device: torch.device) -> int:
    """How many sync-debug warnings one ``.item()`` on the GPU raises."""
    value = torch.ones(1, device=device)
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        value.item()
        torch.cuda.set_sync_debug_mode("default")
    return max(1, sum(SYNC_WARNING in str(record.message) for record in log))


def _autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context Lightning's ``precision`` plugin puts around ``training_step``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


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


class BackboneLimit:
    """Seconds per call of a bare backbone, measured once per distinct call and cached."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args = args
        self.device = device
        self.seconds: dict[BackboneCall, float] = {}
        self.net = backbone(args.backbone, args.width).build()
        self.net = self.net.to(device).train()
        if args.channels_last == "on":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.reference = BackboneCall((args.batch_size, 3, IMAGE_SIZE, IMAGE_SIZE), grad=True)

    def _run(self, call: BackboneCall, images: torch.Tensor) -> None:
        if not call.grad:
            with torch.no_grad(), _autocast(self.device, self.args.precision):
                self.net(images)
            return
        with _autocast(self.device, self.args.precision):
            features = self.net(images)
        features.float().sum().backward()
        self.net.zero_grad(set_to_none=True)

    def measure(self, calls: list[BackboneCall]) -> None:
        new = sorted({*calls, self.reference} - set(self.seconds))
        if not new:
            return
        memory_format = torch.channels_last if self.args.channels_last == "on" else None
        steps = []
        for call in new:
            images = torch.randn(call.shape, device=self.device)
            if memory_format is not None:
                images = images.contiguous(memory_format=memory_format)
            steps.append(partial(self._run, call, images))
        seconds = _median_seconds(steps, self.device, self.args.warmup, self.args.steps)
        self.seconds.update(zip(new, seconds, strict=True))

    def step_seconds(self, calls: list[BackboneCall]) -> float:
        return sum(self.seconds[call] for call in calls)


def build(
    method: str, rotation: bool, args: argparse.Namespace, total_steps: int
) -> tuple[SSLMethod, SSLDataModule]:
    """The method and data of ``configs/cifar10/<method>.yaml``, as ``rotaux fit`` builds them,
    on synthetic images at the benchmark's size: one epoch of ``total_steps`` batches."""
    options = {
        "trainer.logger": "false",
        "trainer.accelerator": "cpu",
        "model.backbone": json.dumps(backbone(args.backbone, args.width).record()),
        "model.channels_last": args.channels_last == "on",
        "data.dataset": "Synthetic",
        "data.dataset.size": total_steps * args.batch_size,
        "data.batch_size": args.batch_size,
        "data.num_workers": args.num_workers,
        "data.augment_on": args.augment_on,
    }
    if not rotation:
        options["model.rotation_weight"] = 0
    argv = ["--config", str(CONFIGS / f"{method}.yaml")]
    for key, value in options.items():
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    cli = RotauxCLI(
        SSLMethod,
        SSLDataModule,
        subclass_mode_model=True,
        auto_configure_optimizers=False,
        parser_class=RotauxArgumentParser,
        run=False,
        args=argv,
    )
    return cli.model, cli.datamodule


def training_callbacks(kind: str) -> list[Callback]:
    """rotaux's training callbacks as ``rotaux fit`` runs them (``rotaux``), without the
    divergence guard (``no-guard``) or none."""
    callbacks: list[Callback] = []
    if kind != "none":
        callbacks += [OnlineLinearProbe(), TrainingClock()]
    if kind == "rotaux":
        callbacks.append(DivergenceGuard())
    return callbacks


def make_trainer(
    args: argparse.Namespace, device: torch.device, total_steps: int, callbacks: list[Callback]
) -> Trainer:
    """A one-device Trainer for ``total_steps`` training steps and nothing else: no validation,
    logger, checkpoints or progress bar."""
    return Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        max_epochs=1,
        max_steps=total_steps,
        benchmark=args.cudnn_benchmark,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )


def measure(
    method: str,
    rotation: bool,
    args: argparse.Namespace,
    device: torch.device,
    limit: BackboneLimit,
) -> Row:
    total_steps = args.warmup + args.steps
    model, data = build(method, rotation, args, total_steps)
    recorder = BackboneCallRecorder(batch_index=args.warmup - 1)
    timer = StepTimer(device, args.warmup)
    callbacks: list[Callback] = [recorder, timer, *training_callbacks(args.callbacks)]
    if args.compile:
        callbacks.append(CompileBackbones(enabled=True))
    counter = SyncCounter(args.warmup, total_steps - 1) if device.type == "cuda" else None
    if counter is not None:
        callbacks.append(counter)
    trainer = make_trainer(args, device, total_steps, callbacks)
    trainer.fit(model, datamodule=data)
    if len(timer.ends) != total_steps:
        raise RuntimeError(f"Expected {total_steps} steps, timed {len(timer.ends)}.")
    step, end_to_end = timer.medians()
    limit.measure(recorder.calls)
    reference = limit.seconds[limit.reference]
    backbone_seconds = limit.step_seconds(recorder.calls)
    limit_images_per_s = (
        None if method in ENCODER_OUTSIDE_BACKBONE_CALLS else args.batch_size / backbone_seconds
    )
    step_images_per_s = args.batch_size / step
    row = Row(
        method=method,
        rotation=rotation,
        step_images_per_s=step_images_per_s,
        end_to_end_images_per_s=args.batch_size / end_to_end,
        backbone_calls=", ".join(
            f"{count}x {call.describe()}" for call, count in sorted(Counter(recorder.calls).items())
        ),
        backbone_fwd_bwd_images_per_s=args.batch_size / reference,
        passes=backbone_seconds / reference,
        limit_images_per_s=limit_images_per_s,
        ratio=None if limit_images_per_s is None else step_images_per_s / limit_images_per_s,
    )
    if counter is not None:
        sites = counter.sites()
        row.syncs_per_step = sum(sites.values()) / args.steps / warnings_per_sync(device)
        row.sync_sites = dict(sites.most_common())
    return row


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
    return env


def optional(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(
    args: argparse.Namespace, env: dict[str, str], rows: list[Row], skipped: Sequence[str] = ()
) -> str:
    compiled = ", backbones compiled (torch.compile)" if args.compile else ""
    callbacks = {
        "rotaux": "rotaux's training callbacks (linear probe, divergence guard, clock)",
        "no-guard": "linear probe and clock (no divergence guard)",
        "none": "no callbacks",
    }[args.callbacks]
    lines = [
        f"# Training throughput: {backbone(args.backbone, args.width)}, {IMAGE_SIZE}x"
        f"{IMAGE_SIZE}, batch {args.batch_size}, {args.precision}, channels-last "
        f"{args.channels_last}{compiled}",
        "",
        *(f"- {key}: {value}" for key, value in env.items()),
        f"- recipes: configs/cifar10/<method>.yaml; synthetic data, augmentation on the "
        f"{args.augment_on}, {args.num_workers} loader workers; {callbacks}",
        f"- medians over {args.steps} steps after {args.warmup} warm-up steps",
        "",
        "Images/s count source images. *step*: `on_train_batch_start` -> `on_train_batch_end`; "
        "*end-to-end* adds the data path. *backbone calls*: the backbone calls of one step "
        "(count x batch@side, with or without gradient). *passes*: their time on the bare "
        f"backbone in units of one fwd+bwd pass at batch {args.batch_size} ({IMAGE_SIZE}px). "
        "*limit* = batch / that time; *ratio* = step img/s / limit (heads, losses, optimizer, "
        "EMA and callbacks are outside the limit). MAE and iBOT encode token sequences outside "
        "the backbone's forward, so they have no limit (n/a).",
        "",
    ]
    has_syncs = any(row.syncs_per_step is not None for row in rows)
    header = (
        "| method | rotation | step img/s | end-to-end img/s | backbone calls | passes "
        "| limit img/s | ratio |"
    )
    rule = "|---|---|--:|--:|---|--:|--:|--:|"
    if has_syncs:
        header += " host syncs/step |"
        rule += "--:|"
    lines += [header, rule]
    for row in rows:
        line = (
            f"| {row.method} | {'on' if row.rotation else 'off'} | {row.step_images_per_s:.1f} "
            f"| {row.end_to_end_images_per_s:.1f} | {row.backbone_calls} | {row.passes:.2f} "
            f"| {optional(row.limit_images_per_s, '.1f')} | {optional(row.ratio, '.2f')} |"
        )
        if has_syncs:
            line += f" {row.syncs_per_step:.1f} |"
        lines.append(line)
    if skipped:
        lines += ["", "Not run on this backbone:", "", *(f"- {reason}" for reason in skipped)]
    sites = Counter()
    for row in rows:
        sites.update(row.sync_sites)
    if sites:
        lines += [
            "",
            "Sync-debug warnings over all measured steps, by source line (host syncs/step "
            f"divides their count by the {warnings_per_sync(torch.device('cuda'))} warning(s) "
            "that one `.item()` raises):",
            "",
        ]
        lines += [f"- {site}: {count}" for site, count in sites.most_common()]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--rotation", nargs="+", choices=("on", "off"), default=["off", "on"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per row")
    parser.add_argument("--warmup", type=int, default=3, help="discarded steps per row (>= 1)")
    parser.add_argument(
        "--backbone",
        choices=BACKBONES,
        default="resnet18",
        help="the backbone of every row, in place of the recipes' ResNet-18 (32 px variants: "
        "ViTs with 4 px patches, Swin with 2-patch windows)",
    )
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64 = full)")
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16-mixed")
    parser.add_argument("--channels-last", choices=("on", "off"), default="on")
    parser.add_argument("--augment-on", choices=("loader", "device"), default="device")
    parser.add_argument(
        "--callbacks",
        choices=("rotaux", "no-guard", "none"),
        default="rotaux",
        help="rotaux: linear probe, divergence guard and clock, as `rotaux fit` runs them; "
        "no-guard: without the divergence guard; none: no callbacks",
    )
    parser.add_argument(
        "--compile", action="store_true", help="compile the backbones (CompileBackbones)"
    )
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader workers")
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's choice)"
    )
    parser.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="let cuDNN pick convolution algorithms (Trainer(benchmark=True))",
    )
    parser.add_argument(
        "--output", type=Path, help="also write the table here (JSON if the name ends in .json)"
    )
    args = parser.parse_args(argv)
    if args.methods == list(METHODS):
        args.methods = [method for method in METHODS if runs_on(method, args.backbone)]
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
    env = environment(device)
    print(", ".join(f"{key}: {value}" for key, value in env.items()), flush=True)
    started = time.perf_counter()
    limit = BackboneLimit(args, device)
    rows = []
    skipped = []
    for method in args.methods:
        for rotation in (value == "on" for value in args.rotation):
            try:
                rows.append(measure(method, rotation, args, device, limit))
            except RotauxError as error:
                # a recipe whose crops the backbone cannot take (multi-crop on Swin, ...)
                skipped.append(f"{method}: {error}")
                print(f"{method}: skipped, {error}", flush=True)
                break
            row = rows[-1]
            print(
                f"{method} rotation {'on' if rotation else 'off'}: step "
                f"{row.step_images_per_s:.1f} img/s, ratio {optional(row.ratio, '.2f')}",
                flush=True,
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    table = markdown(args, env, rows, skipped)
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
