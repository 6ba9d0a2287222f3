"""Losses as pure functions of embeddings; each cites the paper it implements."""

from rotaux.losses.all4one import (
    centroid_contrast_loss,
    feature_contrast_loss,
    nearest_neighbour_sets,
    neighbour_slot_encoding,
)
from rotaux.losses.barlow_twins import barlow_twins_loss
from rotaux.losses.byol import byol_loss, normalized_mse
from rotaux.losses.deepclusterv2 import deepclusterv2_loss, spherical_kmeans
from rotaux.losses.dino import DINOLoss, teacher_temperature
from rotaux.losses.ibot import MaskedPatchLoss, masked_patch_distillation
from rotaux.losses.mae import mae_loss, patchify
from rotaux.losses.moco import moco_loss
from rotaux.losses.mocov3 import mocov3_loss
from rotaux.losses.nnbyol import nnbyol_loss
from rotaux.losses.nnclr import nearest_neighbours, nnclr_loss
from rotaux.losses.nnsiam import nnsiam_loss
from rotaux.losses.ressl import ressl_loss
from rotaux.losses.simclr import nt_xent_loss
from rotaux.losses.simsiam import negative_cosine, simsiam_loss
from rotaux.losses.supcon import supcon_loss
from rotaux.losses.swav import sinkhorn, swav_loss
from rotaux.losses.vibcreg import vibcreg_loss
from rotaux.losses.vicreg import vicreg_loss
from rotaux.losses.wmse import cholesky_whiten, wmse_loss

__all__ = [
    "DINOLoss",
    "MaskedPatchLoss",
    "barlow_twins_loss",
    "byol_loss",
    "centroid_contrast_loss",
    "cholesky_whiten",
    "deepclusterv2_loss",
    "feature_contrast_loss",
    "mae_loss",
    "masked_patch_distillation",
    "moco_loss",
    "mocov3_loss",
    "nearest_neighbour_sets",
    "nearest_neighbours",
    "negative_cosine",
    "neighbour_slot_encoding",
    "nnbyol_loss",
    "nnclr_loss",
    "nnsiam_loss",
    "normalized_mse",
    "nt_xent_loss",
    "patchify",
    "ressl_loss",
    "simsiam_loss",
    "sinkhorn",
    "spherical_kmeans",
    "supcon_loss",
    "swav_loss",
    "teacher_temperature",
    "vibcreg_loss",
    "vicreg_loss",
    "wmse_loss",
]
