"""VGG19's layers by the paper's names, all read from one description of the network.

:data:`CFG` is torchvision's description of VGG19's conv part (configuration "E"): the
number of channels of each 3x3 convolution in order, and "M" for each pooling. Every other
fact about the layers is derived from it here, without building the network: the names
(``conv1_1`` ... ``conv5_4``, ``pool1`` ... ``pool5``), where each name's value is in
``vgg19().features``, the shapes of the weights, and how much each layer downsamples.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn as nn
from torchvision.models.vgg import cfgs, make_layers

CFG: list = cfgs["E"]  # [64, 64, "M", 128, 128, "M", 256, ...]


class Conv(NamedTuple):
    """One conv layer of VGG19: ``conv{block}_{number}``."""

    index: int  # of the Conv2d in vgg19().features; its ReLU is at index + 1
    block: int  # 1-5: the pooling stages before it, plus 1
    number: int  # within its block
    channels_in: int
    channels_out: int

    @property
    def name(self) -> str:
        return f"conv{self.block}_{self.number}"


def _convs() -> tuple[Conv, ...]:
    convs, index, block, number, channels = [], 0, 1, 0, 3
    for item in CFG:
        if item == "M":  # a pooling takes one index
            index, block, number = index + 1, block + 1, 0
        else:  # a convolution and its ReLU take two
            number += 1
            convs.append(Conv(index, block, number, channels, item))
            index, channels = index + 2, item
    return tuple(convs)


CONVS = _convs()
CONV_INDICES = tuple(conv.index for conv in CONVS)  # 0, 2, 5, 7, 10, ...
KERAS_BLOCKS = tuple((b, sum(c.block == b for c in CONVS))  # (block, convs in it)
                     for b in dict.fromkeys(c.block for c in CONVS))

def _layer_table() -> dict[str, int]:
    """Name -> index in ``vgg19().features`` whose output is that layer's value: a conv's
    rectified response (after its ReLU), and after a block's last conv, its pooling."""
    table, convs_in = {}, dict(KERAS_BLOCKS)
    for conv in CONVS:
        table[conv.name] = conv.index + 1
        if conv.number == convs_in[conv.block]:
            table[f"pool{conv.block}"] = conv.index + 2
    return table


LAYERS: dict[str, int] = _layer_table()  # conv1_1 -> 1, conv1_2 -> 3, pool1 -> 4, ...
CONV_LAYERS = tuple(conv.name for conv in CONVS)


def block(name: str) -> int:
    """The paper's block of a layer: conv3_1 and pool3 are in block 3. A layer of block b
    sees the image downsampled by 2^(b-1) (its value is 2^(b-1) times smaller per side)."""
    return int(name.removeprefix("conv").removeprefix("pool")[0])


def check_layers(names) -> tuple[str, ...]:
    """Return the names as a tuple, or raise ValueError listing the valid names.

    One name ("conv4_2") or names separated by commas ("conv1_1, conv2_1") count as a list.
    """
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    names = tuple(names)
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        raise ValueError(
            f"Unknown layer name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid names are {', '.join(LAYERS)}."
        )
    return names


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the 16 conv layers' weights in ``vgg19().features.state_dict()``."""
    shapes = {}
    for conv in CONVS:
        shapes[f"{conv.index}.weight"] = (conv.channels_out, conv.channels_in, 3, 3)
        shapes[f"{conv.index}.bias"] = (conv.channels_out,)
    return shapes


def features() -> nn.Sequential:
    """An untrained ``vgg19().features`` (the conv part only, without the classifier)."""
    return make_layers(CFG)
