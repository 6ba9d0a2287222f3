"""iBOT: Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from rotaux.backbones import Backbone, ViT
from rotaux.distributed import own_rows
from rotaux.errors import RotauxError
from rotaux.heads import DINOHead
from rotaux.losses.dino import DINOLoss, teacher_temperature
from rotaux.losses.ibot import MaskedPatchLoss
from rotaux.methods.masking import block_masks, masking_ratios, random_masks
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.multicrop import check_large_crops, multicrop_features
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

_VIT_SMALL = ViT(size="small", patch_size=16, image_size=224, drop_path_rate=0.1)


@register_method(
    "ibot",
    paper='Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022',
    backbones="vit",
)
class IBOT(RotationAuxMixin, MomentumMethod):
    """iBOT with the rotation auxiliary; ViT backbones only.

    DINO's self-distillation of the [CLS] outputs plus masked image modelling with the teacher
    as online tokenizer. The student sees the ``num_large_crops`` global crops with part of their
    patches masked (the patch embedding replaced by a learned mask token before the position
    embedding is added) and the local crops unmasked; the teacher (EMA of the student's backbone
    and head) sees the global crops unmasked. The [CLS] loss is :class:`~rotaux.losses.DINOLoss`
    between the teacher's outputs of each global crop and the student's of every other crop; the
    patch loss (:class:`~rotaux.losses.ibot.MaskedPatchLoss`) makes the student's output for
    each masked patch token match the teacher's for the same patch of the same crop, with its
    own center and teacher temperature. Per global crop and image, with probability
    ``mask_probability`` a ratio is drawn uniformly from ``mask_ratio_range`` and that share of
    the patches is masked in blocks (BEiT's block-wise masking) or at random; otherwise nothing
    is masked. The masks come from torch's global generator on the training device (saved and
    restored by checkpoints, so a resume is exact), drawn for the global batch so DDP matches one
    process. With ``shared_head`` (the paper's default) one DINO head scores the [CLS] and the
    patch tokens; otherwise the patch tokens get a head of their own. The features handed to the
    online probe are the student's pooled features of the first (masked) global crop.

    Rotation auxiliary: the :class:`~rotaux.methods.rotation.RotationAuxMixin` default, unchanged.
    The rotated copies (a separate crop, 4 rotations, with the default ``rotation_source`` and
    ``rotation_copies``) go unmasked through the student backbone's ordinary forward, full patch
    sequence plus CLS token, and the rotation head classifies their pooled features; the teacher
    never sees them. That costs ``rotation_copies`` extra full-sequence student passes (with
    backward) per image and step, on top of iBOT's 2 global and the local student passes and 2
    teacher passes: with E-SSL's 96-px rotation crop on 224-px ViT-S/16 crops, 4 x 37 tokens
    against iBOT's 2 x 197 (student) + 10 x 37 (local crops) + 2 x 197 (teacher, no backward);
    at 32 px with 4-px patches, 4 x 65 against 2 x 65 + 10 x 17 + 2 x 65.

    Defaults are the official ViT-S/16 recipe (the iBOT README's command and ``main_ibot.py``):
    one shared head 2048 -> 256 -> 8192 prototypes without BatchNorm, student temperature 0.1,
    teacher temperatures 0.04 -> 0.07 over 30 epochs for both [CLS] and patches, center momenta
    0.9, loss weights 1 and 1, block-wise masking of half the images with ratios in [0.1, 0.5],
    last layer frozen for 1 epoch, EMA momentum 0.996 -> 1, AdamW with lr 5e-4 per 256 images,
    weight decay 0.04 -> 0.4, 10 warm-up epochs and cosine decay to 1e-6 (0.002 of the peak),
    drop-path 0.1. The head's last layer keeps a fixed norm (rotaux's
    :class:`~rotaux.heads.DINOHead`; the README uses ``--norm_last_layer false`` for ViT-S).

    Args:
        backbone: the ViT (any other backbone is refused).
        optimizer: optimizer and schedule (the recipe's by default).
        base_momentum: EMA momentum of the teacher at the first step.
        proj_hidden_dim: hidden width of the head's MLP.
        proj_output_dim: width of the head's L2-normalised bottleneck.
        num_prototypes: output width of the head(s).
        shared_head: one head for the [CLS] and the patch tokens; otherwise a separate patch head.
        head_batch_norm: BatchNorm in the head's MLP.
        student_temperature: temperature of the student softmax (both losses).
        teacher_temperature: [CLS] teacher temperature after the warm-up.
        warmup_teacher_temperature: [CLS] teacher temperature at epoch 0.
        patch_teacher_temperature: patch teacher temperature after the warm-up.
        warmup_patch_teacher_temperature: patch teacher temperature at epoch 0.
        warmup_teacher_temperature_epochs: epochs of the linear teacher-temperature warm-ups.
        center_momentum: EMA momentum of the [CLS] center.
        patch_center_momentum: EMA momentum of the patch center.
        mask_probability: share of the global crops that are masked at all.
        mask_ratio_range: range of the uniformly drawn share of patches masked in a masked crop.
        mask_shape: ``block`` (BEiT's block-wise masking) or ``random`` patches.
        cls_loss_weight: weight of the [CLS] loss (the paper's lambda1).
        patch_loss_weight: weight of the patch loss (the paper's lambda2).
        freeze_last_layer_epochs: epochs during which the heads' last layers get no gradient.
        num_large_crops: how many leading views are global crops (masked for the student, seen
            by the teacher).
    """

    def __init__(
        self,
        backbone: Backbone = _VIT_SMALL,
        optimizer: OptimizerConfig = OptimizerConfig(
            name="adamw",
            lr=5e-4,
            weight_decay=0.04,
            final_weight_decay=0.4,
            warmup_epochs=10,
            min_lr_ratio=0.002,
        ),
        base_momentum: float = 0.996,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        num_prototypes: int = 8192,
        shared_head: bool = True,
        head_batch_norm: bool = False,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        patch_teacher_temperature: float = 0.07,
        warmup_patch_teacher_temperature: float = 0.04,
        warmup_teacher_temperature_epochs: int = 30,
        center_momentum: float = 0.9,
        patch_center_momentum: float = 0.9,
        mask_probability: float = 0.5,
        mask_ratio_range: tuple[float, float] = (0.1, 0.5),
        mask_shape: Literal["block", "random"] = "block",
        cls_loss_weight: float = 1.0,
        patch_loss_weight: float = 1.0,
        freeze_last_layer_epochs: int = 1,
        num_large_crops: int = 2,
        **base_options: Any,
    ) -> None:
        require_vit("iBOT", backbone)
        low, high = mask_ratio_range
        if not (0 <= low <= high < 1 and 0 <= mask_probability <= 1):
            raise RotauxError(
                f"mask_ratio_range must satisfy 0 <= low <= high < 1 and mask_probability must "
                f"be in [0, 1], got {mask_ratio_range} and {mask_probability}."
            )
        if mask_shape not in ("block", "random"):
            raise RotauxError(f"mask_shape must be block or random, got {mask_shape!r}.")
        super().__init__(
            backbone=backbone, optimizer=optimizer, base_momentum=base_momentum, **base_options
        )
        check_token_layout("iBOT", self.backbone)
        self.patch_size = backbone.patch_size
        self.mask_token = nn.Parameter(torch.zeros(self.backbone.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = DINOHead(
            self.num_features,
            proj_hidden_dim,
            proj_output_dim,
            num_prototypes,
            batch_norm=head_batch_norm,
        )
        self.patch_head = (
            None
            if shared_head
            else DINOHead(
                self.num_features,
                proj_hidden_dim,
                proj_output_dim,
                num_prototypes,
                batch_norm=head_batch_norm,
            )
        )
        self.teacher_backbone = self.momentum_copy(self.backbone)
        self.teacher_head = self.momentum_copy(self.head)
        self.teacher_patch_head = None if shared_head else self.momentum_copy(self.patch_head)
        self.dino_loss = DINOLoss(num_prototypes, student_temperature, center_momentum)
        self.patch_loss = MaskedPatchLoss(
            num_prototypes, student_temperature, patch_center_momentum
        )
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.patch_teacher_temperature = patch_teacher_temperature
        self.warmup_patch_teacher_temperature = warmup_patch_teacher_temperature
        self.warmup_teacher_temperature_epochs = warmup_teacher_temperature_epochs
        self.mask_probability = mask_probability
        self.mask_ratio_range = (low, high)
        self.mask_shape = mask_shape
        self.cls_loss_weight = cls_loss_weight
        self.patch_loss_weight = patch_loss_weight
        self.freeze_last_layer_epochs = freeze_last_layer_epochs
        self.num_large_crops = num_large_crops

    @property
    def num_global_views(self) -> int:
        return self.num_large_crops

    def draw_masks(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` patch masks (True = masked) for one global crop of every image."""
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        ratios = masking_ratios(
            len(images), self.mask_ratio_range, self.mask_probability, images.device
        )
        draw = block_masks if self.mask_shape == "block" else random_masks
        return own_rows(draw(ratios, grid).flatten(1), len(images))

    def tokens(
        self, vit: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``vit``'s output tokens ``(B, 1 + N, C)`` for ``images``, with the patch embeddings
        at ``mask`` replaced by the mask token."""
        patches, position = patch_embeddings(vit, images)
        if mask is not None:
            patches = torch.where(mask[..., None], self.mask_token.to(patches.dtype), patches)
        return encode(vit, patches + position[:, 1:], position)

    def head_outputs(
        self, vit: nn.Module, head: nn.Module, patch_head: nn.Module | None, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head outputs of the pooled features ``(B, K)`` and of the patch tokens ``(B, N, K)``
        (one call of the shared head over both, as the official code runs it)."""
        features, patches = pooled(vit, tokens), tokens[:, 1:]
        batch, num_patches, _ = patches.shape
        if patch_head is None:
            outputs = head(torch.cat([features, patches.flatten(0, 1)]))
            cls_outputs, patch_outputs = outputs[:batch], outputs[batch:]
        else:
            cls_outputs, patch_outputs = head(features), patch_head(patches.flatten(0, 1))
        return cls_outputs, patch_outputs.view(batch, num_patches, -1)

    @torch.no_grad()
    def teacher(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher [CLS] and patch outputs of each unmasked global crop, without gradient."""
        tokens = self.tokens(self.teacher_backbone, torch.cat(views))
        cls_outputs, patch_outputs = self.head_outputs(
            self.teacher_backbone, self.teacher_head, self.teacher_patch_head, tokens
        )
        return list(cls_outputs.chunk(len(views))), list(patch_outputs.chunk(len(views)))

    def current_temperatures(self) -> tuple[float, float]:
        """The [CLS] and patch teacher temperatures of the current epoch."""
        return (
            teacher_temperature(
                self.current_epoch,
                self.warmup_teacher_temperature,
                self.teacher_temperature,
                self.warmup_teacher_temperature_epochs,
            ),
            teacher_temperature(
                self.current_epoch,
                self.warmup_patch_teacher_temperature,
                self.patch_teacher_temperature,
                self.warmup_teacher_temperature_epochs,
            ),
        )

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        views = batch["views"]
        check_large_crops("iBOT", views, self.num_large_crops)
        global_views, local_views = views[: self.num_large_crops], views[self.num_large_crops :]
        masks = [self.draw_masks(view) for view in global_views]
        tokens = self.tokens(self.backbone, torch.cat(global_views), torch.cat(masks))
        cls_outputs, patch_outputs = self.head_outputs(
            self.backbone, self.head, self.patch_head, tokens
        )
        student_cls = list(cls_outputs.chunk(len(global_views)))
        if local_views:
            local_features = multicrop_features(self.backbone, local_views)
            student_cls += list(self.head(local_features).chunk(len(local_views)))
        teacher_cls, teacher_patches = self.teacher(global_views)
        cls_temperature, patch_temperature = self.current_temperatures()
        cls_loss = self.dino_loss(student_cls, teacher_cls, cls_temperature)
        patch_loss = self.patch_loss(
            list(patch_outputs.chunk(len(global_views))), teacher_patches, masks, patch_temperature
        )
        loss = self.cls_loss_weight * cls_loss + self.patch_loss_weight * patch_loss
        self.log_dict({"train/cls_loss": cls_loss, "train/patch_loss": patch_loss})
        features = pooled(self.backbone, tokens[: len(global_views[0])])
        return self.step_output(loss, batch, features)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        cls_temperature, patch_temperature = self.current_temperatures()
        self.log_dict(
            {
                "train/teacher_temperature": cls_temperature,
                "train/patch_teacher_temperature": patch_temperature,
            }
        )

    def on_after_backward(self) -> None:
        super().on_after_backward()
        if self.current_epoch < self.freeze_last_layer_epochs:
            for head in (self.head, self.patch_head):
                if head is not None:
                    head.last_layer.weight.grad = None
