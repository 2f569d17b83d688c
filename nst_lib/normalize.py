"""VGG19 rescaled as in the paper (Sec. 2): each filter's mean response over images and
positions is 1. What the network "sees" is unchanged; only the weight each filter carries
in eq. 1 and 4 changes, and with it what alpha/beta means.

The paper says only "over images and positions"; the images here are :data:`CALIBRATION`,
five of the bundled ones (notebook 5 shows that other sets change the scales little).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from .image import DATA_DIR, load_image, resize
from .layers import CONV_LAYERS, LAYERS

if TYPE_CHECKING:
    from .vgg import VGG19

# three photos, a texture and a painting from data/
CALIBRATION = ("brick.png", "chelsea.png", "kodim23.png", "sail.png", "starry_night.jpg")

ImageSource = torch.Tensor | str | Path


def calibration_images() -> list[Path]:
    """The default images of :func:`normalize_weights`: :data:`CALIBRATION` in ``data/``."""
    return [DATA_DIR / name for name in CALIBRATION]


def calibration_id(images: Sequence[ImageSource] | None = None) -> str:
    """12 hex digits that name a set of calibration images (default: the bundled ones).

    They change when any image changes, so normalised weights computed on other images are
    never mistaken for these (the cached file's name and the result cache's keys use it).
    """
    digest = hashlib.sha256()
    for item in calibration_images() if images is None else images:
        digest.update(item.numpy().tobytes() if isinstance(item, torch.Tensor)
                      else Path(item).read_bytes())
    return digest.hexdigest()[:12]


def mean_responses(model: VGG19, images: Sequence[ImageSource], layers=CONV_LAYERS, *,
                   size: int | None = 256) -> dict[str, torch.Tensor]:
    """Each filter's rectified response averaged over the positions of each image, then
    over the images (paths or tensors, longest side resized to ``size``; None: as they
    are): ``{layer: (N,)}``, on the CPU."""
    device = next(model.parameters()).device
    sums = {name: 0.0 for name in layers}
    with torch.no_grad():
        for image in images:
            x = resize(image, size) if isinstance(image, torch.Tensor) else load_image(image, size)
            for name, f in model(x.to(device), tuple(layers)).items():  # f: (1, N, H, W)
                sums[name] = sums[name] + f.mean(dim=(0, 2, 3)).cpu()
    return {name: total / len(images) for name, total in sums.items()}


def normalize_weights(model: VGG19, images: Sequence[ImageSource] | None = None, *,
                      size: int = 256) -> dict[str, torch.Tensor]:
    """``model``'s ``features`` state dict rescaled so that each filter's mean rectified
    response on ``images`` (default :func:`calibration_images`) is 1.

    ``s_i^l`` is filter i's mean response at layer l (:func:`mean_responses`, measured in
    ``model``, with its pooling). Going up layer by layer, each conv layer's output channels
    are divided by ``s^l`` and its input channels multiplied by ``s^{l-1}`` (its input is
    then as if un-normalised)::

        W^l[i, j] <- W^l[i, j] * s_j^{l-1} / s_i^l,    b_i^l <- b_i^l / s_i^l

    ReLU and both poolings are positively homogeneous, so every response is the original
    one divided by ``s_i^l``: a mean of exactly 1 on these images. Filters silent on every
    image keep their scale.
    """
    means = mean_responses(model, calibration_images() if images is None else list(images),
                           size=size)
    state = {k: v.detach().cpu().clone() for k, v in model.features.state_dict().items()}
    previous = torch.ones(3)  # the image's channels are not rescaled
    for name in CONV_LAYERS:
        s = torch.where(means[name] > 0, means[name], torch.ones_like(means[name]))
        conv = LAYERS[name] - 1  # the conv before this ReLU
        state[f"{conv}.weight"] *= previous.view(1, -1, 1, 1) / s.view(-1, 1, 1, 1)
        state[f"{conv}.bias"] /= s
        previous = s
    return state
