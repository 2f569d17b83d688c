"""Defaults for a run, in one frozen dataclass.

Override a field with ``dataclasses.replace(nst.Config(), steps=50)`` or with keywords to
:func:`nst_lib.transfer`.  Everything a result depends on is a field here, so a
:class:`Config` is also the key of a result cache.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, fields, replace

from .vgg import check_layers

MIN_COARSE = 64  # px, longest side of the coarsest level of coarse-to-fine

STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")  # CVPR 2016, eq. 5, Fig. 3
CONTENT_LAYERS = ("conv4_2",)  # CVPR 2016, Fig. 3


def quick_mode() -> bool:
    """True when ``NST_QUICK`` is set to a non-empty value other than ``0``.

    The test configuration sets it so that the notebooks run with small images and few
    steps; the code path is the same, only the numbers change.
    """
    return os.environ.get("NST_QUICK", "") not in ("", "0")


@dataclass(frozen=True)
class Config:
    """Everything that decides the outcome of a run."""

    # layers (paper names) and their weights
    # one name or "conv1_1,conv2_1" counts as a list of names (see __post_init__)
    content_layers: tuple[str, ...] = CONTENT_LAYERS  # matched by eq. 1
    style_layers: tuple[str, ...] = STYLE_LAYERS  # matched by eq. 4-5
    # the next two are > 0 (blend: >= 0, not all 0) and divided by their sum if it is not 1
    style_weights: tuple[float, ...] | None = None  # w_l of eq. 5; None = 1/len(style_layers)
    style_blend: tuple[float, ...] | None = None  # weights of several style images; None = equal
    # eq. 7: alpha * L_content + beta * L_style. Only the ratio alpha/beta matters: 5e-4 is
    # the paper's value for Fig. 3 E and F (its Fig. 3 uses 5e-4 ... 5e-3, Fig. 4 1e-4 ... 1e-1)
    alpha: float = 1.0
    beta: float = 2e3
    # alpha/beta per position: eq. 1 divided by M_l (the positions of the content layer), so
    # that the same alpha/beta gives the same balance at every image size and the paper's
    # values give the paper's progression (notebook 5 derives it). False = eq. 1 as printed.
    per_position: bool = True
    # images
    size: int | None = 256  # longest side of the result in pixels; None = content's size
    style_size: int | None = None  # longest side of the style image; None = same as size
    # optimisation
    optimizer: str = "lbfgs"  # "lbfgs" (paper) or "adam"
    lr: float | None = None  # None = 1.0 for L-BFGS, 0.02 for Adam
    # loss evaluations per scale: one number for every scale, or one per scale, coarsest
    # first; the default spends most at the coarse scales, which cost 1/16 and 1/4 of a
    # full-size evaluation (benchmarks/)
    steps: int | tuple[int, ...] = (100, 50, 20)
    init: str = "content"  # "noise" (paper), "content" or "style"
    seed: int = 0
    scales: int = 3  # coarse-to-fine levels, each half the next; coarsest >= 64 px (not in paper)
    tol: float = 0.0  # stop when the loss improves by less than tol (relative) over 20 steps
    time_limit: float | None = None  # seconds, for the whole run
    # network
    # "caffe-normalized" (the paper's network: Caffe VGG19, each filter's mean response 1),
    # "caffe" (as trained), "torchvision", "random" or a path
    weights: str = "caffe-normalized"
    pooling: str = "avg"  # "avg" (paper) or "max" (VGG as trained)
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    # what VGG19's layers compute in: "auto" = bfloat16 where the CPU or GPU has it natively
    # (about 1.9x faster, same errors: benchmarks/), else float32; "float32", "bfloat16", "float16"
    precision: str = "auto"

    def __post_init__(self) -> None:
        """Check the layers and weights as soon as they are set, and store them as tuples.

        ``style_layers="conv1_1"`` means the layer conv1_1 (not the letters c, o, n ...).
        Unknown or repeated layer names are refused. ``style_weights`` and ``style_blend``
        only weigh the layers (the style images) against each other, so when they do not
        sum to 1 they are divided by their sum, with a warning: beta alone sets how much
        the style counts.
        """
        set_field = object.__setattr__  # the dataclass is frozen
        if isinstance(self.steps, list):
            set_field(self, "steps", tuple(self.steps))
        set_field(self, "content_layers", layer_names(self.content_layers, "content_layers"))
        set_field(self, "style_layers", layer_names(self.style_layers, "style_layers"))
        if self.style_weights is not None:
            set_field(self, "style_weights", _shares(self.style_weights, "style_weights",
                                                     zero=False))
        if self.style_blend is not None:
            set_field(self, "style_blend", _shares(self.style_blend, "style_blend", zero=True))

    @property
    def ratio(self) -> float:
        """alpha/beta, the paper's knob.

        CVPR 2016 uses 1e-3, 8e-4, 5e-3 and 5e-4 (one value per painting, Fig. 3), 1e-4 ...
        1e-1 (Fig. 4), 1e-3 (Fig. 5 and 6) and 1e-2 (Fig. 7), all for its rescaled network.
        """
        return self.alpha / self.beta if self.beta else float("inf")

    def layer_weights(self) -> dict[str, float]:
        """The style layers and their weights w_l as a mapping (eq. 5)."""
        if self.style_weights is None:
            return {name: 1.0 / len(self.style_layers) for name in self.style_layers}
        if len(self.style_weights) != len(self.style_layers):
            raise ValueError(
                f"style_weights has {len(self.style_weights)} entries but style_layers has "
                f"{len(self.style_layers)}; give one weight per style layer."
            )
        return dict(zip(self.style_layers, self.style_weights))


def layer_names(names, field: str = "layers") -> tuple[str, ...]:
    """Layer names as a tuple: a list or tuple of names, one name ("conv4_2") or names
    separated by commas ("conv1_1, conv2_1"); unknown or repeated names are refused."""
    if not isinstance(names, str):
        given = names
        try:
            names = tuple(names)
        except TypeError:  # not a list of any kind, e.g. a number
            names = (names,)
        if not all(isinstance(name, str) for name in names):
            raise ValueError(f"{field} must be layer names such as ('conv1_1', 'conv2_1'), "
                             f"got {given!r}.")
    try:
        names = check_layers(names)
    except ValueError as err:
        raise ValueError(f"{field}: {err}") from None
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{field} names {', '.join(repeated)} more than once; give each "
                         "layer once.")
    return names


def _shares(weights, field: str, *, zero: bool) -> tuple[float, ...]:
    """``weights`` as floats that sum to 1 (divided by their sum, with a warning, if they
    do not); negative, infinite or all-zero weights (and zeros, unless ``zero``) are refused."""
    try:
        values = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a list of numbers, got {weights!r}.") from None
    allowed = "finite and >= 0" if zero else "positive and finite"
    if not all(math.isfinite(w) and (w > 0 or zero and w == 0) for w in values):
        advice = "" if zero else "; leave a layer out of style_layers instead of weighing it 0"
        raise ValueError(f"{field} must be {allowed}, got {weights!r}{advice}.")
    total = sum(values)
    if total == 0:
        raise ValueError(f"{field} cannot all be 0, got {weights!r}.")
    if abs(total - 1) > 1e-6:
        values = tuple(w / total for w in values)
        warnings.warn(f"{field} {weights!r} sum to {total:g}; divided them by their sum, to "
                      f"({', '.join(f'{w:.3g}' for w in values)}): only their ratios matter "
                      "(beta sets how much the style counts).", stacklevel=4)
    return values


def require_layers(config: Config, *, content: bool, style: bool) -> None:
    """Refuse an empty list of layers for an image that is given: it would be ignored."""
    if style and not config.style_layers:
        raise ValueError("style_layers is empty, so the style image would be ignored; name at "
                         "least one layer, e.g. style_layers=('conv1_1', 'conv2_1'), or give "
                         "no style image.")
    if content and not config.content_layers:
        raise ValueError("content_layers is empty, so the content image would be ignored; name "
                         "a layer, e.g. content_layers=('conv4_2',), or give no content image "
                         "(alpha=0 keeps its size and start without matching it).")


def split_settings(config: Config | None, kwargs: dict) -> tuple[Config, dict]:
    """``config`` with the Config fields among ``kwargs`` applied, and the other keywords
    (e.g. ``model`` or ``progress``), for functions that take both as keywords."""
    names = {f.name for f in fields(Config)}
    settings = {k: v for k, v in kwargs.items() if k in names}
    others = {k: v for k, v in kwargs.items() if k not in names}
    return replace(config or Config(), **settings), others


def _as_tuple(steps) -> tuple:
    return tuple(steps) if isinstance(steps, (tuple, list)) else (steps,)


def steps_per_scale(config: Config, levels: int) -> tuple[int, ...]:
    """Loss evaluations at each of ``levels`` scales, coarsest first: ``config.steps`` at
    every scale, or the last ``levels`` of its numbers when it gives one per scale (fewer
    scales, or a small image, skip the coarsest, not the finest)."""
    if isinstance(config.steps, int):
        return (config.steps,) * levels
    return tuple(config.steps)[-levels:]


def scale_levels(longest_side: int, scales: int) -> int:
    """How many coarse-to-fine levels a run of this size uses: at most ``scales``, and no
    level whose longest side is below MIN_COARSE px (tiny levels lose the content's layout)."""
    return max(1, min(scales, 1 + int(math.log2(max(longest_side, 1) / MIN_COARSE))))
