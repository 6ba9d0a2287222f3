"""Losses as pure functions of embeddings; each cites the paper it implements."""

from rotaux.losses.barlow_twins import barlow_twins_loss
from rotaux.losses.byol import byol_loss, normalized_mse
from rotaux.losses.simclr import nt_xent_loss
from rotaux.losses.simsiam import negative_cosine, simsiam_loss
from rotaux.losses.vicreg import vicreg_loss

__all__ = [
    "barlow_twins_loss",
    "byol_loss",
    "negative_cosine",
    "normalized_mse",
    "nt_xent_loss",
    "simsiam_loss",
    "vicreg_loss",
]
