"""Self-supervised methods, each a LightningModule with the rotation auxiliary mixed in."""

from rotaux.methods.barlow_twins import BarlowTwins
from rotaux.methods.base import SSLMethod
from rotaux.methods.byol import BYOL
from rotaux.methods.dino import DINO
from rotaux.methods.mocov2plus import MoCoV2Plus
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.nnclr import NNCLR
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.methods.simclr import SimCLR
from rotaux.methods.simsiam import SimSiam
from rotaux.methods.swav import SwAV
from rotaux.methods.vicreg import VICReg

__all__ = [
    "BYOL",
    "BarlowTwins",
    "DINO",
    "MoCoV2Plus",
    "MomentumMethod",
    "NNCLR",
    "RotationAuxMixin",
    "SSLMethod",
    "SimCLR",
    "SimSiam",
    "SwAV",
    "VICReg",
]
