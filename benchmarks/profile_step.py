"""Where a training step's time goes: phases of the step and the most expensive operators.

Builds the method from its CIFAR-10 recipe exactly as ``throughput.py`` does (synthetic 32x32
images, rotaux's training callbacks) and, after ``--warmup`` steps, times ``--steps`` steps:

- *phases*, from stamps at Lightning's hooks (``time.perf_counter`` on a CPU, CUDA events on a
  GPU): forward and losses (``on_train_batch_start`` -> ``on_before_backward``), backward
  (-> ``on_after_backward``), optimizer step and EMA update (``on_before_optimizer_step`` ->
  ``on_train_batch_end``) and the rest of the loop (callbacks after the batch, next batch's data
  and device-side augmentation: -> next ``on_train_batch_start``). The divergence guard's read
  of the step's verdict falls in "optimizer + EMA"; the short gap between ``on_after_backward``
  and ``on_before_optimizer_step`` is in no phase;
- *operators*, from ``torch.profiler`` over the same steps: the operators with the largest self
  time (CPU time on a CPU, GPU kernel time on a GPU).

Example (about two minutes on 2 CPU cores)::

    python benchmarks/profile_step.py --method byol --rotation on --steps 2 --warmup 1
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
from lightning import Callback, LightningModule, Trainer
from throughput import (
    METHODS,
    PRECISIONS,
    build,
    environment,
    make_trainer,
    training_callbacks,
)
from torch.optim import Optimizer
from torch.profiler import ProfilerActivity, profile

PHASES = ("forward + losses", "backward", "optimizer + EMA", "rest of the loop")


class PhaseTimer(Callback):
    """Stamps at the hooks that bound the phases of each step, and the profiler around the
    measured steps."""

    def __init__(self, device: torch.device, warmup: int, steps: int) -> None:
        self.device = device
        self.warmup = warmup
        self.steps = steps
        self.stamps: list[dict[str, object]] = []
        self.profiler = profile(
            activities=[ProfilerActivity.CPU]
            + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        )

    def _stamp(self, name: str) -> None:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.stamps[-1][name] = event
        else:
            self.stamps[-1][name] = time.perf_counter()

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        if batch_idx == self.warmup:
            self.profiler.start()
        self.stamps.append({})
        self._stamp("start")

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor
    ) -> None:
        self._stamp("backward")

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stamp("after_backward")

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer
    ) -> None:
        self._stamp("optimizer")

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        self._stamp("end")
        if batch_idx == self.warmup + self.steps - 1:
            self.profiler.stop()

    def phase_seconds(self) -> dict[str, float]:
        """Median seconds of each phase over the measured steps."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

        def span(first: object, second: object) -> float:
            if isinstance(first, float):
                return second - first
            return first.elapsed_time(second) / 1e3

        measured = range(self.warmup, self.warmup + self.steps)
        rows = {name: [] for name in PHASES}
        for index in measured:
            stamps = self.stamps[index]
            rows["forward + losses"].append(span(stamps["start"], stamps["backward"]))
            rows["backward"].append(span(stamps["backward"], stamps["after_backward"]))
            rows["optimizer + EMA"].append(span(stamps["optimizer"], stamps["end"]))
            if index + 1 < len(self.stamps):
                rows["rest of the loop"].append(
                    span(stamps["end"], self.stamps[index + 1]["start"])
                )
        return {name: statistics.median(values) for name, values in rows.items() if values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=METHODS, default="byol")
    parser.add_argument("--rotation", choices=("on", "off"), default="on")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the profiled ones")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16-mixed")
    parser.add_argument("--channels-last", choices=("on", "off"), default="on")
    parser.add_argument("--augment-on", choices=("loader", "device"), default="device")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--rows", type=int, default=15, help="operators to list")
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="as in throughput.py (Trainer(benchmark))"
    )
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    # one step past the profiled ones, so that the last of them has a "rest of the loop"
    total_steps = args.warmup + args.steps + 1
    model, data = build(args.method, args.rotation == "on", args, total_steps)
    timer = PhaseTimer(device, args.warmup, args.steps)
    trainer = make_trainer(args, device, total_steps, [timer, *training_callbacks("rotaux")])
    trainer.fit(model, datamodule=data)
    env = environment(device)
    phases = timer.phase_seconds()
    total = sum(phases.values())
    print(", ".join(f"{key}: {value}" for key, value in env.items()))
    print(
        f"\n# {args.method}, rotation {args.rotation}: ResNet-18 width {args.width}, batch "
        f"{args.batch_size}, {args.precision}, channels-last {args.channels_last}; medians "
        f"over {args.steps} steps\n"
    )
    print("| phase | ms | share |\n|---|--:|--:|")
    for name, seconds in phases.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / total:.0%} |")
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nOperators by {sort_by} over the {args.steps} profiled steps:\n")
    print(timer.profiler.key_averages().table(sort_by=sort_by, row_limit=args.rows))


if __name__ == "__main__":
    main()
