"""Notebook 6: the paper's limits, measured and shown, and one step of what came next.

CVPR 2016, Sec. 4 names three limits of the method:

- speed: every image is an optimisation, and its cost grows with the number of pixels.
  :func:`measure_cost` runs :func:`nst_lib.transfer` in a fresh process per size and
  returns the seconds per loss evaluation and the peak memory (RSS), with the library's
  estimate (:func:`nst_lib.check_cost`) beside each; :func:`plot_cost` draws them.
- low-level noise, worst when the style image is a photo too (Fig. 7):
  :func:`high_frequency` measures it, :func:`flattest_window` finds where the photo is
  smooth (where the noise shows), :func:`zoom` enlarges a crop pixel by pixel.
- content and style are not always separable; that needs pictures, not helpers.

AdaIN (Huang and Belongie, ICCV 2017) gives an image the channel means and standard
deviations of the style's features: :func:`channel_stats`, :func:`adain`, and
:func:`adain_transfer`, which finds the image by optimisation (the paper trains a decoder
instead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from .config import Config
from .image import as_image, load_image, resize
from .losses import LossFunctions, content_loss
from .optimize import ImageLike, Result, check_cost, transfer
from .vgg import VGG19, vgg19


# ------------------------------------------------------------------- time and memory

def seconds_per_evaluation(history: list[dict]) -> float:
    """The median time between two loss evaluations of a run (``Result.history``).

    The first evaluation is left out: its time includes computing the targets."""
    times = [step["seconds"] for step in history]
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    if not gaps:
        raise ValueError("seconds_per_evaluation needs a history of at least 2 evaluations.")
    middle = len(gaps) // 2
    return gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2


STATUS = "/proc/self/status"  # Linux


def peak_rss_mb() -> float:
    """The largest resident memory this process has had so far, in MiB; NaN where it
    cannot be read.

    On Linux it is ``VmHWM`` of ``/proc/self/status``: the peak of this process's own
    memory. ``ru_maxrss`` (used elsewhere: KiB on Linux, bytes on macOS) is not, on Linux:
    a process started from a large one (a notebook's kernel, a test run) inherits its
    parent's peak through fork and exec.
    """
    try:
        with open(STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Start :func:`peak_rss_mb` again from the memory in use now (Linux: writes 5 to
    ``/proc/self/clear_refs``); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_here(content: str, style: str, size: int, steps: int,
                 weights: str = "caffe-normalized") -> dict:
    """One single-scale run of ``steps`` evaluations in this process, and what it cost.

    The peak memory is counted from after the weights are loaded (where the peak can be
    reset): loading them briefly needs more than a small run does."""
    config = Config(size=size, steps=steps, scales=1, weights=weights)
    cost = check_cost(content, style, config)
    model = vgg19(weights, pooling=config.pooling, device=config.device)
    reset_peak_rss()
    result = transfer(content, style, config, model=model, progress=False)
    h, w = result.image.shape[-2:]
    return {"size": size, "pixels": h * w,
            "seconds": seconds_per_evaluation(result.history),
            "estimated_seconds": cost.seconds / steps,
            "peak_mb": peak_rss_mb(), "estimated_mb": cost.memory_mb}


_CHILD = ("import json, sys; from nst_lib.limits import measure_here; "
          "print(json.dumps(measure_here(*json.loads(sys.argv[1]))))")


def measure_cost(content: ImageLike, style: ImageLike, sizes, *, steps: int = 6,
                 weights: str = "caffe-normalized") -> list[dict]:
    """Seconds per evaluation and peak memory of a run at each size, each in a fresh process.

    A process keeps its peak memory until it ends, so each size gets a new Python that
    imports this same nst_lib and runs :func:`measure_here`. ``content`` and ``style`` are
    image files; ``weights`` as in :class:`~nst_lib.Config`. Returns one dict per size:
    ``size``, ``pixels``, ``seconds`` (measured, per evaluation), ``estimated_seconds``,
    ``peak_mb`` (measured RSS) and ``estimated_mb``.
    """
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    rows = []
    for size in sizes:
        args = json.dumps([str(content), str(style), int(size), int(steps), weights])
        done = subprocess.run([sys.executable, "-c", _CHILD, args], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the run at {size} px failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def linear_fit(x, y) -> tuple[float, float]:
    """Least-squares line y = slope * x + intercept; returns (slope, intercept)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if len(x) < 2 or len(x) != len(y):
        raise ValueError("linear_fit needs two equally long lists of at least 2 numbers.")
    dx = x - x.mean()
    slope = (dx * (y - y.mean())).sum() / (dx * dx).sum()
    return slope.item(), (y.mean() - slope * x.mean()).item()


def plot_cost(rows: list[dict]) -> Figure:
    """Measured (dots) and estimated (line) seconds per evaluation and peak memory against
    the number of pixels, from :func:`measure_cost`."""
    pixels = [row["pixels"] / 1000 for row in rows]
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    panels = (("seconds", "seconds per loss evaluation"), ("mb", "peak memory (MiB)"))
    for ax, (key, label) in zip(fig.subplots(1, 2), panels):
        measured = [row["peak_mb" if key == "mb" else key] for row in rows]
        estimated = [row[f"estimated_{key}"] for row in rows]
        ax.plot(pixels, estimated, "-", color="tab:gray", label="estimate (nst.check_cost)")
        ax.plot(pixels, measured, "o", color="tab:blue", label="measured")
        ax.set_xlabel("thousands of pixels (H x W)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.legend()
    return fig


# ------------------------------------------------------------------- low-level noise

def _detail(image: torch.Tensor) -> torch.Tensor:
    """|x - its 3x3 mean| at every pixel that has 8 neighbours, averaged over the channels:
    (1, 1, H-2, W-2)."""
    image = image.reshape(1, -1, *image.shape[-2:]).float()
    blurred = F.avg_pool2d(image, 3, stride=1)
    return (image[..., 1:-1, 1:-1] - blurred).abs().mean(dim=1, keepdim=True)


def high_frequency(image: torch.Tensor) -> float:
    """Mean absolute difference between an image and its 3x3 box blur: 0 for a flat image,
    4/9 for a checkerboard of 0 and 1. Fine grain and noise raise it; smooth gradients do
    not."""
    return _detail(image).mean().item()


def flattest_window(image: torch.Tensor, size: int) -> tuple[int, int]:
    """(top, left) of the ``size`` x ``size`` window with the lowest :func:`high_frequency`
    (counted at the pixels whose 3x3 neighbourhood lies inside the window)."""
    if size < 3 or size > min(image.shape[-2:]):
        raise ValueError(f"size must be from 3 to {min(image.shape[-2:])}, got {size}.")
    scores = F.avg_pool2d(_detail(image), size - 2, stride=1)[0, 0]  # (H-size+1, W-size+1)
    index = int(scores.argmin())
    return divmod(index, scores.shape[1])


def zoom(image: torch.Tensor, top: int, left: int, size: int, factor: int = 4) -> torch.Tensor:
    """The ``size`` x ``size`` crop at (top, left), each pixel repeated ``factor`` times
    in each direction (no smoothing, so the grain stays visible)."""
    crop = image[..., top:top + size, left:left + size]
    return crop.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


# ------------------------------------------------------------------------------ AdaIN

def channel_stats(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each feature map over its positions: mu(x), sigma(x)
    of AdaIN, each (1, N, 1, 1); sigma = sqrt(variance + eps)."""
    mean = features.mean(dim=(-2, -1), keepdim=True)
    var = features.var(dim=(-2, -1), keepdim=True, unbiased=False)
    return mean, (var + eps).sqrt()


def adain(content_features: torch.Tensor, style_mean: torch.Tensor,
          style_std: torch.Tensor) -> torch.Tensor:
    """AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y) (Huang and Belongie 2017,
    eq. 8): each of the content's feature maps, normalised, then given the style's mean
    and standard deviation. ``style_mean``, ``style_std``: :func:`channel_stats` of y."""
    mean, std = channel_stats(content_features)
    return (content_features - mean) / std * style_std + style_mean


def adain_transfer(content: ImageLike, style: ImageLike, *, model: VGG19 | None = None,
                   layer: str = "conv4_1", size: int = 192, steps: int = 100) -> Result:
    """An image whose ``layer`` features match AdaIN(content features, style statistics).

    Huang and Belongie train a decoder to turn the AdaIN features into an image in one
    pass; here the image is found by optimisation instead: eq. 1 with AdaIN's target in
    place of P, from the content image, with the library's loop (:func:`nst_lib.transfer`,
    content only). The style's statistics are taken with the style resized to ``size``.
    """
    model = model or vgg19()
    style_image = (resize(as_image(style, what="style image"), size)
                   if isinstance(style, torch.Tensor) else load_image(style, size))
    style_image = style_image.to(next(model.parameters()).device)
    with torch.no_grad():
        style_mean, style_std = channel_stats(model(style_image, [layer])[layer])

    def towards_adain(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return content_loss(features, adain(target, style_mean, style_std))

    return transfer(content, None, model=model, size=size, steps=steps, scales=1,
                    content_layers=(layer,), init="content", progress=False,
                    functions=LossFunctions(content_loss=towards_adain))
