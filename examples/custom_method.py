"""A user-side variant of BYOL: a deeper projector, everything else inherited.

Through the command line (the class is found on PYTHONPATH; all BYOL options still apply, the
backbone's and the rotation options included, since they are passed on to BYOL):

    PYTHONPATH=examples rotaux fit --config configs/smoke.yaml \
        --model custom_method.DeepProjectorBYOL --model.proj_num_layers 3

As a plain Python script with lightning.Trainer:

    python examples/custom_method.py
"""

from __future__ import annotations

from typing import Any

import lightning
from torch import nn

from rotaux import BYOL, OnlineLinearProbe, ResNet, SSLDataModule
from rotaux.data import Synthetic
from rotaux.heads import MLP


class DeepProjectorBYOL(BYOL):
    """BYOL whose projector has ``proj_num_layers`` layers (BYOL's has 2; SimSiam's has 3).

    Args:
        proj_num_layers: linear layers in the projector.
    """

    def __init__(self, proj_num_layers: int = 3, **base_options: Any) -> None:
        # BYOL.__init__ builds the projector (and its EMA target) through build_projector; every
        # other option (BYOL's, the rotation options, the backbone) goes on to it
        self.proj_num_layers = proj_num_layers
        super().__init__(**base_options)

    def build_projector(self, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
        return MLP(in_dim, hidden_dim, out_dim, num_layers=self.proj_num_layers)


def main() -> None:
    lightning.seed_everything(0)
    model = DeepProjectorBYOL(
        proj_num_layers=3,
        backbone=ResNet("resnet18", cifar_stem=True, width=16),
        proj_hidden_dim=512,
        proj_output_dim=128,
        pred_hidden_dim=512,
        rotation_hidden_dim=256,
    )
    data = SSLDataModule(Synthetic(size=2048), batch_size=64, num_workers=2)
    trainer = lightning.Trainer(
        max_epochs=1,
        precision="bf16-mixed",
        callbacks=[OnlineLinearProbe()],
        default_root_dir="runs/custom_method",
    )
    trainer.fit(model, datamodule=data)
    print({key: float(value) for key, value in trainer.callback_metrics.items()})


if __name__ == "__main__":
    main()
