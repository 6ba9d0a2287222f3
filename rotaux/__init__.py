"""rotaux: self-supervised pretraining with a rotation-prediction auxiliary task."""

from rotaux.backbones import build_backbone
from rotaux.callbacks import KNNMonitor, OnlineLinearProbe, TrainingClock
from rotaux.data import SSLDataModule
from rotaux.errors import RotauxError
from rotaux.methods import (
    BYOL,
    DINO,
    NNCLR,
    BarlowTwins,
    MoCoV2Plus,
    RotationAuxMixin,
    SimCLR,
    SimSiam,
    SSLMethod,
    SwAV,
    VICReg,
)
from rotaux.optim import OptimizerConfig

__version__ = "0.1.0"

__all__ = [
    "BYOL",
    "DINO",
    "NNCLR",
    "BarlowTwins",
    "KNNMonitor",
    "MoCoV2Plus",
    "OnlineLinearProbe",
    "OptimizerConfig",
    "RotationAuxMixin",
    "RotauxError",
    "SSLDataModule",
    "SSLMethod",
    "SimCLR",
    "SimSiam",
    "SwAV",
    "TrainingClock",
    "VICReg",
    "build_backbone",
]
