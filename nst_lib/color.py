"""Keeping the photo's colours (Gatys, Ecker, Bethge, Hertzmann and Shechtman 2017).

Plain style transfer copies the painting's colours along with its brush strokes. The
follow-up paper, "Controlling Perceptual Factors in Neural Style Transfer" (CVPR 2017,
Sec. 5), gives two ways to keep the photo's colours:

- **luminance-only transfer**: run the transfer on the luminance channel only (Y of YIQ,
  repeated in R, G and B), with the style's luminance first matched to the photo's mean and
  spread, then put the photo's colour channels I and Q back (:func:`luminance_only` and
  :func:`combine_luminance`);
- **colour histogram matching**: before the transfer, give the painting the photo's mean
  colour and colour covariance with a linear map (:func:`match_color`), then transfer as
  usual.

Everything here is a pure function of RGB tensors (1, 3, H, W) in [0, 1], except
:func:`transfer_preserving_color`, which puts them around :func:`nst_lib.transfer`.
"""

from __future__ import annotations

from typing import Callable

import torch

from .config import Config, split_settings
from .image import as_list, image_from, match_color, resize
from .optimize import ImageLike, Result, transfer

# NTSC RGB -> YIQ (FCC 1953 coefficients); Y is the luminance, I and Q the colour.
RGB_TO_YIQ = torch.tensor([
    [0.299, 0.587, 0.114],
    [0.595716, -0.274453, -0.321263],
    [0.211456, -0.522591, 0.311135],
], dtype=torch.float64)
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)  # exact inverse, so the round trip is the identity


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Multiply each pixel's 3-vector by ``matrix``: (3, 3) x (B, 3, H, W) -> (B, 3, H, W)."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) -> YIQ (B, 3, H, W): Y in [0, 1], I and Q around 0."""
    return _apply(RGB_TO_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """YIQ (B, 3, H, W) -> RGB (B, 3, H, W), the inverse of :func:`rgb_to_yiq` (not clamped)."""
    return _apply(YIQ_TO_RGB, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Y = 0.299 R + 0.587 G + 0.114 B, repeated in three channels: a grey RGB image.

    (B, 3, H, W) -> (B, 3, H, W). A grey pixel (Y, Y, Y) has I = Q = 0, since the rows of
    I and Q sum to 0, so VGG19 sees the luminance and nothing else.
    """
    return rgb_to_yiq(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style's luminance with the content's mean and standard deviation (2017, eq. 8).

    L_S' = sigma_C / sigma_S * (L_S - mu_S) + mu_C, on grey (B, 3, H, W) images; without it
    a dark painting would darken the photo. Not clamped.
    """
    ys, yc = luminance(style), luminance(content)
    scale = yc.std() / ys.std().clamp_min(1e-8)
    return (ys - ys.mean()) * scale + yc.mean()


def luminance_only(content: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two grey images to transfer between: the content's luminance and the style's,
    matched to it (:func:`match_luminance`, clamped to [0, 1])."""
    return luminance(content), match_luminance(style, content).clamp(0, 1)


def combine_luminance(grey: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """RGB image with the luminance of ``grey`` and the I and Q channels of ``color``.

    ``grey``: the result of a luminance-only transfer, (B, 3, H, W) (its mean over the
    channels is used as Y). ``color``: the content photo, resized to ``grey``'s size if it
    differs. Returns RGB (B, 3, H, W) clamped to [0, 1].
    """
    color = resize(color, tuple(grey.shape[-2:])) if color.shape[-2:] != grey.shape[-2:] else color
    yiq = rgb_to_yiq(color)
    yiq = torch.cat([grey.mean(dim=1, keepdim=True), yiq[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)


def transfer_preserving_color(
    content: ImageLike,
    style: ImageLike | list[ImageLike],
    config: Config | None = None,
    *,
    method: str = "luminance",
    runner: Callable[..., Result] = transfer,
    **kwargs,
) -> Result:
    """Style transfer that keeps the content photo's colours (2017 paper, Sec. 5).

    ``method="luminance"``: transfer between the luminance images (:func:`luminance_only`),
    then put the photo's colours back (:func:`combine_luminance`).
    ``method="histogram"``: give the style image(s) the photo's colour statistics
    (:func:`match_color`, Cholesky variant, clamped to [0, 1]), then transfer as usual.

    ``config`` and ``kwargs`` (settings and keywords such as ``model`` or ``progress``) go
    to ``runner``: :func:`nst_lib.transfer` by default, or e.g.
    :func:`nst_lib.cache.cached_transfer`. Returns its :class:`~nst_lib.Result`, with the
    recombined image for ``"luminance"`` (the history is that of the grey transfer).
    """
    resolved, _ = split_settings(config, kwargs)
    photo = image_from(content, resolved.size, what="content image")
    paintings = [image_from(s, resolved.style_size or resolved.size, what="style image")
                 for s in as_list(style)]
    if method == "luminance":
        pairs = [luminance_only(photo, p) for p in paintings]
        result = runner(pairs[0][0], [p for _, p in pairs], config, **kwargs)
        result.image = combine_luminance(result.image, photo)
        return result
    if method == "histogram":
        matched = [match_color(p, photo).clamp(0, 1) for p in paintings]
        return runner(photo, matched, config, **kwargs)
    raise ValueError(f"method must be 'luminance' or 'histogram', got {method!r}.")
