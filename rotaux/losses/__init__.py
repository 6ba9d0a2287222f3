"""Losses as pure functions of embeddings; each cites the paper it implements."""

from rotaux.losses.byol import byol_loss, normalized_mse

__all__ = ["byol_loss", "normalized_mse"]
