"""One optimisation loop for content reconstruction, style reconstruction and transfer.

The image is the only thing optimised; VGG19 is fixed. The targets (the content image's
features P^l, the style image's Gram matrices A^l) are computed once per run and scale.
The loop reports every loss evaluation to a callback and draws nothing itself.

Departures from the paper, each a :class:`~nst_lib.config.Config` field you can set back:
- ``init="content"`` by default (the paper starts from white noise, ``init="noise"``): the
  paper's Fig. 6 shows the start changes little; starting from the photo converges faster.
- ``scales=3`` (coarse-to-fine: optimise at 1/4 and 1/2 size first, upsample, refine) is a
  speed lever the paper does not use: the coarse scales cost 1/16 and 1/4 of a full-size
  evaluation and lay out the large brush strokes, so few full-size evaluations are needed:
  ``steps=(100, 50, 20)`` spends most evaluations where they are cheap.
  ``scales=1`` is the paper's single-scale optimisation.
- ``per_position=True``: alpha/beta is read per position of the content layer
  (:meth:`Targets.losses`), so that it means the same at every image size.
- ``precision="auto"``: VGG19 computes in bfloat16 where the hardware has it; the losses
  are computed in float32 as written.
- ``tol`` (stop when the loss stops improving) is off by default.

Before any image is decoded or resized, :func:`check_cost` estimates the run's memory and
refuses one that cannot fit (:mod:`nst_lib.cost`).
"""

from __future__ import annotations

import ctypes
import functools
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
from .config import Config, _as_tuple, require_layers, scale_levels, steps_per_scale
from .losses import LossFunctions
from .cost import Cost, check_fits
from .vgg import PRECISIONS, VGG19, check_layers, resolve_device, resolve_precision, vgg19

ImageLike = Union[torch.Tensor, str, os.PathLike]  # a tensor (1, 3, H, W) or a file path


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
    stop_reason: str = "steps"  # steps, converged, time, interrupted, stopped, diverged
    seconds: float = 0.0
    config: Config | None = None

    @property
    def interrupted(self) -> bool:
        return self.stop_reason in ("interrupted", "stopped")

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
        styles = [style] if isinstance(style, torch.Tensor) else list(style or [])
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


def _as_image(source, size, *, what: str = "image") -> torch.Tensor | None:
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        return img.load_image(source, size)
    return img.resize(img.as_image(source, what=what), size)


def _initial(init, shape, content, style, seed, device) -> torch.Tensor:
    size = tuple(shape[-2:])
    if isinstance(init, torch.Tensor):
        return img.resize(img.as_image(init, what="start image (init)"), size).to(device)
    if init == "noise":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(1, 3, *size, generator=g).to(device)  # white noise in [0, 1]
    source = {"content": content, "style": style}.get(init, "unknown")
    if isinstance(source, str):
        raise ValueError(f"init must be 'noise', 'content', 'style' or a tensor, got {init!r}.")
    if source is None:
        raise ValueError(f"init={init!r} needs a {init} image.")
    return img.resize(source, size).clone()


def _is_device(name) -> bool:
    """True if ``name`` is "auto" or names a kind of device (available here or not)."""
    try:
        return str(name) == "auto" or bool(torch.device(name))
    except (RuntimeError, TypeError):
        return False


def validate(config: Config) -> Config:
    """Raise ValueError with a one-line explanation for settings that cannot work."""
    checks = [
        (config.optimizer in ("lbfgs", "adam"), f"optimizer must be 'lbfgs' or 'adam', got {config.optimizer!r}"),
        (all(isinstance(n, int) and n > 0 for n in _as_tuple(config.steps)),
         f"steps must be at least 1, got {config.steps} (a whole number, or one per scale)"),
        (not isinstance(config.steps, tuple) or len(config.steps) >= config.scales,
         f"steps gives {len(_as_tuple(config.steps))} numbers for {config.scales} scales; give one "
         "per scale, coarsest first"),
        (config.scales >= 1, f"scales must be at least 1, got {config.scales}"),
        (config.size is None or config.size > 0, f"size must be a positive number of pixels, got {config.size}"),
        (math.isfinite(config.alpha) and config.alpha >= 0, f"alpha must be finite and >= 0, got {config.alpha}"),
        (math.isfinite(config.beta) and config.beta >= 0, f"beta must be finite and >= 0, got {config.beta}"),
        (config.alpha > 0 or config.beta > 0, "alpha and beta cannot both be 0"),
        (all(math.isfinite(w) and w > 0 for w in config.layer_weights().values()),
         f"style weights must be positive, got {config.style_weights}"),
        (config.lr is None or (math.isfinite(config.lr) and config.lr > 0),
         f"lr must be positive and finite, got {config.lr}"),
        (config.style_size is None or config.style_size > 0,
         f"style_size must be a positive number of pixels, got {config.style_size}"),
        (config.tol >= 0, f"tol must be >= 0, got {config.tol}"),
        (config.time_limit is None or config.time_limit >= 0,
         f"time_limit must be >= 0 seconds, got {config.time_limit}"),
        (isinstance(config.init, torch.Tensor) or config.init in ("noise", "content", "style"),
         f"init must be 'noise', 'content', 'style' or a tensor, got {config.init!r}"),
        (config.pooling in ("avg", "max"),
         f"pooling must be 'avg' or 'max', got {config.pooling!r}"),
        (config.precision in PRECISIONS,
         f"precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}"),
        (_is_device(config.device),
         f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {config.device!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message + ".")
    check_layers(config.content_layers)
    check_layers(config.style_layers)
    return config


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

    - both images: style transfer (eq. 7); only ``content``: content reconstruction (eq. 1);
      only ``style``: style (texture) reconstruction (eq. 5).
    - ``content``/``style``: file paths or RGB tensors (1, 3, H, W) in [0, 1] (other shapes
      and 0-255 values: :func:`nst_lib.image.as_image`); the result has
      the content's aspect ratio with longest side ``config.size``. ``style`` may be a list
      of images, blended with the weights ``config.style_blend``.
    - ``config`` and ``overrides``: the settings (``transfer(c, s, steps=100, init="noise")``).
    - ``callback(step)`` after every loss evaluation; ``step.image`` is set every
      ``image_every`` evaluations. ``stop``: a threading.Event that ends the run when set.
    - ``functions``: the loss functions (:class:`~nst_lib.losses.LossFunctions`), e.g. your
      own ``content_loss`` in place of the library's.
    - Ctrl-C / the notebook's stop button ends the run cleanly: the result holds the image
      so far and its history, with ``stop_reason="interrupted"``.
    """
    config = validate(replace(config or Config(), **overrides))
    check_cost(content, style, config, model)  # before any large tensor is made
    # images first: a bad file is reported before any weights are loaded or fetched
    content_full = _as_image(content, config.size, what="content image")
    style_list = [style] if isinstance(style, (str, os.PathLike, torch.Tensor)) else style or []
    styles = [_as_image(s, config.style_size or config.size, what="style image")
              for s in style_list]
    if content_full is None and not styles:
        raise ValueError("Give a content image, a style image or both.")
    require_layers(config, content=content_full is not None, style=bool(styles))
    model = model or vgg19(config.weights, pooling=config.pooling, device=config.device)
    device = next(model.parameters()).device
    content_full = content_full.to(device) if content_full is not None else None
    styles = [s.to(device) for s in styles]
    out_shape = (content_full if content_full is not None else styles[0]).shape

    _keep_freed_memory()
    start = time.perf_counter()
    result = Result(image=torch.zeros(1, 3, *out_shape[-2:]), config=config)
    x = None
    levels = scale_levels(max(out_shape[-2:]), config.scales)
    budget = steps_per_scale(config, levels)
    bar = _progress_bar(sum(budget), progress)
    try:
        for scale in range(levels):
            factor = 2 ** (levels - 1 - scale)
            shape = [max(img.MIN_SIDE, round(s / factor)) for s in out_shape[-2:]]
            c = img.resize(content_full, tuple(shape)) if content_full is not None else None
            s = [img.resize(im, tuple(max(img.MIN_SIDE, round(d / factor)) for d in im.shape[-2:]))
                 for im in styles]
            targets = Targets(model, config, c, s, functions=functions)
            if x is None:
                x0 = _initial(config.init, shape, c, s[0] if s else None, config.seed, device)
            else:
                x0 = F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)
            x = _optimise_scale(x0, model, targets, replace(config, steps=budget[scale]), scale,
                                start, result, callback, image_every, bar, stop)
            if result.stop_reason != "steps":
                break
    finally:
        bar.close()
    if tuple(result.image.shape[-2:]) != tuple(out_shape[-2:]):  # stopped at a coarse scale
        result.image = F.interpolate(result.image, size=tuple(out_shape[-2:]), mode="bilinear",
                                     align_corners=False).clamp(0, 1)
    result.seconds = time.perf_counter() - start
    return result


@functools.cache
def _keep_freed_memory() -> None:
    """Ask glibc's malloc (Linux) to keep freed memory for reuse, once per process.

    By default every large feature map is returned to the system when freed and faulted in
    again on the next evaluation: 3.2 s of system time in a 32 s run (benchmarks/). With
    mmap off for large blocks and no trimming, the memory of one evaluation is reused by
    the next; the process keeps its peak size until it ends. Elsewhere this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: no mmap for large blocks
        libc.mallopt(-1, 2**30)  # M_TRIM_THRESHOLD: keep up to 1 GiB free at the top
    except (OSError, AttributeError):
        pass


def check_cost(content, style, config: Config, model: VGG19 | None = None) -> Cost:
    """The memory and time a run will take (:mod:`nst_lib.cost`), from the images' sizes
    alone; ValueError, naming the largest size that fits, if it cannot fit in memory."""
    first = content if content is not None else (
        style[0] if isinstance(style, (list, tuple)) and style else style)
    if first is None:
        raise ValueError("Give a content image, a style image or both.")
    device = next(model.parameters()).device if model is not None else resolve_device(config.device)
    shape = img.result_shape(first, config.size)
    return check_fits(shape, config, device, resolve_precision(config.precision, device))


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="nst", unit="eval", leave=True)


class _Stop(Exception):
    """Raised inside the closure to end a run; carries the reason."""


def _optimise_scale(x0, model, targets, config, scale, start, result, callback,
                    image_every, bar, stop) -> torch.Tensor:
    """Run up to ``config.steps`` loss evaluations at one scale; update ``result`` in place.

    All bookkeeping happens in the closure, once per evaluation: the history, the callback,
    the best image so far (what a stopped run returns) and the stop conditions, which raise
    :class:`_Stop` out of the optimiser.
    """
    # contiguous: L-BFGS flattens the gradient with .view(-1)
    x = x0.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    result.image = x0.detach().clamp(0, 1).cpu()  # until the first evaluation
    if config.optimizer == "lbfgs":
        # the strong Wolfe line search keeps L-BFGS stable at large beta (without it the
        # quartic style loss makes plain L-BFGS overshoot to inf at alpha/beta = 1e-4)
        opt = torch.optim.LBFGS([x], lr=config.lr or 1.0, max_iter=config.steps,
                                max_eval=config.steps, history_size=100, tolerance_grad=0.0,
                                tolerance_change=0.0, line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([x], lr=config.lr or 0.02)
    losses: list[float] = []
    best = math.inf

    def closure():
        nonlocal best
        if stop is not None and stop.is_set():
            raise _Stop("stopped")
        if len(losses) >= config.steps:  # the line search may ask for one more
            raise _Stop("steps")
        opt.zero_grad(set_to_none=True)
        loss, content, style, layers = targets.losses(model, x, config.alpha, config.beta)
        if not math.isfinite(loss.item()):
            warnings.warn(
                f"The loss became {loss.item()} at evaluation {len(result.history) + 1}; "
                "stopped and kept the last finite image. Lower the learning rate (lr).",
                stacklevel=2,
            )
            raise _Stop("diverged")
        loss.backward()
        if loss.item() < best:  # the image a stopped run returns
            best = loss.item()
            result.image = x.detach().clamp(0, 1).cpu()
        n = len(result.history) + 1
        step = Step(step=n, loss=loss.item(), content=content.item(), style=style.item(),
                    layers={k: v.item() for k, v in layers.items()},
                    seconds=time.perf_counter() - start, scale=scale,
                    image=result.image if n % image_every == 0 else None)
        result.history.append(step.record())
        losses.append(step.loss)
        bar.update(1)
        bar.set_postfix(loss=f"{step.loss:.3g}", refresh=False)
        if callback is not None:
            callback(step)
        if config.time_limit is not None and step.seconds > config.time_limit:
            raise _Stop("time")
        if config.tol > 0 and len(losses) > 20 and min(losses[:-20]) - min(losses[-20:]) < config.tol * abs(best):
            raise _Stop("converged")
        return loss

    result.stop_reason = "steps"
    try:
        if config.optimizer == "lbfgs":
            opt.step(closure)  # runs until max_eval evaluations
        else:
            for _ in range(config.steps):
                opt.step(closure)
    except _Stop as reason:
        result.stop_reason = str(reason)
    except KeyboardInterrupt:
        result.stop_reason = "interrupted"
    return result.image.to(x.device)


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
