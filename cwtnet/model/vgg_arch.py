"""VGG19 feature extractor (Simonyan & Zisserman, ICLR 2015) with torchvision's module names,
for SRGAN's content loss (``--vgg-weights``: a torchvision ``vgg19`` state dict)."""

from __future__ import annotations

import torch
from torch import nn

from cwtnet.model.resnet_arch import IMAGENET_MEAN, IMAGENET_STD, check_state, load_state_file

VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M")
"""torchvision ``cfgs["E"]``: conv channels, ``M`` = 2x2 max pool."""

VGG19_LAYERS = {"relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "relu5_4": 35}
"""Index in ``features`` of the named ReLU outputs; SRGAN's VGG54 loss is ``relu5_4``."""


def _features(width_div: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout = max(1, int(v) // width_div)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cout
    return nn.Sequential(*layers)


class VGG19(nn.Module):
    """VGG19 (configuration E of Simonyan & Zisserman 2015), torchvision's ``vgg19`` layout:
    ``features`` (16 convs + 5 max pools), ``avgpool`` (7x7), ``classifier`` (4096, 4096,
    ``num_classes``). 143.7 M parameters at 1000 classes, 20.0 M of them in ``features``.

    Args:
        num_classes (int): Outputs of the last dense layer. Default: 1000.
        width_div (int): Divide every conv's channels (1 = the paper's; larger for tests). Default: 1.
    """

    def __init__(self, num_classes: int = 1000, width_div: int = 1) -> None:
        super().__init__()
        self.features = _features(width_div)
        c = max(1, 512 // width_div)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(c * 49, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGGFeatures(nn.Module):
    """Frozen VGG19 ``features`` up to ``layer`` (default ``relu5_4``, SRGAN's VGG54), input
    in [0, 1] (ImageNet-normalised inside). Parameters never receive gradient.

    Args:
        layer (str): One of ``VGG19_LAYERS``. Default: ``"relu5_4"``.
        weights (str | None): torchvision ``vgg19`` state dict path (``weights_only=True``);
            ``None`` keeps the random initialisation (tests only). Default: None.
        width_div (int): Channel divisor (tests). Default: 1.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, layer: str = "relu5_4", weights: str | None = None, width_div: int = 1) -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG layer {layer!r}; choose one of {', '.join(VGG19_LAYERS)}")
        full = nn.Module()
        full.features = _features(width_div)
        if weights is not None:
            state = check_state(full, load_state_file(weights, "--vgg-weights"), "--vgg-weights", weights,
                                skip_prefixes=("classifier.",), name="vgg19")
            full.load_state_dict(state)
        self.features = full.features[: VGG19_LAYERS[layer] + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:  # always eval: a fixed loss network
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)
