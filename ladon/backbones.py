"""Server-side shared bodies: the backbone's ``layer2``-``layer4`` (its stem and ``layer1`` are replaced by the
Ladon bottleneck) plus the backbone's own 1000-way ``fc``.

``resnet50`` is the published Ladon (C=24); ``resnest269e`` (C=32) needs the optional ``timm`` extra;
``resnet18``/``resnet34`` are small bodies for models trained offline (e.g. the bundled demo model).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .errors import LadonError


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about a backbone family."""

    name: str
    stage_channels: tuple[int, int, int, int]
    """Output channels of layer1 (= the decoder target), layer2, layer3, layer4."""
    default_bottleneck_channels: int
    needs_timm: bool = False


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec("resnet50", (256, 512, 1024, 2048), 24),
    "resnet101": BackboneSpec("resnet101", (256, 512, 1024, 2048), 24),
    "resnest269e": BackboneSpec("resnest269e", (256, 512, 1024, 2048), 32, needs_timm=True),
    "resnet34": BackboneSpec("resnet34", (64, 128, 256, 512), 12),
    "resnet18": BackboneSpec("resnet18", (64, 128, 256, 512), 12),
}


def backbone_spec(name: str) -> BackboneSpec:
    """Look up a backbone by name, with a clear error for unknown names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise LadonError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


class SharedBody(nn.Module):
    """``layer2`` -> ``layer3`` -> ``layer4`` of a ResNet-style backbone, returning all four feature maps."""

    def __init__(self, layer2: nn.Module, layer3: nn.Module, layer4: nn.Module) -> None:
        super().__init__()
        self.layer2 = layer2
        self.layer3 = layer3
        self.layer4 = layer4

    def forward(self, decoded: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Map the decoder output (stride 4) to features '0'..'3' at strides 4, 8, 16, 32."""
        f1 = self.layer2(decoded)
        f2 = self.layer3(f1)
        f3 = self.layer4(f2)
        return OrderedDict([("0", decoded), ("1", f1), ("2", f2), ("3", f3)])


def build_body(name: str, num_classes: int = 1000) -> tuple[SharedBody, nn.Linear]:
    """Build a randomly initialised shared body and the backbone's classifier ``fc`` (no weights are downloaded)."""
    spec = backbone_spec(name)
    if spec.needs_timm:
        try:
            import timm
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise LadonError(f"backbone {name!r} needs the optional dependency timm: pip install 'ladon[resnest]'") \
                from exc
        net = timm.create_model(name, pretrained=False, num_classes=num_classes)
    else:
        import torchvision

        net = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    return SharedBody(net.layer2, net.layer3, net.layer4), net.fc
