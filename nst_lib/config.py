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
from typing import Callable, NamedTuple

import torch

from .layers import check_layers

MIN_COARSE = 64  # px, longest side of the coarsest level of coarse-to-fine

STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")  # CVPR 2016, eq. 5, Fig. 3
CONTENT_LAYERS = ("conv4_2",)  # CVPR 2016, Fig. 3


POOLINGS = ("avg", "max")  # average pooling (the paper) or max pooling (VGG as trained)
# the start image: white noise (the paper), an input, or the content image in the style
# images' palette (their mean colour and colour covariance: nst_lib.image.match_color)
INITS = ("noise", "content", "style", "palette")
# what VGG19's layers compute in ("auto": see nst_lib.vgg.resolve_precision)
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


class Optimizer(NamedTuple):
    """One of :data:`OPTIMIZERS`: how to make it for the image and its default step size."""

    make: Callable[[list[torch.Tensor], float, int], torch.optim.Optimizer]  # (params, lr, evals)
    lr: float


def _lbfgs(params: list[torch.Tensor], lr: float, evaluations: int) -> torch.optim.Optimizer:
    # the strong Wolfe line search keeps L-BFGS stable at large beta (without it the quartic
    # style loss makes plain L-BFGS overshoot to inf at alpha/beta = 1e-4); the tolerances
    # are 0 so that it runs its whole budget of evaluations
    return torch.optim.LBFGS(params, lr=lr, max_iter=evaluations, max_eval=evaluations,
                             history_size=100, tolerance_grad=0.0, tolerance_change=0.0,
                             line_search_fn="strong_wolfe")


OPTIMIZERS = {
    "lbfgs": Optimizer(_lbfgs, 1.0),  # the paper's
    "adam": Optimizer(lambda params, lr, evaluations: torch.optim.Adam(params, lr=lr), 0.02),
}


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
    # eq. 7: alpha * L_content + beta * L_style. Only the ratio alpha/beta matters. The
    # default, 2e-4 (per position, below), lies within the paper's range (Fig. 4: 1e-4 ...
    # 1e-1); it is chosen by measurement (benchmarks/paintings.py): in this unit the paper's
    # Fig. 3 values (5e-4 ... 5e-3) paint less of the painting than the paper's figure shows
    alpha: float = 1.0
    beta: float = 5e3
    # alpha/beta per position: eq. 1 divided by M_l (the positions of the content layer), so
    # that the same alpha/beta gives the same balance at every image size and the paper's
    # values give the paper's progression (notebook 5 derives it). False = eq. 1 as printed.
    per_position: bool = True
    # images
    size: int | None = 256  # longest side of the result in pixels; None = content's size
    style_size: int | None = None  # longest side of the style image; None = same as size
    # optimisation
    optimizer: str = "lbfgs"  # a name in OPTIMIZERS: "lbfgs" (paper) or "adam"
    lr: float | None = None  # None = the optimizer's own (OPTIMIZERS): 1.0 L-BFGS, 0.02 Adam
    # loss evaluations per scale: one number for every scale, or one per scale, coarsest
    # first; the default spends most at the coarse scales, which cost 1/16 and 1/4 of a
    # full-size evaluation (benchmarks/)
    steps: int | tuple[int, ...] = (100, 60, 30)
    # one of INITS: "noise" (paper), "content", "style" or "palette" (the photo in the
    # painting's colours: the style loss then has the strokes to paint, not the palette).
    # The start's colours stay where little style is asked for (alpha/beta near 1e-1): to
    # see the photo come back as the paper's Fig. 4 does, start from "content" or "noise"
    init: str = "palette"
    seed: int = 0
    scales: int = 3  # coarse-to-fine levels, each half the next; coarsest >= 64 px (not in paper)
    tol: float = 0.0  # stop when the loss improves by less than tol (relative) over 20 steps
    time_limit: float | None = None  # seconds, for the whole run
    # network
    # a name in nst_lib.vgg.WEIGHTS ("caffe-normalized": the paper's network, Caffe's VGG19
    # with each filter's mean response 1) or the path of a state dict file
    weights: str = "caffe-normalized"
    pooling: str = "avg"  # one of POOLINGS: "avg" (paper) or "max" (VGG as trained)
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    # one of PRECISIONS, what VGG19's layers compute in: "auto" = bfloat16 where the CPU or
    # GPU has it natively (about 1.9x faster, same errors: benchmarks/), else float32
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
        for ok, message in _rules(self):
            if not ok:
                raise ValueError(message + ".")

    @property
    def ratio(self) -> float:
        """alpha/beta, the paper's knob.

        CVPR 2016 uses 1e-3, 8e-4, 5e-3 and 5e-4 (one value per painting, Fig. 3), 1e-4 ...
        1e-1 (Fig. 4), 1e-3 (Fig. 5 and 6) and 1e-2 (Fig. 7), all for its rescaled network.
        """
        return self.alpha / self.beta if self.beta else float("inf")

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimizer's own when it is None."""
        return self.lr if self.lr is not None else OPTIMIZERS[self.optimizer].lr

    def layer_weights(self) -> dict[str, float]:
        """The style layers and their weights w_l as a mapping (eq. 5)."""
        if self.style_weights is None:
            return {name: 1.0 / len(self.style_layers) for name in self.style_layers}
        return dict(zip(self.style_layers, self.style_weights))


def _whole(value, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < 2**63


def _number(value, low: float = 0.0) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= low)


def _device(name) -> bool:
    """True if ``name`` is "auto" or names a kind of device (available here or not)."""
    try:
        return name == "auto" or bool(torch.device(name))
    except (RuntimeError, TypeError):
        return False


def _choice(config: Config, name: str, choices) -> tuple[bool, str]:
    value = getattr(config, name)
    return value in choices, f"{name} must be one of {', '.join(choices)}, got {value!r}"


def _rules(c: Config) -> list[tuple[bool, str]]:
    """Every rule a Config must keep: (kept, what to say when it is not)."""
    steps = c.steps if isinstance(c.steps, tuple) else (c.steps,)
    return [
        _choice(c, "optimizer", OPTIMIZERS), _choice(c, "init", INITS),
        _choice(c, "pooling", POOLINGS), _choice(c, "precision", PRECISIONS),
        (all(_whole(n) for n in steps), f"steps must be at least 1, got {c.steps} (a whole "
         "number, or one per scale)"),
        (_whole(c.scales), f"scales must be at least 1, got {c.scales!r} (a whole number)"),
        (isinstance(c.steps, int) or len(steps) >= c.scales if _whole(c.scales) else True,
         f"steps gives {len(steps)} numbers for {c.scales} scales; give one per scale, "
         "coarsest first"),
        (c.size is None or _whole(c.size), f"size must be a positive number of pixels, got {c.size}"),
        (c.style_size is None or _whole(c.style_size),
         f"style_size must be a positive number of pixels, got {c.style_size}"),
        (_whole(c.seed, 0), f"seed must be a whole number from 0 to 2**63 - 1, got {c.seed!r}"),
        (_number(c.alpha), f"alpha must be finite and >= 0, got {c.alpha!r}"),
        (_number(c.beta), f"beta must be finite and >= 0, got {c.beta!r}"),
        (not (_number(c.alpha) and _number(c.beta)) or c.alpha > 0 or c.beta > 0,
         "alpha and beta cannot both be 0"),
        (c.style_weights is None or len(c.style_weights) == len(c.style_layers),
         f"style_weights has {len(c.style_weights or ())} entries for {len(c.style_layers)} "
         "style_layers; give one weight per style layer"),
        (c.lr is None or (_number(c.lr) and c.lr > 0), f"lr must be positive and finite, got {c.lr!r}"),
        (_number(c.tol), f"tol must be >= 0, got {c.tol!r}"),
        (c.time_limit is None or _number(c.time_limit),
         f"time_limit must be >= 0 seconds, got {c.time_limit!r}"),
        (isinstance(c.per_position, bool), f"per_position must be True or False, got {c.per_position!r}"),
        (isinstance(c.weights, (str, os.PathLike)) and str(c.weights) != "",
         f"weights must be a name or a file path, got {c.weights!r}"),
        (_device(c.device), f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {c.device!r}"),
    ]


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


def parse_steps(text: str) -> int | tuple[int, ...]:
    """How ``steps`` is written by hand: "50" -> 50 at every scale; "100,40,15" -> one
    number per scale, coarsest first. ValueError for anything else."""
    try:
        numbers = tuple(int(n) for n in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not a number of evaluations; give e.g. 50 or "
                         "100,40,15 (one per scale, coarsest first)") from None
    return numbers[0] if len(numbers) == 1 else numbers


def steps_text(steps: int | tuple[int, ...]) -> str:
    """``steps`` as :func:`parse_steps` reads it."""
    return ",".join(map(str, steps)) if isinstance(steps, (tuple, list)) else str(steps)


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
