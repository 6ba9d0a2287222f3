"""MAE: He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022."""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import nn

from rotaux.backbones import Backbone, ViT
from rotaux.errors import RotauxError
from rotaux.losses.mae import mae_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.masking import shuffle_keep_indices
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.methods.vit_tokens import (
    check_token_layout,
    encode,
    patch_embeddings,
    pooled,
    require_vit,
)
from rotaux.optim import OptimizerConfig

_VIT_SMALL = ViT(size="small", patch_size=16, image_size=224)


def sincos_position_embedding(dim: int, rows: int, cols: int) -> torch.Tensor:
    """MAE's fixed 2-D sine-cosine position embedding ``(1 + rows * cols, dim)`` for a CLS slot
    (zeros) and a patch grid in raster order: the first half of the channels encodes the column,
    the second half the row, each as ``[sin(x * w_k), cos(x * w_k)]`` with
    ``w_k = 10000 ** (-k / (dim / 4))`` (Vaswani et al. 2017's frequencies)."""
    quarter = dim // 4
    frequencies = 10000.0 ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    row, col = torch.meshgrid(
        torch.arange(rows, dtype=torch.float64),
        torch.arange(cols, dtype=torch.float64),
        indexing="ij",
    )
    parts = []
    for coordinate in (col.flatten(), row.flatten()):
        angles = coordinate[:, None] * frequencies[None, :]
        parts += [angles.sin(), angles.cos()]
    grid = torch.cat(parts, dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), grid]).float()


class MAEDecoder(nn.Module):
    """MAE's lightweight decoder (He et al. 2022, Sec. 3 "MAE decoder"): the encoded visible
    tokens are projected to ``embed_dim``, a shared learned mask token fills every removed
    patch's place, fixed sine-cosine position embeddings are added, and ``depth`` transformer
    blocks and a linear layer predict each patch's ``out_dim`` pixel values. Weights start as
    in the official code (Xavier-uniform linear layers, zero biases, mask token with std 0.02).

    Args:
        in_dim: width of the encoder's tokens.
        embed_dim: width of the decoder.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        out_dim: pixel values per patch (``patch_size ** 2 * channels``).
    """

    def __init__(self, in_dim: int, embed_dim: int, depth: int, num_heads: int, out_dim: int):
        super().__init__()
        self.embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.Sequential(
            *(Block(embed_dim, num_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.prediction = nn.Linear(embed_dim, out_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(
        self, tokens: torch.Tensor, kept: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Pixel predictions ``(B, rows * cols, out_dim)`` for every patch of the grid, from the
        encoder's output ``tokens`` ``(B, 1 + n, in_dim)`` (CLS first) of the patches at indices
        ``kept`` ``(B, n)``."""
        embedded = self.embed(tokens)
        batch, _, width = embedded.shape
        num_patches = grid[0] * grid[1]
        patches = self.mask_token.to(embedded.dtype).expand(batch, num_patches, width)
        patches = patches.scatter(1, kept[..., None].expand(-1, -1, width), embedded[:, 1:])
        position = sincos_position_embedding(width, *grid).to(embedded.device, embedded.dtype)
        sequence = torch.cat([embedded[:, :1], patches], dim=1) + position
        return self.prediction(self.norm(self.blocks(sequence)))[:, 1:]


@register_method(
    "mae",
    paper='He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022',
    backbones="vit",
)
class MAE(RotationAuxMixin, SSLMethod):
    """MAE with the rotation auxiliary; ViT backbones only.

    Each view's patches get the backbone's position embedding and a random ``mask_ratio`` of
    them is removed per sample (a fresh draw per view and step); the ViT encoder (the backbone's
    own patch embedding, CLS token, blocks and final norm) sees only the visible patches and the
    CLS token, and :class:`MAEDecoder` predicts the pixels of every patch. The loss is the mean
    squared error on the removed patches only, against per-patch normalised pixels with
    ``norm_pix_loss`` (:func:`~rotaux.losses.mae.mae_loss`), averaged over the views (the
    recipes use one). The masks come from torch's global generator on the training device
    (saved and restored by checkpoints, so a resume is exact), drawn for the global batch so
    DDP matches one process. The features handed to the online probe are the pooled encoder
    output of the first view's visible patches.

    Rotation auxiliary: the :class:`~rotaux.methods.rotation.RotationAuxMixin` default, unchanged.
    The rotated copies (a separate crop, 4 rotations, with the default ``rotation_source`` and
    ``rotation_copies``) go unmasked through the same backbone's ordinary forward, full patch
    sequence plus CLS token, and the rotation head classifies their pooled features. That costs
    ``rotation_copies`` extra full-sequence encoder passes (with backward) per image and step,
    against MAE's one pass over a quarter of the patches: at 32 px with 4-px patches, 4 x 65
    tokens for the rotation task against 17 for MAE's encoder; at 224 px with 16-px patches and
    E-SSL's 96-px rotation crop, 4 x 37 against 50. ``rotation_copies 1`` or a smaller
    ``rotation_crop_size`` cut that cost.

    Defaults are the paper's (Sec. 4 and Appendix A.1): mask ratio 0.75, decoder of width 512,
    depth 8 and 16 heads, normalised-pixel targets, AdamW with lr 1.5e-4 per 256 images (linear
    scaling), betas (0.9, 0.95), weight decay 0.05, 40 warm-up epochs and cosine decay. Unlike
    the paper's encoder (fixed sine-cosine position embedding), the backbone keeps timm's learned
    one, so the exported weights are a plain timm ViT.

    Args:
        backbone: the ViT (any other backbone is refused).
        optimizer: optimizer and schedule (the paper's by default).
        mask_ratio: fraction of each image's patches removed from the encoder's input.
        decoder_embed_dim: width of the decoder.
        decoder_depth: transformer blocks of the decoder.
        decoder_num_heads: attention heads of the decoder's blocks (must divide its width).
        norm_pix_loss: reconstruct each patch's pixels normalised by their mean and standard
            deviation.
    """

    def __init__(
        self,
        backbone: Backbone = _VIT_SMALL,
        optimizer: OptimizerConfig = OptimizerConfig(
            name="adamw", lr=1.5e-4, weight_decay=0.05, adam_beta2=0.95, warmup_epochs=40
        ),
        mask_ratio: float = 0.75,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        norm_pix_loss: bool = True,
        **base_options: Any,
    ) -> None:
        require_vit("MAE", backbone)
        if not 0 < mask_ratio < 1:
            raise RotauxError(f"mask_ratio must be in (0, 1), got {mask_ratio}.")
        if decoder_embed_dim % 4 or decoder_embed_dim % decoder_num_heads:
            raise RotauxError(
                f"decoder_embed_dim ({decoder_embed_dim}) must be a multiple of 4 (the 2-D "
                f"sine-cosine position embedding) and of decoder_num_heads ({decoder_num_heads})."
            )
        super().__init__(backbone=backbone, optimizer=optimizer, **base_options)
        check_token_layout("MAE", self.backbone)
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.patch_size = backbone.patch_size
        self.decoder = MAEDecoder(
            self.backbone.embed_dim,
            decoder_embed_dim,
            decoder_depth,
            decoder_num_heads,
            backbone.patch_size**2 * backbone.channels,
        )

    @property
    def num_global_views(self) -> int:
        return 1

    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MAE's loss on ``images`` and the pooled encoder features of their visible patches."""
        patches, position = patch_embeddings(self.backbone, images)
        patches = patches + position[:, 1:]
        batch, num_patches, width = patches.shape
        num_kept = int(num_patches * (1 - self.mask_ratio))
        if num_kept < 1:
            raise RotauxError(
                f"A mask ratio of {self.mask_ratio} leaves none of the {num_patches} patches of "
                f"{images.shape[-1]}-px crops visible; lower --model.mask_ratio."
            )
        kept, mask = shuffle_keep_indices(batch, num_patches, num_kept, images.device)
        visible = patches.gather(1, kept[..., None].expand(-1, -1, width))
        tokens = encode(self.backbone, visible, position)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        predictions = self.decoder(tokens, kept, grid)
        loss = mae_loss(images, predictions, mask, self.patch_size, self.norm_pix_loss)
        return loss, pooled(self.backbone, tokens)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        views = batch["views"]
        losses, features = zip(*(self.reconstruct(view) for view in views), strict=True)
        loss = torch.stack(losses).mean()
        return self.step_output(loss, batch, features[0])
