"""Backbones from timm (PyTorch Image Models, Wightman), the model library whose ViT weights and
parameter names DINO, MoCo v3, iBOT and solo-learn's ViTs follow. Each is the timm model with
``num_classes=0``, so its forward returns pooled features; the exported weights load with
``strict=True`` into ``timm.create_model`` with the same arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from rotaux.backbones.base import Backbone
from rotaux.errors import RotauxError


class TimmBackbone(Backbone):
    """A backbone that timm builds: subclasses say which model and with which arguments."""

    def timm_name(self) -> str:
        raise NotImplementedError

    def timm_options(self) -> dict[str, Any]:
        """Architecture arguments of ``timm.create_model`` (those that change the weights'
        shapes or names)."""
        return {}

    def training_options(self) -> dict[str, Any]:
        """Arguments that only act while training (drop-path), left out of the export's
        loading instructions."""
        return {}

    def build(self) -> nn.Module:
        import timm

        try:
            return timm.create_model(
                self.timm_name(),
                pretrained=False,
                num_classes=0,
                **self.timm_options(),
                **self.training_options(),
            )
        except (RuntimeError, TypeError, ValueError, AssertionError) as error:
            raise RotauxError(
                f"timm cannot build {self.timm_name()!r} with {self.timm_options()}: {error}"
            ) from error

    def no_weight_decay(self, network: nn.Module) -> set[str]:
        named = getattr(network, "no_weight_decay", None)
        keys = set(named()) if callable(named) else set()
        # timm lists keys as names or name suffixes (Swin's relative position tables)
        return {
            name
            for name, _ in network.named_parameters()
            if name in keys or any(name.endswith(f".{key}") for key in keys)
        }

    def source_library(self) -> str:
        return "timm"

    def _create_call(self) -> str:
        options = "".join(f", {key}={value!r}" for key, value in self.timm_options().items())
        return f"timm.create_model({self.timm_name()!r}, num_classes=0{options})"

    def load_snippet(self, weights_file: str) -> str:
        return (
            f"model = {self._create_call()}\n"
            f"model.load_state_dict(torch.load('{weights_file}', weights_only=True))"
        )

    def build_in_source_library(self) -> nn.Module:
        import timm

        return timm.create_model(self.timm_name(), num_classes=0, **self.timm_options())


@dataclass(frozen=True)
class TimmModel(TimmBackbone):
    """Any timm model by name, for architectures rotaux has no description of; the feature size
    is timm's ``num_features``.

    Args:
        name: a ``timm.list_models()`` name, for example ``resnetv2_50`` or ``efficientnet_b0``.
        options: further ``timm.create_model`` arguments (``img_size``, ``in_chans``, ...).
    """

    name: str = "resnet18"
    options: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.options.items()))))

    def timm_name(self) -> str:
        return self.name

    def timm_options(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def in_channels(self) -> int:
        return int(self.options.get("in_chans", 3))

    def build(self) -> nn.Module:
        import timm

        if not timm.is_model(self.name):
            close = timm.list_models(f"*{self.name.split('_')[0]}*")[:8]
            raise RotauxError(
                f"timm has no model {self.name!r}. Similar names: {close or 'none'}; "
                "timm.list_models() lists them all."
            )
        return super().build()


_VIT_SIZES = ("tiny", "small", "base")


@dataclass(frozen=True)
class ViT(TimmBackbone):
    """Vision Transformer (Dosovitskiy et al., ICLR 2021) in timm's DeiT sizes: ViT-Tiny
    (192 features, 5.7M parameters), ViT-Small (384, 22M) and ViT-Base (768, 86M).

    Patch 16 at 224 px is the standard; for 32x32 images use patch 4 (64 tokens) or 2. Crops of
    other sizes than ``image_size`` (multi-crop's small crops) are allowed when the patch size
    divides them: the position embedding is interpolated (timm's ``dynamic_img_size``).

    Args:
        size: ``tiny``, ``small`` or ``base``.
        patch_size: side of the square patches.
        image_size: side of the images the position embedding is made for.
        pooling: features are the ``cls`` token (DINO, MoCo v3) or the ``mean`` of the patch
            tokens (then normalised by a final LayerNorm, as timm's ``global_pool="avg"``).
        drop_path_rate: stochastic-depth rate (0.1 in DINO's ViT-Small/16 recipe).
        channels: channels of the input images.
    """

    size: Literal["tiny", "small", "base"] = "small"
    patch_size: int = 16
    image_size: int = 224
    pooling: Literal["cls", "mean"] = "cls"
    drop_path_rate: float = 0.0
    channels: int = 3

    def __post_init__(self) -> None:
        if self.size not in _VIT_SIZES:
            raise RotauxError(f"Unknown ViT size {self.size!r}; choose one of {_VIT_SIZES}.")
        if self.pooling not in ("cls", "mean"):
            raise RotauxError(f"ViT pooling must be 'cls' or 'mean', got {self.pooling!r}.")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise RotauxError(
                f"The ViT's patch size {self.patch_size} must divide its image_size "
                f"{self.image_size}."
            )

    @property
    def in_channels(self) -> int:
        return self.channels

    def timm_name(self) -> str:
        return f"vit_{self.size}_patch16_224"

    def timm_options(self) -> dict[str, Any]:
        return {
            "img_size": self.image_size,
            "patch_size": self.patch_size,
            "in_chans": self.channels,
            "global_pool": "token" if self.pooling == "cls" else "avg",
            "dynamic_img_size": True,
        }

    def training_options(self) -> dict[str, Any]:
        return {"drop_path_rate": self.drop_path_rate}

    def check_input_size(self, size: int) -> None:
        if size % self.patch_size:
            raise RotauxError(
                f"Crops of {size} px do not split into the ViT's {self.patch_size}-px patches. "
                f"Use crop sizes that are multiples of {self.patch_size} (--data.image_size, the "
                "augmentations' crop_size, --model.rotation_crop_size) or another "
                "--model.backbone.patch_size."
            )


@dataclass(frozen=True)
class Swin(TimmBackbone):
    """Swin Transformer (Liu et al., ICCV 2021), Swin-T: 768 features, 28M parameters.

    Every crop must be ``image_size`` px (the attention windows are laid out for it), so
    multi-crop's small crops need another backbone; for 32 px images use ``window_size`` 2 or 4.

    Args:
        image_size: side of the input images (224 in the paper; 32 with ``window_size`` 2).
        window_size: side of the attention windows, in patches (7 at 224 px).
        drop_path_rate: stochastic-depth rate (0.2 in the paper's Swin-T recipe).
        channels: channels of the input images.
    """

    image_size: int = 224
    window_size: int = 7
    drop_path_rate: float = 0.0
    channels: int = 3

    @property
    def in_channels(self) -> int:
        return self.channels

    def timm_name(self) -> str:
        return "swin_tiny_patch4_window7_224"

    def timm_options(self) -> dict[str, Any]:
        return {
            "img_size": self.image_size,
            "window_size": self.window_size,
            "in_chans": self.channels,
        }

    def training_options(self) -> dict[str, Any]:
        return {"drop_path_rate": self.drop_path_rate}

    def check_input_size(self, size: int) -> None:
        if size != self.image_size:
            raise RotauxError(
                f"Swin is built for {self.image_size}-px images and cannot take {size}-px crops. "
                f"Make every crop {self.image_size} px, or set --model.backbone.image_size."
            )


@dataclass(frozen=True)
class ConvNeXt(TimmBackbone):
    """ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022), ConvNeXt-T: 768 features,
    28M parameters. Its stem and three downsamplings divide the side by 32.

    Args:
        drop_path_rate: stochastic-depth rate (0.1 in the paper's ConvNeXt-T recipe).
        channels: channels of the input images.
    """

    drop_path_rate: float = 0.0
    channels: int = 3

    @property
    def in_channels(self) -> int:
        return self.channels

    def timm_name(self) -> str:
        return "convnext_tiny"

    def timm_options(self) -> dict[str, Any]:
        return {"in_chans": self.channels}

    def training_options(self) -> dict[str, Any]:
        return {"drop_path_rate": self.drop_path_rate}

    def check_input_size(self, size: int) -> None:
        if size % 32:
            raise RotauxError(
                f"ConvNeXt divides the image side by 32, so {size}-px crops do not fit. Use "
                "crop sizes that are multiples of 32."
            )
