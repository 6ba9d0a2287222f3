"""Losses as pure functions of embeddings; each cites the paper it implements."""

from rotaux.losses.barlow_twins import barlow_twins_loss
from rotaux.losses.byol import byol_loss, normalized_mse
from rotaux.losses.dino import DINOLoss, teacher_temperature
from rotaux.losses.moco import moco_loss
from rotaux.losses.nnclr import nearest_neighbours, nnclr_loss
from rotaux.losses.simclr import nt_xent_loss
from rotaux.losses.simsiam import negative_cosine, simsiam_loss
from rotaux.losses.swav import sinkhorn, swav_loss
from rotaux.losses.vicreg import vicreg_loss

__all__ = [
    "DINOLoss",
    "barlow_twins_loss",
    "byol_loss",
    "moco_loss",
    "nearest_neighbours",
    "negative_cosine",
    "nnclr_loss",
    "normalized_mse",
    "nt_xent_loss",
    "simsiam_loss",
    "sinkhorn",
    "swav_loss",
    "teacher_temperature",
    "vicreg_loss",
]
