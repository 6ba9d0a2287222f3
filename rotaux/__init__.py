"""rotaux: self-supervised pretraining with a rotation-prediction auxiliary task.

Every registered method is a top-level name (``rotaux.BYOL``, ``rotaux.SwAV``, ...); see
``rotaux.methods.METHODS``.
"""

from rotaux import methods
from rotaux.backbones import Backbone, ConvNeXt, ResNet, Swin, TimmModel, ViT, WideResNet
from rotaux.callbacks import KNNMonitor, OnlineLinearProbe, TrainingClock
from rotaux.data import SSLDataModule
from rotaux.errors import RotauxError
from rotaux.methods import METHODS, RotationAuxMixin, SSLMethod
from rotaux.optim import OptimizerConfig

__version__ = "0.2.0"


def __getattr__(name: str) -> type[SSLMethod]:
    try:
        return methods.method_class(name)
    except KeyError:
        raise AttributeError(f"module 'rotaux' has no attribute {name!r}") from None


__all__ = [
    "METHODS",
    "Backbone",
    "ConvNeXt",
    "KNNMonitor",
    "OnlineLinearProbe",
    "OptimizerConfig",
    "ResNet",
    "RotationAuxMixin",
    "RotauxError",
    "SSLDataModule",
    "SSLMethod",
    "Swin",
    "TimmModel",
    "TrainingClock",
    "ViT",
    "WideResNet",
    *methods.method_names(),
]
