"""One optimisation loop for content reconstruction, style reconstruction and transfer.

The image is the only thing optimised; VGG19 is fixed. The targets (the content image's
features P^l, the style image's Gram matrices A^l) are computed once per run and scale.
The loop reports every loss evaluation to a callback and draws nothing itself.

Departures from the paper, each a :class:`~nst_lib.config.Config` field you can set back:
- ``init="palette"`` by default (the paper starts from white noise, ``init="noise"``): the
  photo with the painting's mean colour and colour covariance (:func:`_initial`). The
  paper's Fig. 6 shows the start changes little after its long runs; in a few hundred
  evaluations a start from the photo keeps the photo's palette, and one from noise keeps
  the noise's grain, where this start lets the style loss spend them on the strokes.
- ``scales=3`` (coarse-to-fine: optimise at 1/4 and 1/2 size first, upsample, refine) is a
  speed lever the paper does not use: the coarse scales cost 1/16 and 1/4 of a full-size
  evaluation and lay out the large brush strokes, so fewer full-size evaluations are
  needed. Going up a scale puts back half of the photo's fine detail, which the coarser
  image could not hold (:func:`_upsampled`). ``scales=1`` is the paper's single-scale
  optimisation.
- ``per_position=True``: alpha/beta is read per position of the content layer
  (:meth:`Targets.losses`), so that it means the same at every image size.
- ``precision="auto"``: VGG19 computes in bfloat16 where the hardware has it; the losses
  are computed in float32 as written.
- ``tol`` (stop when the loss stops improving) is off by default.

Before any image is decoded or resized, :func:`check_cost` estimates the run's memory and
refuses one that cannot fit (:mod:`nst_lib.cost`).
"""

from __future__ import annotations

import enum
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple, Union

import torch
import torch.nn.functional as F

from . import image as img
from .config import OPTIMIZERS, Config, require_layers, scale_levels, steps_per_scale
from .cost import Cost, check_fits, keep_freed_memory, return_freed_memory
from .layers import check_layers
from .losses import LossFunctions
from .vgg import VGG19, resolve_device, resolve_precision, vgg19

ImageLike = Union[torch.Tensor, str, os.PathLike]  # a tensor (1, 3, H, W) or a file path


class Stop(enum.StrEnum):
    """Why a run ended: :attr:`Result.stop_reason`."""

    STEPS = "steps"  # it made every evaluation of its budget
    CONVERGED = "converged"  # the loss improved by less than config.tol over 20 evaluations
    TIME = "time"  # config.time_limit passed
    STOPPED = "stopped"  # the stop event was set (the Explorer's Stop button)
    INTERRUPTED = "interrupted"  # Ctrl-C, or the notebook's stop button
    DIVERGED = "diverged"  # the loss became infinite or NaN

    @property
    def complete(self) -> bool:
        """True when the run ended by its own settings (such a result may be cached)."""
        return self in (Stop.STEPS, Stop.CONVERGED, Stop.TIME)


@dataclass
class Step:
    """What the callback gets after each loss evaluation."""

    step: int  # evaluations so far, over all scales
    loss: float  # alpha * content + beta * style
    content: float  # L_content (eq. 1), summed over content layers
    style: float  # L_style (eq. 5)
    layers: dict[str, float]  # per-layer terms: "conv4_2" -> L_content, "conv1_1" -> E_l
    seconds: float  # since the run started
    scale: int  # 0 = coarsest
    image: torch.Tensor | None = None  # (1, 3, H, W) every `image_every` steps, else None

    def record(self) -> dict:
        """The numbers only, for the history."""
        return {k: v for k, v in self.__dict__.items() if k != "image"}


@dataclass
class Result:
    """The image a run produced, its loss history and why it stopped."""

    image: torch.Tensor  # (1, 3, H, W) on the CPU, clamped to [0, 1]
    history: list[dict] = field(default_factory=list)
    stop_reason: Stop = Stop.STEPS
    seconds: float = 0.0
    config: Config | None = None

    def __post_init__(self) -> None:
        self.stop_reason = Stop(self.stop_reason)  # also from its name, e.g. read from a file

    @property
    def interrupted(self) -> bool:
        return self.stop_reason in (Stop.INTERRUPTED, Stop.STOPPED)

    def pil(self):
        return img.to_pil(self.image)

    def save(self, path) -> "os.PathLike":
        return img.save_image(self.image, path)


class Targets:
    """The fixed targets of one scale: content features P^l and style Gram matrices A^l.

    ``style`` is one image or a list of them; with several, A^l is their weighted sum with
    weights ``config.style_blend`` (equal by default), and the result blends the styles.
    A^l is kept per position (A / M_style) and rescaled to the generated image's M in
    :meth:`losses`, so style and result may differ in size; when the sizes agree this is
    exactly eq. 4 (the paper uses equal sizes).
    """

    def __init__(self, model: VGG19, config: Config, content=None, style=None, *,
                 functions: LossFunctions = LossFunctions()):
        self.functions = functions
        styles = img.as_list(style)
        self.content_layers = check_layers(config.content_layers) if content is not None else ()
        self.per_position = config.per_position
        self.dtype = resolve_precision(config.precision, next(model.parameters()).device)
        self.style_weights = config.layer_weights() if styles else {}
        self.layers = tuple(dict.fromkeys(self.content_layers + tuple(self.style_weights)))
        if not self.layers:
            raise ValueError("Nothing to optimise: give a content image, a style image or both.")
        blend = config.style_blend or (1.0 / max(1, len(styles)),) * len(styles)
        if len(blend) != len(styles):
            raise ValueError(f"style_blend has {len(blend)} weights for {len(styles)} style "
                             "images; give one weight per style image.")
        with torch.no_grad():
            self.content = model(content, self.content_layers, dtype=self.dtype) if content is not None else {}
            self.grams = {}  # layer -> A^l / M_style, (N, N)
            for w, image in zip(blend, styles):
                for name, f in model(image, tuple(self.style_weights), dtype=self.dtype).items():
                    per_position = functions.gram_matrix(f) / (f.shape[-2] * f.shape[-1])
                    self.grams[name] = self.grams.get(name, 0) + w * per_position

    def losses(self, model: VGG19, x: torch.Tensor, alpha: float, beta: float) -> "Losses":
        """Total loss of image ``x`` and the per-layer terms, in one forward pass.

        With ``config.per_position`` (the default) each content term is eq. 1 divided by
        M_l, the number of positions of its layer: the one factor that makes alpha/beta
        independent of the image size (notebook 5). Otherwise eq. 1 as printed.
        """
        feats = model(x, self.layers, dtype=self.dtype)
        layers = {}
        content = style = x.new_zeros(())
        for name in self.content_layers:
            term = self.functions.content_loss(feats[name], self.content[name])
            if self.per_position:
                term = term / (feats[name].shape[-2] * feats[name].shape[-1])  # / M_l
            layers[name] = term
            content = content + term
        for name, w in self.style_weights.items():
            m = feats[name].shape[-2] * feats[name].shape[-1]  # M_l of the generated image
            term = self.functions.style_layer_loss(feats[name], self.grams[name] * m)
            layers[name] = layers.get(name, 0) + term
            style = style + w * term
        alpha = alpha if self.content_layers else 0.0
        beta = beta if self.style_weights else 0.0
        total = self.functions.total_loss(content, style, alpha=alpha, beta=beta)
        return Losses(total, content, style, layers)


class Losses(NamedTuple):
    """What :meth:`Targets.losses` returns: 0-d tensors, and one per layer."""

    total: torch.Tensor  # alpha * content + beta * style (eq. 7)
    content: torch.Tensor  # L_content, per position unless config.per_position is False
    style: torch.Tensor  # L_style (eq. 5)
    layers: dict[str, torch.Tensor]  # "conv4_2" -> its content term, "conv1_1" -> E_l


def transfer(
    content: ImageLike | None = None,
    style: ImageLike | list[ImageLike] | None = None,
    config: Config | None = None,
    *,
    model: VGG19 | None = None,
    callback: Callable[[Step], None] | None = None,
    image_every: int = 10,
    progress: bool = True,
    stop: threading.Event | None = None,
    functions: LossFunctions = LossFunctions(),
    **overrides,
) -> Result:
    """Optimise an image so its VGG19 features match ``content`` and its Gram matrices ``style``.

    Both images: style transfer (eq. 7); only ``content``: content reconstruction (eq. 1);
    only ``style``: texture reconstruction (eq. 5). Images are file paths or RGB tensors
    (1, 3, H, W) in [0, 1] (:func:`nst_lib.image.as_image`); ``style`` may be a list,
    blended by ``config.style_blend``. The result has the content's aspect ratio, longest
    side ``config.size``. ``config`` and ``overrides``: the settings (``steps=100``).
    ``callback(step)`` after every loss evaluation, with ``step.image`` every
    ``image_every``; ``stop``, a threading.Event, ends the run when set; ``functions``: the
    loss functions (:class:`~nst_lib.losses.LossFunctions`), e.g. your own content loss.
    Ctrl-C ends the run cleanly: the result holds the image so far, ``stop_reason`` says why.
    """
    config = replace(config or Config(), **overrides)  # a bad setting is refused here
    check_cost(content, style, config, model)  # before any large tensor is made
    content, styles, model = _inputs(content, style, config, model)
    out = tuple((content if content is not None else styles[0]).shape[-2:])
    budget = steps_per_scale(config, scale_levels(max(out), config.scales))
    keep_freed_memory()
    run = _Run(config, Result(torch.zeros(1, 3, *out), config=config), callback, image_every,
               _progress_bar(sum(budget), progress), stop)
    try:
        with run.bar:
            _coarse_to_fine(model, content, styles, budget, run, functions)
    finally:
        return_freed_memory()
    return run.finish(out)


def _inputs(content, style, config: Config, model: VGG19 | None):
    """The images as tensors at their sizes on the model's device, and the model. The
    images come first: a bad file is reported before any weights are loaded or fetched."""
    content = img.image_from(content, config.size, what="content image")
    styles = [img.image_from(s, config.style_size or config.size, what="style image")
              for s in img.as_list(style)]
    require_layers(config, content=content is not None, style=bool(styles))
    model = model or vgg19(config.weights, pooling=config.pooling, device=config.device)
    device = next(model.parameters()).device
    content = content.to(device) if content is not None else None
    return content, [s.to(device) for s in styles], model


def _coarse_to_fine(model: VGG19, content, styles, budget: tuple[int, ...], run: "_Run",
                    functions: LossFunctions) -> None:
    """One scale after the other, each twice the size of the last, ``budget[i]``
    evaluations each, until the last scale ends or a stop condition ends the run."""
    x = previous = None
    for scale, steps in enumerate(budget):
        factor = 2 ** (len(budget) - 1 - scale)
        c = _scaled(content, factor)
        s = [_scaled(im, factor) for im in styles]
        shape = tuple((c if c is not None else s[0]).shape[-2:])
        x0 = (_initial(run.config, shape, c, s, next(model.parameters()).device) if x is None
              else _upsampled(x, shape, previous, c if run.config.alpha > 0 else None))
        targets = Targets(model, run.config, c, s, functions=functions)
        x = _optimise_scale(x0, model, targets, run.begin(scale, steps))
        if run.result.stop_reason != Stop.STEPS:
            return
        previous = c


def _scaled(image: torch.Tensor | None, factor: int) -> torch.Tensor | None:
    """``image`` at 1/``factor`` of its size (coarse-to-fine), at least MIN_SIDE px a side."""
    if image is None or factor == 1:
        return image
    return img.resize(image, tuple(max(img.MIN_SIDE, round(d / factor)) for d in image.shape[-2:]))


def _initial(config: Config, shape, content, styles, device) -> torch.Tensor:
    """The first scale's start image: white noise in [0, 1] (seeded), an input resized, or
    (``"palette"``) the content image in the style images' palette: their mean colour and
    colour covariance given to the photo by :func:`~nst_lib.image.match_color`."""
    if config.init == "noise":
        g = torch.Generator().manual_seed(config.seed)
        return torch.rand(1, 3, *shape, generator=g).to(device)
    source = styles[0] if config.init == "style" and styles else content
    if source is None:
        needed = "style" if config.init == "style" else "content"
        raise ValueError(f"init={config.init!r} needs a {needed} image.")
    start = img.resize(source, shape).clone()
    if config.init == "palette" and styles:
        start = img.match_color(start, styles, weights=config.style_blend).clamp(0, 1)
    return start


def _upsampled(x: torch.Tensor, shape, coarse: torch.Tensor | None,
               fine: torch.Tensor | None) -> torch.Tensor:
    """The start of the next, finer scale from the result ``x`` of a coarser one.

    Upsampling ``x`` alone would blur away the photo's fine detail, and the first, most
    expensive evaluations at the finer scale would be spent restoring it. With the content
    image at both scales (``coarse`` and ``fine``), the start is the upsampled ``x`` plus
    the detail upsampling loses, ``DETAIL * (fine - up(coarse))``; with ``DETAIL = 1`` that
    is the fine content plus the upsampled change the coarser scale made to it.
    """
    def up(image):
        return F.interpolate(image, size=tuple(shape), mode="bilinear", align_corners=False)

    if coarse is None or fine is None:
        return up(x)
    return (up(x) + DETAIL * (fine - up(coarse))).clamp(0, 1)


# how much of the photo's fine detail a finer scale starts with: 1 keeps the photo's
# textures over the painting's, 0 leaves the finer scale a blurred start (README, Speed)
DETAIL = 0.5


class _Stopped(Exception):
    """Raised from the closure to end a scale; carries the :class:`Stop` reason."""

    def __init__(self, reason: Stop):
        super().__init__(reason)
        self.reason = reason


def _converged(run: "_Run") -> bool:
    losses, tol = run.losses, run.config.tol
    return tol > 0 and len(losses) > 20 and min(losses[:-20]) - min(losses[-20:]) < tol * abs(run.best)


# checked in this order after every evaluation; the first that holds ends the run
# (STEPS only the scale, which ends the run at the last scale)
STOP_CONDITIONS: tuple[tuple[Stop, Callable[["_Run"], bool]], ...] = (
    (Stop.STOPPED, lambda run: run.stop is not None and run.stop.is_set()),
    (Stop.TIME, lambda run: run.config.time_limit is not None
     and run.seconds() > run.config.time_limit),
    (Stop.CONVERGED, _converged),
    (Stop.STEPS, lambda run: len(run.losses) >= run.steps),
)


@dataclass
class _Run:
    """What a run carries from one loss evaluation to the next, over all its scales."""

    config: Config
    result: Result
    callback: Callable[[Step], None] | None
    image_every: int
    bar: object  # a tqdm progress bar
    stop: threading.Event | None
    start: float = field(default_factory=time.perf_counter)
    best: float = math.inf  # the lowest loss of this scale
    best_image: torch.Tensor | None = None  # its image, on the model's device
    losses: list[float] = field(default_factory=list)  # this scale's
    scale: int = 0
    steps: int = 0  # this scale's budget

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def begin(self, scale: int, steps: int) -> "_Run":
        self.scale, self.steps, self.losses, self.best = scale, steps, [], math.inf
        return self

    def record(self, losses: "Losses", x: torch.Tensor) -> None:
        """After an evaluation: keep the best image, the history; report; maybe stop."""
        # one copy from the device for all the numbers
        loss, content, style, *layers = torch.stack(
            [losses.total, losses.content, losses.style, *losses.layers.values()]).tolist()
        if loss < self.best:  # the image a stopped run returns, kept on the device
            self.best, self.best_image = loss, x.detach().clamp(0, 1)
        n = len(self.result.history) + 1
        step = Step(step=n, loss=loss, content=content, style=style,
                    layers=dict(zip(losses.layers, layers)), seconds=self.seconds(),
                    scale=self.scale,
                    image=self.best_image.cpu() if n % self.image_every == 0 else None)
        self.result.history.append(step.record())
        self.losses.append(loss)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3g}", refresh=False)
        if self.callback is not None:
            self.callback(step)
        for reason, holds in STOP_CONDITIONS:
            if holds(self):
                raise _Stopped(reason)

    def finish(self, shape) -> Result:
        """The result at full size (a run stopped at a coarse scale is upsampled)."""
        if self.best_image is not None:
            self.result.image = self.best_image.cpu()
        if tuple(self.result.image.shape[-2:]) != tuple(shape):
            self.result.image = F.interpolate(self.result.image, size=tuple(shape),
                                              mode="bilinear", align_corners=False).clamp(0, 1)
        self.result.seconds = self.seconds()
        return self.result


def _optimise_scale(x0: torch.Tensor, model: VGG19, targets: Targets, run: _Run) -> torch.Tensor:
    """Optimise the image at one scale until a stop condition holds; return the best image.

    The closure computes the loss and its gradient; :meth:`_Run.record` does the rest.
    L-BFGS makes many evaluations per ``step`` call, Adam one: the loop is the same.
    """
    # contiguous: L-BFGS flattens the gradient with .view(-1)
    x = x0.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    run.best_image = x0.detach().clamp(0, 1)  # until the first evaluation
    config = run.config
    optimizer = OPTIMIZERS[config.optimizer].make([x], config.learning_rate, run.steps)

    def closure():
        optimizer.zero_grad(set_to_none=True)
        losses = targets.losses(model, x, config.alpha, config.beta)
        if not math.isfinite(losses.total.item()):
            warnings.warn(f"The loss became {losses.total.item()} at evaluation "
                          f"{len(run.result.history) + 1}; stopped and kept the last finite "
                          "image. Lower the learning rate (lr).", stacklevel=2)
            raise _Stopped(Stop.DIVERGED)
        losses.total.backward()
        run.record(losses, x)
        return losses.total

    try:
        while True:
            optimizer.step(closure)
    except _Stopped as stopped:
        run.result.stop_reason = stopped.reason
    except KeyboardInterrupt:
        run.result.stop_reason = Stop.INTERRUPTED
    return run.best_image


def check_cost(content, style, config: Config, model: VGG19 | None = None) -> Cost:
    """The memory and time a run will take (:mod:`nst_lib.cost`), from the images' sizes
    alone (a file's header), the style images' included; ValueError, naming the largest
    size (or style size) that fits, if it cannot fit in memory."""
    styles = img.as_list(style)
    sources = [content] if content is not None else styles
    if not sources:
        raise ValueError("Give a content image, a style image or both.")
    device = next(model.parameters()).device if model is not None else resolve_device(config.device)
    shape = img.result_shape(sources[0], config.size)
    decoded = max([img.decoded_pixels(content, config.size)]
                  + [img.decoded_pixels(s, config.style_size or config.size) for s in styles])
    return check_fits(shape, config, device, resolve_precision(config.precision, device),
                      styles=[img.result_shape(s, None) for s in styles], decoded=decoded)


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="nst", unit="eval", leave=True)


def reconstruct_content(image: ImageLike, layer: str = "conv4_2", **overrides) -> Result:
    """Paper Fig. 1 (bottom): an image from white noise whose ``layer`` matches ``image``.

    Single scale from white noise, as in the paper, unless overridden.
    """
    overrides.setdefault("init", "noise")
    overrides.setdefault("scales", 1)
    overrides.setdefault("steps", 100)
    return transfer(content=image, content_layers=layer, **overrides)


def reconstruct_style(image: ImageLike, layers=("conv1_1",), **overrides) -> Result:
    """Paper Fig. 1 (top): a texture from white noise whose Gram matrices match ``image``.

    ``layers``: names, or one name (``"conv2_1"``).

    Single scale from white noise, as in the paper, unless overridden.
    """
    overrides.setdefault("init", "noise")
    overrides.setdefault("scales", 1)
    overrides.setdefault("steps", 100)
    return transfer(style=image, style_layers=layers, **overrides)
