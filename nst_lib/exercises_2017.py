"""The optional exercises of notebook 4 (:mod:`nst_lib.exercises`), from Gatys et al. 2017,
*Controlling Perceptual Factors in Neural Style Transfer*: luminance-only transfer and two
styles in two regions (:func:`two_styles`)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from .color import combine_luminance, luminance, rgb_to_yiq, yiq_to_rgb
from .config import Config
from .exercises_01_03 import _optimise
from .exercises_core import _DETACHED, _POSITIONS, Case, Exercise, _features, _first_match
from .losses import content_loss, gram_matrix

# ------------------------------------------ 04, optional: luminance-only transfer (2017)

def _luminance_cases() -> list[Case]:
    pure = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]],  # red ... white
                        dtype=torch.float64).T.reshape(1, 3, 2, 2)
    noise = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(40),
                       dtype=torch.float64)
    return [((pure,), {}), ((noise,), {})]


_LUMA_WEIGHTS = {"mean": (1 / 3, 1 / 3, 1 / 3), "bgr": (0.114, 0.587, 0.299),
                 "rec709": (0.2126, 0.7152, 0.0722)}

_LUMINANCE_MISTAKES = {
    "one_channel": "Repeat Y in all three channels, shape (1, 3, H, W): VGG19 takes RGB "
                   "images, and a grey RGB pixel is (Y, Y, Y).",
    "mean": "Not the plain mean of R, G and B: Y = 0.299 R + 0.587 G + 0.114 B weighs green "
            "most, as the eye does.",
    "bgr": "The channels are R, G, B in that order: Y = 0.299 R + 0.587 G + 0.114 B.",
    "rec709": "Those are the Rec. 709 (HDTV) weights; nst.color uses YIQ's Y = 0.299 R + "
              "0.587 G + 0.114 B.",
}


def _luminance_diagnose(got, expected, case) -> str | None:
    (image,) = case[0]
    if got.shape != expected.shape and got.numel() == image[0, 0].numel():
        return _LUMINANCE_MISTAKES["one_channel"]
    guesses = {key: sum(w * image[:, i] for i, w in enumerate(weights)).unsqueeze(1)
               .expand_as(image) for key, weights in _LUMA_WEIGHTS.items()}
    return _first_match(got, guesses, _LUMINANCE_MISTAKES)


_EX_LUMINANCE = Exercise(
    "luminance", "Y = 0.299 R + 0.587 G + 0.114 B (the Y of YIQ), repeated in three channels: "
    "(1, 3, H, W) -> (1, 3, H, W).", luminance, cases=_luminance_cases,
    diagnose=_luminance_diagnose, mistakes=_LUMINANCE_MISTAKES, library="nst.color.luminance")


def _combine_cases() -> list[Case]:
    g = torch.Generator().manual_seed(50)
    cases = []
    for h, w in ((4, 6), (5, 3)):
        grey = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64).expand(1, 3, h, w)
        photo = torch.rand(1, 3, h, w, generator=g, dtype=torch.float64)
        cases.append(((grey.clone(), photo), {}))  # the photo's colours leave [0, 1]
    return cases


_COMBINE_MISTAKES = {
    "photo_luminance": "That is the photo again: take Y from the stylised grey image, and only "
                       "I and Q from the photo.",
    "swapped": "That is the photo's luminance: Y comes from the stylised grey image (its "
               "strokes), I and Q from the photo (its colours).",
    "grey_only": "That is the grey image unchanged: put the photo's colour channels I and Q "
                 "back.",
    "not_clamped": "Clamp the result to [0, 1]: a new Y with the photo's I and Q can leave the "
                   "range of RGB.",
}


def _combine_diagnose(got, expected, case) -> str | None:
    grey, photo = case[0]
    yiq = torch.cat([grey.mean(dim=1, keepdim=True), rgb_to_yiq(photo)[:, 1:]], dim=1)
    guesses = {"photo_luminance": photo, "swapped": luminance(photo), "grey_only": grey,
               "not_clamped": yiq_to_rgb(yiq)}
    return _first_match(got, guesses, _COMBINE_MISTAKES)


_EX_COMBINE_LUMINANCE = Exercise(
    "combine_luminance", "convert the photo to YIQ (nst.color.rgb_to_yiq), replace its Y by the "
    "grey image's (the mean of its channels), convert back (nst.color.yiq_to_rgb) and clamp "
    "to [0, 1].", combine_luminance, cases=_combine_cases, diagnose=_combine_diagnose,
    mistakes=_COMBINE_MISTAKES, library="nst.color.combine_luminance")


# ------------------------------------------------ 04, optional: two styles in two regions

def _masked_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The Gram matrix of one region (Gatys et al. 2017, spatial control): eq. 3 of the
    features multiplied by ``mask`` (1, 1, H0, W0) in [0, 1], averaged down to the layer's
    H x W. (1, N, H, W) -> (N, N)."""
    return gram_matrix(features * F.interpolate(mask, size=features.shape[-2:], mode="area"))


def _mask_cases() -> list[Case]:
    g = torch.Generator().manual_seed(60)
    cases = []
    # masks made of k x k blocks, so that any way of shrinking them gives the same mask
    for s, (n, h, w, k) in enumerate([(4, 3, 5, 4), (6, 4, 4, 2), (3, 6, 2, 1)]):
        blocks = (torch.rand(1, 1, h, w, generator=g) < 0.5).double()
        blocks[..., 0, 0], blocks[..., -1, -1] = 1.0, 0.0  # both regions are there
        mask = blocks.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
        cases.append(((_features(1, n, h, w, seed=70 + s), mask), {}))
    return cases


_MASK_MISTAKES = {
    "not_resized": "Shrink the mask to the layer's H x W first: F.interpolate(mask, "
                   "size=features.shape[-2:], mode=\"area\"); each pool halves the maps.",
    "no_mask": "That is the Gram matrix of the whole image: multiply the features by the "
               "(shrunk) mask before eq. 3, so that only the region's positions count.",
    "inverted": "That is the other region: the mask is 1 where this style goes; multiply by "
                "the mask, not by 1 - mask.",
    "normalised": "Keep eq. 3 a plain sum: do not divide by the number of positions.",
    "positions": _POSITIONS,
    "detached": _DETACHED,
}


def _mask_diagnose(got, expected, case) -> str | None:
    f, mask = case[0]
    m = F.interpolate(mask, size=f.shape[-2:], mode="area")
    if got.shape == (m.numel(), m.numel()):
        return _MASK_MISTAKES["positions"]
    guesses = {"no_mask": gram_matrix(f), "inverted": gram_matrix(f * (1 - m)),
               "normalised": expected / m.sum()}
    return (_first_match(got, guesses, _MASK_MISTAKES)
            or _first_match(got, {"normalised": expected / m.numel()}, _MASK_MISTAKES))


_EX_MASKED_GRAM = Exercise(
    "masked_gram", "shrink the mask (1, 1, H0, W0) to the layer's H x W (F.interpolate(..., "
    "mode=\"area\")), multiply the features by it, then eq. 3 (nst.gram_matrix).", _masked_gram,
    cases=_mask_cases, diagnose=_mask_diagnose, mistakes=_MASK_MISTAKES,
    errors=(("must match the size of tensor", "not_resized"),), differentiable=True,
    library="masked Gram matrix")


class _Total(NamedTuple):
    total: torch.Tensor  # alpha * content + beta * style (eq. 7)


class _TwoStyles:
    """Eq. 7 with two styles, each matched in its own region (Gatys et al. 2017).

    The regions are ``mask`` (for ``styles[0]``) and ``1 - mask``. Region r's term on layer
    l is E = 1/(4 N^2 M_r^2) sum_ij (G^r_ij - A^r_ij)^2, with G^r = masked_gram(F, mask_r),
    M_r = M * mean(mask_r) the positions in the region, and A^r the style's Gram matrix per
    position times M_r: a region's E is on the scale of a whole image's. The content term
    is eq. 1 per position of its layer, as in :class:`nst_lib.Config`.
    """

    def __init__(self, model, config: Config, content, styles, mask, masked_gram):
        self.weights, self.masked_gram = config.layer_weights(), masked_gram
        self.masks = (mask, 1 - mask)
        self.layers = tuple(dict.fromkeys(config.content_layers + tuple(self.weights)))
        with torch.no_grad():
            self.content = model(content, config.content_layers)
            self.grams = [{name: gram_matrix(f) / (f.shape[-2] * f.shape[-1])
                           for name, f in model(s, tuple(self.weights)).items()}
                          for s in styles]

    def losses(self, model, x, alpha: float, beta: float) -> _Total:
        feats = model(x, self.layers)
        content = sum(content_loss(feats[name], p) / (p.shape[-2] * p.shape[-1])
                      for name, p in self.content.items())
        style = 0.0
        for name, w in self.weights.items():
            f = feats[name]
            n, m = f.shape[1], f.shape[-2] * f.shape[-1]
            for mask, grams in zip(self.masks, self.grams):
                m_r = m * float(mask.mean())
                g = self.masked_gram(f, mask)
                style = style + w * (g - grams[name] * m_r).pow(2).sum() / (4 * n**2 * m_r**2)
        return _Total(alpha * content + beta * style)


def two_styles(content: torch.Tensor, styles, mask: torch.Tensor, masked_gram: Callable, *,
               model, steps: int, config: Config | None = None):
    """Style transfer with ``styles[0]`` where ``mask`` is 1 and ``styles[1]`` where it is 0.

    ``content``, ``styles``: RGB (1, 3, H, W) in [0, 1]; ``mask``: (1, 1, H, W) at the
    content's size. ``masked_gram(features, mask)`` is the Gram matrix of one region (the
    exercise). ``config``'s layers, w_l and alpha/beta are used (default ``nst.Config()``);
    one scale of ``steps`` L-BFGS iterations from the content image. Returns the image
    (on the CPU, clamped to [0, 1]) and the losses of every evaluation.
    """
    config = config or Config()
    if not 0 < float(mask.mean()) < 1:
        raise ValueError("The mask must mark two regions: some of it 1, some of it 0.")
    device = next(model.parameters()).device
    content, mask = content.to(device), mask.to(device)
    targets = _TwoStyles(model, config, content, [s.to(device) for s in styles], mask,
                         masked_gram)
    image, losses = _optimise(model, targets, content, steps, alpha=config.alpha,
                              beta=config.beta)
    return image.clamp(0, 1).cpu(), losses
