"""Token-level passes through the timm VisionTransformer that :class:`~rotaux.backbones.ViT`
builds, for the masked-image methods (MAE, iBOT): the same modules and parameters as the
backbone's own forward (patch embedding, CLS token, position embedding resampled to the crop's
patch grid as timm's ``dynamic_img_size`` does, blocks, final norm), with the patch tokens
dropped or replaced in between. The backbone itself stays an unmodified timm model, so its
exported weights load into ``timm.create_model``."""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from rotaux.backbones import Backbone, ViT
from rotaux.errors import RotauxError


def require_vit(method: str, backbone: Backbone) -> None:
    """Refuse any backbone but a :class:`~rotaux.backbones.ViT` before it is built."""
    if not isinstance(backbone, ViT):
        raise RotauxError(
            f"{method} masks patch tokens and needs a ViT backbone, got "
            f"{type(backbone).__name__}. Use --model.backbone ViT (for example "
            "--model.backbone.size small --model.backbone.patch_size 16), or a method that takes "
            "any backbone."
        )


def patch_embeddings(vit: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(B, N, C)`` patch embeddings of ``images`` in raster order, without position, and
    the ``(1, 1 + N, C)`` position embedding of their patch grid (the CLS token's first)."""
    tokens = vit.patch_embed(images)
    native_grid = tuple(vit.patch_embed.grid_size)
    if tokens.dim() == 4:  # dynamic_img_size: (B, rows, cols, C)
        grid = tuple(tokens.shape[1:3])
        tokens = tokens.flatten(1, 2)
    else:
        grid = native_grid
    position = resample_abs_pos_embed(
        vit.pos_embed, new_size=grid, old_size=native_grid, num_prefix_tokens=1
    )
    return tokens, position


def encode(vit: nn.Module, patches: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """The transformer's output tokens ``(B, 1 + n, C)`` (CLS first, after the final norm) for
    ``patches`` ``(B, n, C)`` that already carry their position embedding; ``position`` is the
    grid's full embedding, whose first row goes to the CLS token."""
    cls = (vit.cls_token + position[:, :1]).expand(len(patches), -1, -1)
    tokens = vit.pos_drop(torch.cat([cls, patches], dim=1))
    tokens = vit.norm_pre(vit.patch_drop(tokens))
    return vit.norm(vit.blocks(tokens))


def pooled(vit: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The backbone's pooled features of its output ``tokens`` (CLS token or mean of the patch
    tokens, then timm's ``fc_norm``): what its forward returns for the same tokens."""
    return vit.forward_head(tokens, pre_logits=True)


def check_token_layout(method: str, vit: nn.Module) -> None:
    """Refuse a timm ViT whose tokens are not ``[CLS, patches]`` with a position embedding that
    covers the CLS token (register tokens, no CLS token, DeiT-3's ``no_embed_class``)."""
    if (
        getattr(vit, "cls_token", None) is None
        or getattr(vit, "reg_token", None) is not None
        or getattr(vit, "no_embed_class", False)
        or getattr(vit, "pos_embed", None) is None
    ):
        raise RotauxError(
            f"{method} needs a ViT whose tokens are a CLS token and the patches, with a learned "
            "position embedding for both (rotaux.backbones.ViT builds one)."
        )
