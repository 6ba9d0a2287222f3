"""rotaux: self-supervised pretraining with a rotation-prediction auxiliary task."""

from rotaux.backbones import build_backbone
from rotaux.callbacks import OnlineLinearProbe
from rotaux.data import SSLDataModule
from rotaux.errors import RotauxError
from rotaux.methods import BYOL, RotationAuxMixin, SSLMethod
from rotaux.optim import OptimizerConfig

__version__ = "0.1.0"

__all__ = [
    "BYOL",
    "OnlineLinearProbe",
    "OptimizerConfig",
    "RotationAuxMixin",
    "RotauxError",
    "SSLDataModule",
    "SSLMethod",
    "build_backbone",
]
