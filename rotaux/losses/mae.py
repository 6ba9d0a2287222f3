"""MAE's reconstruction loss (He et al., "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022, Sec. 3 "Reconstruction target")."""

from __future__ import annotations

import torch

from rotaux.errors import RotauxError


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` images as ``(B, N, patch_size**2 * C)`` patches: patches in raster order
    (row by row, as a ViT's patch embedding orders its tokens), each patch's pixels row by row
    with the channels of a pixel together."""
    batch, channels, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise RotauxError(
            f"{height}x{width} images do not split into {patch_size}-px patches; use crop sizes "
            f"that are multiples of {patch_size}."
        )
    rows, cols = height // patch_size, width // patch_size
    patches = images.reshape(batch, channels, rows, patch_size, cols, patch_size)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(
        batch, rows * cols, patch_size * patch_size * channels
    )


def mae_loss(
    images: torch.Tensor,
    predictions: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    norm_pix_loss: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Mean squared error between the decoder's ``predictions`` ``(B, N, patch_size**2 * C)``
    and the pixels of the patches of ``images`` (:func:`patchify` order), averaged over the
    pixels of each patch and then over the masked patches only (``mask`` ``(B, N)``, 1 = masked,
    removed from the encoder's input).

    With ``norm_pix_loss`` each target patch is standardised by the mean and the unbiased
    variance of its own pixels (``(x - mean) / sqrt(var + eps)``, ``eps=1e-6``), the paper's
    better-performing target (Table 1d) and its code's ``norm_pix_loss``. Every image masks the
    same number of patches, so the mean over the batch's masked patches is the mean of the
    per-image means, and under DDP the mean of the rank losses is the global-batch loss.
    Computed in float32 with autocast off.
    """
    with torch.autocast(images.device.type, enabled=False):
        target = patchify(images.float(), patch_size)
        if norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            variance = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (variance + eps).sqrt()
        per_patch = (predictions.float() - target).pow(2).mean(dim=-1)
        mask = mask.float()
        return (per_patch * mask).sum() / mask.sum()
