"""Server-side shared bodies: the backbone's ``layer2``-``layer4`` (its stem and ``layer1`` are replaced by the
Ladon bottleneck) plus the backbone's own 1000-way ``fc``.

``resnet50`` is the published Ladon (C=24); ``resnest269e`` (C=32) needs the optional ``timm`` extra;
``resnet18``/``resnet34`` are small bodies for models trained offline; ``resnet_tiny`` (BasicBlock stages of width
32/64/128/256, one block each, C=8) is the body of the small (< 15 MB) demo model trained on the offline data set.
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
    "resnet_tiny": BackboneSpec("resnet_tiny", (32, 64, 128, 256), 8),
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


class TinyResNet(nn.Module):
    """A ResNet with one torchvision ``BasicBlock`` per stage and stage widths ``widths`` (standard strides).

    Attribute names follow torchvision's ``ResNet`` (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``).
    """

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 256), num_classes: int = 1000) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock, conv1x1

        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = []
        in_channels = widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or in_channels != width:
                downsample = nn.Sequential(conv1x1(in_channels, width, stride), nn.BatchNorm2d(width))
            stages.append(nn.Sequential(BasicBlock(in_channels, width, stride, downsample)))
            in_channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> logits."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_backbone(name: str, num_classes: int = 1000) -> nn.Module:
    """Build the complete, randomly initialised backbone network (stem, ``layer1``-``layer4``, ``fc``).

    Nothing is downloaded. This is the teacher architecture; :func:`build_body` keeps only its ``layer2``-``layer4``
    and ``fc``.
    """
    spec = backbone_spec(name)
    if spec.needs_timm:
        try:
            import timm
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise LadonError(f"backbone {name!r} needs the optional dependency timm: pip install 'ladon[resnest]'") \
                from exc
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    if name == "resnet_tiny":
        return TinyResNet(spec.stage_channels, num_classes=num_classes)
    import torchvision

    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)


def build_body(name: str, num_classes: int = 1000) -> tuple[SharedBody, nn.Linear]:
    """Build a randomly initialised shared body and the backbone's classifier ``fc`` (no weights are downloaded)."""
    net = build_backbone(name, num_classes)
    return SharedBody(net.layer2, net.layer3, net.layer4), net.fc
