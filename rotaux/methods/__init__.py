"""Self-supervised methods, each a LightningModule with the rotation auxiliary mixed in."""

from rotaux.methods.base import SSLMethod
from rotaux.methods.byol import BYOL
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.rotation import RotationAuxMixin

__all__ = ["BYOL", "MomentumMethod", "RotationAuxMixin", "SSLMethod"]
