"""Patch masks for the masked-image methods (MAE, iBOT), drawn on the training device from
torch's global generator, which rotaux's checkpoints save and restore, so a resumed run draws
the masks it would have drawn.

Every rank draws the masks of the whole global batch and keeps the rows of its own samples:
Lightning seeds every rank alike and the ranks draw alike, so a sample gets the mask that one
process holding the global batch gives it, and DDP training equals single-process training.
Drawing ``world_size`` times more random numbers costs nothing next to a forward pass.
"""

from __future__ import annotations

import math

import torch

from rotaux.distributed import own_rows, world_size

BLOCK_PROPOSALS = 32
"""Rectangles proposed per image by :func:`block_masks`; BEiT's loop proposes until the target
is reached or 10 proposals in a row fail, which 32 batched proposals approach closely."""


def shuffle_keep_indices(
    local_batch: int, num_tokens: int, num_kept: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking (He et al. 2022, Sec. 3 "Masking"): a uniformly random
    subset of ``num_kept`` of ``num_tokens`` patches per sample, drawn by sorting uniform noise.
    Returns this rank's ``(B, num_kept)`` kept indices (in increasing order) and ``(B,
    num_tokens)`` mask (True = removed)."""
    noise = own_rows(torch.rand(local_batch * world_size(), num_tokens, device=device), local_batch)
    kept = noise.argsort(dim=1)[:, :num_kept].sort(dim=1).values
    mask = torch.ones(local_batch, num_tokens, dtype=torch.bool, device=device)
    mask.scatter_(1, kept, False)
    return kept, mask


def masking_ratios(
    local_batch: int, ratio_range: tuple[float, float], probability: float, device: torch.device
) -> torch.Tensor:
    """iBOT's per-image prediction ratios for the global batch: with ``probability`` a ratio
    drawn uniformly from ``ratio_range``, otherwise 0 (the official ``--pred_ratio 0 0.3
    --pred_ratio_var 0 0.2`` picks 0 or U(0.1, 0.5) with equal chance)."""
    count = local_batch * world_size()
    low, high = ratio_range
    ratios = low + (high - low) * torch.rand(count, device=device)
    return torch.where(torch.rand(count, device=device) < probability, ratios, 0.0)


def random_masks(ratios: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(len(ratios), rows, cols)`` masks with ``int(ratio * rows * cols)`` patches masked at
    uniformly random positions (iBOT's ``pred_shape rand``)."""
    rows, cols = grid
    counts = (ratios * rows * cols).floor()
    noise = torch.rand(len(ratios), rows * cols, device=ratios.device)
    order = noise.argsort(dim=1).argsort(dim=1)
    return (order < counts[:, None]).view(len(ratios), rows, cols)


def block_masks(
    ratios: torch.Tensor,
    grid: tuple[int, int],
    aspect_ratio: tuple[float, float] = (0.3, 1 / 0.3),
) -> torch.Tensor:
    """``(len(ratios), rows, cols)`` block-wise masks (BEiT, Bao et al. ICLR 2022, Algorithm 1;
    iBOT's ``pred_shape block``): rectangles of area uniform in ``[(min(rows, cols) // 3) ** 2,
    still to mask]`` and log-uniform aspect ratio are added at random positions while they add
    at least one and at most the still-missing number of patches, until ``ratio * rows * cols``
    patches are masked. All images are drawn together with :data:`BLOCK_PROPOSALS` proposals
    each (no host synchronisation); an image can end a little under its target, as BEiT's can
    when its proposals fail."""
    rows, cols = grid
    count = len(ratios)
    device = ratios.device
    target = ratios * rows * cols
    min_area = float((min(rows, cols) // 3) ** 2)
    log_low, log_high = math.log(aspect_ratio[0]), math.log(aspect_ratio[1])
    row_index = torch.arange(rows, device=device).view(1, rows, 1)
    col_index = torch.arange(cols, device=device).view(1, 1, cols)
    masks = torch.zeros(count, rows, cols, dtype=torch.bool, device=device)
    for _ in range(BLOCK_PROPOSALS):
        missing = target - masks.sum(dim=(1, 2))
        uniforms = torch.rand(count, 4, device=device)
        area = min_area + uniforms[:, 0] * (missing - min_area)
        aspect = torch.exp(log_low + uniforms[:, 1] * (log_high - log_low))
        height = (area * aspect).clamp(min=0).sqrt().round()
        width = (area / aspect).clamp(min=0).sqrt().round()
        fits = (height < rows) & (width < cols)
        top = (uniforms[:, 2] * (rows - height + 1)).floor().view(count, 1, 1)
        left = (uniforms[:, 3] * (cols - width + 1)).floor().view(count, 1, 1)
        block = (
            (row_index >= top)
            & (row_index < top + height.view(count, 1, 1))
            & (col_index >= left)
            & (col_index < left + width.view(count, 1, 1))
        )
        added = (block & ~masks).sum(dim=(1, 2))
        accepted = fits & (added > 0) & (added <= missing)
        masks |= block & accepted.view(count, 1, 1)
    return masks
