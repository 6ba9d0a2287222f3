"""Optional ``torch.compile`` of the backbones, the bulk of every method's compute."""

from __future__ import annotations

from typing import Literal

from lightning import Callback, LightningModule, Trainer
from torch import nn

from rotaux.errors import RotauxError

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


class CompileBackbones(Callback):
    """Compiles every backbone of the method with ``torch.compile`` before training starts: the
    online backbone and its copies (momentum targets, teachers), found as the modules of the
    backbone's class.

    Each backbone is compiled in place (``nn.Module.compile``), so parameter names, checkpoints
    and exported weights stay those of the plain module. ``dynamic=False`` compiles one graph per
    input shape: the two views, the batch of rotated copies, multi-crop sizes and validation
    batches each get their own specialised graph, which is faster than one graph with symbolic
    sizes. The first steps of a run pay the compilation (tens of seconds per graph on a CPU).
    The heads stay eager: they are a few matrix products. Whether compiling pays off depends on
    the machine; ``benchmarks/throughput.py --compile`` measures it.

    Args:
        enabled: compile the backbones (off by default).
        mode: ``torch.compile``'s mode.
        dynamic: compile with symbolic batch sizes instead of one graph per shape.
    """

    def __init__(
        self, enabled: bool = False, mode: CompileMode = "default", dynamic: bool = False
    ) -> None:
        self.enabled = enabled
        self.mode = mode
        self.dynamic = dynamic

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self.enabled:
            return
        backbone = getattr(pl_module, "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise RotauxError(
                f"--compile.enabled compiles the module's `backbone`, and "
                f"{type(pl_module).__name__} has none."
            )
        for module in pl_module.modules():
            if isinstance(module, type(backbone)):
                module.compile(mode=self.mode, dynamic=self.dynamic)
