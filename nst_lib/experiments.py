"""The slow transfers of notebooks 4-6, one table each: the CVPR 2016 paper's figures and a
few controls (notebook 5), the limits of the method (notebook 6) and the transfers of
notebook 4, all through the disk cache so that a class can run from it.

Figure numbers are those of the CVPR 2016 paper (Gatys, Ecker and Bethge, pp. 2414-2423).
The grid of style layer sets by alpha/beta is the preprint's Fig. 3 (arXiv:1508.06576).

Each table is an entry of :data:`EXPERIMENTS`: a table of runs, ``{title: changes}``, where
``changes`` names the images (``content``, default :data:`PHOTO`, and ``style``: files in
``data/``, a tuple for several styles), alpha/beta (``ratio``), optionally ``color`` (a
method of :func:`nst_lib.color.transfer_preserving_color`), ``grey`` (transfer between the
two images' luminance, :func:`nst_lib.color.luminance_only`), ``calibration`` (the images to
normalise the network on, :func:`calibrated_weights`) or ``defaults`` (start from the
library's defaults, :attr:`Budget.defaults`, instead of :attr:`Budget.config`), and any
:class:`~nst_lib.Config` fields that differ. :func:`results` runs them through the disk
cache (:mod:`nst_lib.cache`) and :func:`figure` draws them, so a figure computed once shows
at once. Two computations that are not a plain transfer go through the same cache
(:func:`adain` for notebook 6, :func:`two_styles` for notebook 4). Compute everything
notebooks 4-6 show ahead of time (e.g. the evening before class) with::

    python -m nst_lib.experiments --precompute             # notebooks 4, 5 and 6
    python -m nst_lib.experiments --precompute --notebook 5

The results are files in ``$NST_CACHE/results`` (default ``~/.cache/nst_lib/results``):
copy that folder to each machine of a room (or point ``NST_CACHE`` at one shared copy) and
every notebook shows them at once. Only notebook 6's measurement of this machine's speed
(``nst_lib.limits.measure_cost``) and the explorers' runs are not cached.

alpha/beta is in the library's unit: the content term is eq. 1 per position of the content
layer (``Config.per_position``, derived in notebook 5; the paper's eq. 1 is a sum, M_l
times larger), and each run sets alpha = 1 and beta = 1 / ratio.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from . import plot
from .cache import cached_transfer, directory
from .cache import key as cache_key
from .cache import read as cache_read
from .cache import write as cache_write
from .color import luminance_only, transfer_preserving_color
from .config import POOLINGS, STYLE_LAYERS, Config, scale_levels, steps_per_scale
from .image import MIN_SIDE, example, load_image, resize, target_shape
from .layers import block
from .normalize import mean_responses
from .optimize import Result, Stop, Targets
from .quick import quick_mode
from .vgg import normalized_caffe, vgg19

Runner = Callable[..., Result]

# How the paper optimises: from white noise (init), at one scale, with L-BFGS run long. The
# paper gives no number of evaluations: the 1000 here are the library's choice. Its layers, w_l = 1/5, the rescaled network and
# average pooling are the defaults already, so Config(**PAPER_RECIPE) is the paper's recipe.
PAPER_RECIPE = dict(init="noise", scales=1, steps=1000)
PHOTO = "kodim23.png"  # stands in for the paper's photo of the Neckarfront in Tuebingen
# CVPR Fig. 3 B, C, D and F: (painter, file, alpha/beta); E, Picasso's Femme nue assise, is
# not bundled
FIG3_PAINTINGS = (("Turner", "shipwreck.jpg", 1e-3), ("van Gogh", "starry_night.jpg", 8e-4),
                  ("Munch", "the_scream.jpg", 5e-3), ("Kandinsky", "composition_vii.jpg", 5e-4))
FIG4_RATIOS = (1e-4, 1e-3, 1e-2, 1e-1)  # CVPR Fig. 4, with Composition VII
PREPRINT_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2)  # the columns of the preprint's Fig. 3
# three of its five rows of style layer sets: conv1_1, conv1_1-conv3_1, conv1_1-conv5_1
PREPRINT_LAYER_SETS = (STYLE_LAYERS[:1], STYLE_LAYERS[:3], STYLE_LAYERS)
# a second set of calibration images for the normalised network: the paintings added to
# data/ after the default set (nst_lib.normalize.CALIBRATION) was fixed
PAINTINGS = ("shipwreck.jpg", "the_scream.jpg", "composition_vii.jpg", "woman_with_hat.jpg",
             "udnie.jpg")
# alpha/beta of the comparison of the two readings of eq. 1 (notebook 5): the paper's value
# for Composition VII (CVPR Fig. 3 F), fixed here so that it does not follow the defaults
PER_POSITION_RATIO = 5e-4


@dataclass(frozen=True)
class Budget:
    """The sizes and step counts of notebook 5, in one place."""

    size: int = 192  # longest side (px) of the figures' results
    steps: int = 100  # loss evaluations per scale
    small: int = 128  # the preprint's grid (12 runs)
    sizes: tuple[int, int] = (128, 256)  # the two sizes of the per-position comparison
    large: int = 384  # the coarse-to-fine comparison
    # notebook 4: the library's run beside the student's assembled method, its first
    # transfer (the library's defaults but the steps) and its comparisons
    paper_size: int = 128
    transfer_size: int = 256
    transfer_steps: int = 50  # loss evaluations per scale
    compare_size: int = 160
    compare_steps: int = 60  # loss evaluations of each comparison (one scale)
    # the library's evaluations per scale for the runs with ``defaults``; None = its own
    # (nst.Config().steps), a number in quick mode
    schedule: int | None = None

    @property
    def config(self) -> Config:
        """The settings of notebook 5's runs: the library's defaults (the paper's network,
        alpha/beta per position) from white noise as in the paper, with two scales (e.g. 96
        then 192 px) instead of the paper's one, to be rid of the noise in few steps."""
        return Config(size=self.size, steps=self.steps, scales=2, init="noise")

    @property
    def defaults(self) -> Config:
        """The library's defaults (``nst.Config()``) at :attr:`size`, for the runs that show
        them (``defaults=True`` in a table); in quick mode with :attr:`schedule` steps."""
        if self.schedule is None:
            return Config(size=self.size)
        return Config(size=self.size, steps=self.schedule)


def budget(quick: bool | None = None) -> Budget:
    """Small images and few steps in quick mode (``NST_QUICK=1``, CI), else the full ones."""
    quick = quick_mode() if quick is None else quick
    if quick:
        return Budget(size=48, steps=4, small=32, sizes=(32, 64), large=64, paper_size=32,
                      transfer_size=64, transfer_steps=4, compare_size=48, compare_steps=4,
                      schedule=3)
    return Budget()


@functools.lru_cache(maxsize=16)
def picture(name: str) -> torch.Tensor:
    """A bundled picture (a file in ``data/``) at full size; each run resizes it."""
    return load_image(example(name))


def positions(layer: str, shape: tuple[int, int]) -> int:
    """M_l: the number of positions of ``layer``'s feature maps for an H x W image."""
    pools = block(layer) - 1 if layer.startswith("conv") else block(layer)
    h, w = shape
    return (h // 2**pools) * (w // 2**pools)


def content_positions(config: Config, content: str = PHOTO) -> int:
    """M_l of the first content layer for a result of ``config.size`` from ``content``."""
    h, w = picture(content).shape[-2:]
    return positions(config.content_layers[0], target_shape(h, w, config.size))


def full_size_evaluations(config: Config, content: str = PHOTO) -> float:
    """What a run's loss evaluations cost, counted in evaluations at its full size.

    An evaluation's cost grows with the pixels (notebook 6), so one at 1/2 of the size
    counts about 1/4 and one at 1/4 about 1/16. A run on one scale costs its ``steps``;
    coarse to fine, the sum over its scales (:func:`nst_lib.config.scale_levels` of them
    at this size). It depends on the settings and the size only, not on the machine.
    """
    h, w = target_shape(*picture(content).shape[-2:], config.size)
    levels = scale_levels(max(h, w), config.scales)
    total = 0.0
    for scale, steps in enumerate(steps_per_scale(config, levels)):
        factor = 2 ** (levels - 1 - scale)
        coarse = max(MIN_SIDE, round(h / factor)) * max(MIN_SIDE, round(w / factor))
        total += steps * coarse / (h * w)
    return total


def evaluations_per_scale(result: Result) -> list[int]:
    """How many loss evaluations a run made at each of its scales, coarsest first."""
    scales = [step.get("scale", 0) for step in result.history]
    return [scales.count(k) for k in range(max(scales, default=-1) + 1)]


# ----------------------------------------------------------------------------- the table

def ratio_text(r: float) -> str:
    """alpha/beta as the paper writes it: 1e-3, 8e-4, 3.1e-6."""
    mantissa, exponent = f"{r:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _fig3(s: Budget) -> dict[str, dict]:
    return {f"{painter}, α/β = {ratio_text(r)}": dict(style=name, ratio=r)
            for painter, name, r in FIG3_PAINTINGS}


def _fig4(s: Budget) -> dict[str, dict]:
    return {f"α/β = {ratio_text(r)}": dict(style="composition_vii.jpg", ratio=r) for r in FIG4_RATIOS}


def _fig5(s: Budget) -> dict[str, dict]:
    # per position, conv2_2's eq. 1 is divided by its own M_l, 16 times conv4_2's; the middle
    # run weighs it as eq. 1 as printed does, relative to conv4_2 at this size
    fig5 = dict(content="sail.png", style="composition_vii.jpg", ratio=1e-3)
    printed = 1e-3 / content_positions(s.config, "sail.png")
    return {
        "conv2_2, per position, α/β = 1e-3": fig5 | dict(content_layers=("conv2_2",)),
        f"conv2_2, eq. 1 as printed\nα/β = 1e-3 / M_l(conv4_2) = {ratio_text(printed)}":
            fig5 | dict(content_layers=("conv2_2",), per_position=False, ratio=printed),
        "conv4_2, per position, α/β = 1e-3": fig5 | dict(content_layers=("conv4_2",)),
    }


FIG6 = dict(style="starry_night.jpg", ratio=1e-3)  # also the plain run of the controls


def _fig6(s: Budget) -> dict[str, dict]:
    starts = {"A: from the photo": dict(init="content"),
              "B: from the painting": dict(init="style")}
    starts |= {f"C: white noise, seed {seed}": dict(init="noise", seed=seed)
               for seed in range(4)}
    return {title: FIG6 | change for title, change in starts.items()}


def _fig7(s: Budget) -> dict[str, dict]:
    return {"result, from the content photo": dict(content="sail.png", style="kodim23.png",
                                                   ratio=1e-2, init="content")}


def _preprint_fig3(s: Budget) -> dict[str, dict]:
    runs = {}
    for layers in PREPRINT_LAYER_SETS:
        label = layers[0] if len(layers) == 1 else f"{layers[0]} … {layers[-1]}"
        for r in PREPRINT_RATIOS:
            runs[f"{label}\nα/β = {ratio_text(r)}"] = dict(style="composition_vii.jpg", ratio=r,
                                                 style_layers=layers, size=s.small)
    return runs


def _per_position(s: Budget) -> dict[str, dict]:
    # eq. 1 as printed, at the ratio that gives the first size the per-position balance
    ratio = PER_POSITION_RATIO
    printed = ratio / content_positions(replace(s.config, size=s.sizes[0]))
    runs = {f"{size} px, per position, α/β = {ratio_text(ratio)}": dict(
        style="composition_vii.jpg", ratio=ratio, size=size) for size in s.sizes}
    runs |= {f"{size} px, eq. 1 as printed, α/β = {ratio_text(printed)}": dict(
        style="composition_vii.jpg", ratio=printed, size=size, per_position=False)
        for size in s.sizes}
    return runs


def _calibration(s: Budget) -> dict[str, dict]:
    kandinsky = dict(style="composition_vii.jpg", ratio=5e-4)  # CVPR Fig. 3 F
    return {"calibrated on the default images": kandinsky,
            "calibrated on the five paintings": kandinsky | dict(calibration=PAINTINGS)}


def _pooling(s: Budget) -> dict[str, dict]:
    return {f"{p} pooling": FIG6 | dict(pooling=p) for p in POOLINGS}


def _colours(s: Budget) -> dict[str, dict]:
    return {"plain transfer": FIG6, "luminance only": FIG6 | dict(color="luminance"),
            "histogram matching": FIG6 | dict(color="histogram")}


def _resolution(s: Budget) -> dict[str, dict]:
    # the same cost, counted in full-size evaluations (full_size_evaluations), not the same
    # seconds: a time budget would give a faster machine more evaluations and could turn
    # the comparison round. Coarse to fine gets half the steps per scale; the single scale
    # as many full-size evaluations as those cost
    large = dict(FIG6, size=s.large)
    coarse = large | dict(scales=3, steps=max(1, s.steps // 2))
    cost = max(1, round(full_size_evaluations(config_of(coarse, s))))
    return {"coarse to fine, scales=3": coarse,
            "single scale, scales=1": large | dict(scales=1, steps=cost)}


def _blends(s: Budget) -> dict[str, dict]:
    return {"The Starry Night alone": FIG6,
            "half and half": FIG6 | dict(style=("starry_night.jpg", "brick.png"),
                                         style_blend=(0.5, 0.5)),
            "brick wall alone": FIG6 | dict(style="brick.png")}


def errors(result: Result) -> str:
    """The content error per position (eq. 1 / M_l) and the style error (eq. 5) at the end
    of a run, whichever reading of eq. 1 it used, as a caption."""
    last, config = result.history[-1], result.config
    content = last["content"]
    if not config.per_position:
        content /= positions(config.content_layers[0], tuple(result.image.shape[-2:]))
    return f"L_content / M_l = {content:.3g}, L_style = {last['style']:.2g}"


def timing(result: Result) -> str:
    """The loss evaluations (per scale) and their cost in full-size evaluations, as a
    caption; the seconds are those of the machine that computed (and cached) the run."""
    per_scale = evaluations_per_scale(result)
    cost = full_size_evaluations(replace(result.config, steps=tuple(per_scale),
                                         scales=len(per_scale)))
    scales = "+".join(map(str, per_scale))
    return f"{scales} evaluations ({cost:.0f} full-size), {result.seconds:.0f} s"


# ------------------------------------------------------------ notebook 6: the limits

# CVPR Fig. 7's setting (photo to photo, from the content image, alpha/beta = 1e-2) with the
# bundled photos: the parrots in the style of the sailing boats
PHOTO_TO_PHOTO = dict(content=PHOTO, style="sail.png", ratio=1e-2, init="content")


def _noise(s: Budget) -> dict[str, dict]:
    # coarse to fine (notebook 5's two scales of s.steps) against one scale (the paper's way)
    # at the same cost in full-size evaluations; nothing else differs
    coarse = PHOTO_TO_PHOTO
    cost = max(1, round(full_size_evaluations(config_of(coarse, s))))
    return {"coarse to fine, two scales": coarse,
            "one scale (the paper's way)": coarse | dict(scales=1, steps=cost)}


def _cat(s: Budget) -> dict[str, dict]:
    # a photo as the style: the boats in the style of the cat, from the boats
    return {f"α/β = {ratio_text(r)}": dict(content="sail.png", style="chelsea.png", ratio=r,
                                           init="content") for r in (1e-3, 1e-4)}


# notebook 6's comparison with AdaIN: the cat in the style of Composition VII, from the photo
ADAIN_PAIR = dict(content="chelsea.png", style="composition_vii.jpg")


def _gatys(s: Budget) -> dict[str, dict]:
    return {"Gatys et al. (eq. 7)": ADAIN_PAIR | dict(ratio=5e-4, init="content")}


# ---------------------------------------------------------------- notebook 4: transfer

NB4 = dict(content="chelsea.png", style="starry_night.jpg", defaults=True)


def _nb4_beside(s: Budget) -> dict[str, dict]:
    # the library's defaults, at the size of the student's assembled method
    return {"nst.transfer, its defaults": NB4 | dict(size=s.paper_size)}


def _nb4_transfer(s: Budget) -> dict[str, dict]:
    return {"the library's defaults, notebook 4's steps": NB4 | dict(size=s.transfer_size,
                                                                    steps=s.transfer_steps)}


def _nb4_ratios(s: Budget) -> dict[str, dict]:
    return {f"α/β = {ratio_text(r)}": NB4 | dict(size=s.compare_size, steps=s.compare_steps,
                                                 scales=1, ratio=r) for r in (1e-2, 1e-3, 1e-4)}


def _nb4_colours(s: Budget) -> dict[str, dict]:
    # the transfer between the two grey images (grey: see run); notebook 4 puts the photo's
    # colours back itself, with the student's combine_luminance
    return {"luminance only": NB4 | dict(size=s.transfer_size, steps=s.transfer_steps,
                                         grey=True)}


@dataclass(frozen=True)
class Experiment:
    """One figure: its runs, and how to draw them with :func:`nst_lib.plot.images`."""

    title: str
    runs: Callable[[Budget], dict[str, dict]]  # {title: changes} (see the module docstring)
    ncols: int | None = None  # pictures per row; None = all in one row
    inputs: tuple[str, ...] = ()  # "content" and/or "style": drawn before the results
    inset: bool = False  # the style image in the lower left corner of each result
    caption: Callable[[Result], str] | None = None  # a second line under each title
    width: float = 3.0  # inches per picture
    notebook: int = 5  # the notebook that shows it


EXPERIMENTS: dict[str, Experiment] = {
    "fig3": Experiment("CVPR Fig. 3: one photo in the styles of four paintings", _fig3,
                       ncols=5, inputs=("content",), inset=True, width=2.6),
    "fig4": Experiment("CVPR Fig. 4: α/β from 1e-4 to 1e-1, Composition VII", _fig4,
                       ncols=2, width=3.5),
    "fig5": Experiment("CVPR Fig. 5: the content on conv2_2 or conv4_2", _fig5,
                       ncols=4, inputs=("content",), inset=True),
    "fig6": Experiment("CVPR Fig. 6: six starts, α/β = 1e-3", _fig6, ncols=3),
    "fig7": Experiment("CVPR Fig. 7: photo to photo, from the content image, α/β = 1e-2",
                       _fig7, ncols=3, inputs=("content", "style")),
    "preprint_fig3": Experiment(
        "The preprint's Fig. 3 (arXiv:1508.06576): style layer sets by α/β", _preprint_fig3,
        ncols=len(PREPRINT_RATIOS), width=2.4),
    "per_position": Experiment("One α/β at two sizes", _per_position, ncols=2,
                               caption=errors, width=3.5),
    "calibration": Experiment("The normalised network, calibrated on two sets of images",
                              _calibration, inset=True, width=3.5),
    "pooling": Experiment("Average and max pooling", _pooling),
    "colours": Experiment("Keeping the photo's colours", _colours),
    "resolution": Experiment("The same cost at 384 px", _resolution, caption=timing,
                             width=4.5),
    "blends": Experiment("Two styles blended", _blends),
    # notebook 6
    "noise": Experiment("Photo to photo: one scale and coarse to fine at the same cost",
                        _noise, inputs=("content", "style"), caption=timing, width=4.2,
                        notebook=6),
    "cat": Experiment("A photo as the style", _cat, ncols=2, inputs=("content", "style"),
                      width=4.5, notebook=6),
    "gatys": Experiment("Gatys et al. beside AdaIN", _gatys, notebook=6),
    # notebook 4
    "nb4_beside": Experiment("The library's run", _nb4_beside, width=4, notebook=4),
    "nb4_transfer": Experiment("Style transfer", _nb4_transfer, inputs=("content", "style"),
                               width=4, notebook=4),
    "nb4_ratios": Experiment("Three values of α/β, one scale", _nb4_ratios, notebook=4),
    "nb4_colours": Experiment("Keeping the photo's colours", _nb4_colours, notebook=4),
}

# the computations besides the tables that go through the cache: adain (notebook 6) and
# two_styles (notebook 4); filled in below, run by precompute
EXTRAS: dict[str, tuple[int, Callable[..., object]]] = {}


def runs(name: str, s: Budget | None = None) -> dict[str, dict]:
    """The table of runs of experiment ``name``: ``{title: changes}``."""
    return EXPERIMENTS[name].runs(s or budget())


def calibrated_weights(images: Sequence[str], pooling: str = "avg") -> Path:
    """A weights file of VGG19 normalised on other ``images`` (files in ``data/``):
    :func:`nst_lib.vgg.normalized_caffe`, computed once and cached; for the default
    images it is the file of ``weights="caffe-normalized"``."""
    return normalized_caffe(pooling, [example(name) for name in images])


def config_of(changes: Mapping, s: Budget | None = None) -> Config:
    """The Config of one run: :attr:`Budget.config` (or :attr:`Budget.defaults` with
    ``defaults``) with alpha = 1, beta = 1 / ratio (with ``defaults`` and no ratio, the
    library's alpha and beta) and the run's Config fields."""
    s = s or budget()
    base = s.defaults if changes.get("defaults") else s.config
    fields_ = {k: v for k, v in changes.items() if k not in ("content", "style", "ratio",
                                                             "color", "calibration", "defaults",
                                                             "grey")}
    if "calibration" in changes:
        pooling = changes.get("pooling", base.pooling)
        fields_["weights"] = str(calibrated_weights(changes["calibration"], pooling))
    if "ratio" in changes or not changes.get("defaults"):
        ratio = changes.get("ratio", base.ratio)
        fields_ |= dict(alpha=1.0, beta=1.0 / ratio)
    return replace(base, **fields_)


def run(changes: Mapping, s: Budget | None = None, *, runner: Runner = cached_transfer,
        progress: bool = False, **kwargs) -> Result:
    """One run of a table: its images, its Config (:func:`config_of`) and, with
    ``color``, :func:`nst_lib.color.transfer_preserving_color` around ``runner``.
    ``kwargs`` go to the runner: ``model``, or ``functions`` (your loss functions: a run
    with other functions than the library's is computed every time, never cached)."""
    content = picture(changes.get("content", PHOTO))
    style = changes["style"]
    style = [picture(n) for n in style] if isinstance(style, tuple) else picture(style)
    config = config_of(changes, s)
    if changes.get("grey"):  # between the luminance images (Gatys et al. 2017, Sec. 5.1)
        content, style = luminance_only(resize(content, config.size), resize(style, config.size))
    if "color" in changes:
        return transfer_preserving_color(content, style, config, method=changes["color"],
                                         runner=runner, progress=progress, **kwargs)
    return runner(content, style, config, progress=progress, **kwargs)


def results(name: str, s: Budget | None = None, *, runner: Runner = cached_transfer,
            progress: bool = False, **kwargs) -> dict[str, Result]:
    """The runs of experiment ``name``, ``{title: Result}``, each through ``runner``
    (``kwargs``: see :func:`run`)."""
    return {title: run(changes, s, runner=runner, progress=progress, **kwargs)
            for title, changes in runs(name, s).items()}


def with_inset(image: torch.Tensor, inset: torch.Tensor, fraction: float = 0.3) -> torch.Tensor:
    """``image`` with ``inset`` in its lower left corner, its longest side ``fraction`` of
    the image's, in a white frame one pixel wide (as the paper shows the paintings)."""
    h, w = image.shape[-2:]
    shape = target_shape(*inset.shape[-2:], max(1, round(fraction * max(h, w))))
    small = F.interpolate(inset, size=shape, mode="bilinear", antialias=True)
    ih, iw = min(small.shape[-2], h - 2), min(small.shape[-1], w - 2)
    out = image.clone()
    out[..., h - ih - 2:, :iw + 2] = 1.0
    out[..., h - ih - 1:h - 1, 1:iw + 1] = small[..., :ih, :iw]
    return out


def figure(name: str, s: Budget | None = None, *, runner: Runner = cached_transfer,
           progress: bool = False, **kwargs) -> Figure:
    """Experiment ``name`` as one figure (:func:`nst_lib.plot.images`; ``kwargs``: see
    :func:`run`)."""
    s = s or budget()
    exp, table = EXPERIMENTS[name], runs(name, s)
    done = results(name, s, runner=runner, progress=progress, **kwargs)
    first = next(iter(table.values()))
    pictures: dict[str, torch.Tensor] = {}
    for kind in exp.inputs:
        file = first.get("content", PHOTO) if kind == "content" else first["style"]
        pictures[f"{kind}: {file}"] = resize(picture(file), first.get("size", s.size))
    for title, result in done.items():
        image = result.image
        if exp.inset:
            image = with_inset(image, picture(table[title]["style"]))
        pictures[f"{title}\n{exp.caption(result)}" if exp.caption else title] = image
    return plot.images(pictures, ncols=exp.ncols, width=exp.width, title=exp.title)


# ---------------------------------------------------------------- measurements, no runs

def loss_terms(
    content: torch.Tensor,
    style: torch.Tensor,
    *,
    size: int,
    per_position: bool = True,
    weights: str = "caffe-normalized",
    pooling: str = "avg",
    seed: int = 0,
) -> dict[str, float]:
    """The loss terms a transfer from white noise (``seed``) starts with, before weighting.

    ``"M_l"``: the positions of conv4_2 at ``size`` px; ``"content"``: eq. 1 at conv4_2
    (divided by M_l with ``per_position``); ``"style"``: L_style (eq. 5, w_l = 1/5);
    then E_l (eq. 4) of each style layer.
    """
    model = vgg19(weights, pooling=pooling, device="cpu")
    photo, painting = resize(content, size), resize(style, size)
    noise = torch.rand(photo.shape, generator=torch.Generator().manual_seed(seed))
    config = Config(per_position=per_position, weights=weights, pooling=pooling)
    targets = Targets(model, config, photo, painting)  # the targets a transfer uses
    with torch.no_grad():
        losses = targets.losses(model, noise, 1.0, 1.0)
    return {"M_l": float(positions("conv4_2", tuple(photo.shape[-2:]))),
            "content": losses.content.item(), "style": losses.style.item(),
            **{name: losses.layers[name].item() for name in STYLE_LAYERS}}


def scale_ratios(images: Sequence[str], layers: Sequence[str] = STYLE_LAYERS,
                 *, size: int = 256) -> dict[str, torch.Tensor]:
    """Per filter, its scale on ``images`` over its scale on the default calibration images.

    The network normalised on the default images divides each response by its mean there,
    so its mean responses on other images are exactly these ratios; a normalisation on
    ``images`` would divide each filter by this much more. Filters silent on either set
    are left out. ``{layer: (n,)}``.
    """
    model = vgg19("caffe-normalized", pooling="avg", device="cpu")
    ratios = mean_responses(model, [load_image(example(n), size) for n in images], layers)
    return {name: r[r > 0] for name, r in ratios.items()}


# ------------------------------------------- computations that are not a plain transfer

def stored(kind: str, content: torch.Tensor, style, config: Config,
           compute: Callable[[], Result]) -> Result:
    """``compute()`` through the result cache, under ``kind`` and the key of ``content``,
    ``style`` and ``config`` (:func:`nst_lib.cache.key`): for a computation that is not
    :func:`nst_lib.transfer` but is decided by these (``config`` must name everything that
    changes its outcome). A stored result is read back from any of the cache's folders
    (:func:`nst_lib.cache.folders`: a shared read-only one too); a complete new one is
    stored in :func:`nst_lib.cache.directory`, or returned with a warning if it cannot be."""
    name = f"{kind}-{cache_key(content, style, config)}"
    result = cache_read(name, config)
    if result is not None:
        return result
    result = compute()
    if result.stop_reason == Stop.INTERRUPTED:
        raise KeyboardInterrupt("interrupted; the runs that finished are kept in the cache")
    if Stop(result.stop_reason).complete:
        cache_write(name, result, config)
    return result


def adain(s: Budget | None = None, *, model=None) -> Result:
    """Notebook 6: AdaIN's features of :data:`ADAIN_PAIR` at ``conv4_1``, inverted by
    optimisation (:func:`nst_lib.limits.adain_transfer`, ``s.steps`` evaluations at
    ``s.size``, from the photo), through the cache."""
    from .limits import adain_transfer  # limits imports widgets' neighbours; keep it lazy

    s = s or budget()
    content, style = picture(ADAIN_PAIR["content"]), picture(ADAIN_PAIR["style"])
    # what adain_transfer runs, as a Config (its key; the style enters through its pixels)
    config = Config(size=s.size, steps=s.steps, scales=1, content_layers=("conv4_1",),
                    init="content")
    return stored("adain", content, style, config, lambda: adain_transfer(
        content, style, model=model, layer="conv4_1", size=s.size, steps=s.steps))


# notebook 4's two styles in two regions: The Starry Night in the left half, Composition VII
# in the right, from the cat
TWO_STYLES = ("chelsea.png", ("starry_night.jpg", "composition_vii.jpg"))


def two_styles_inputs(s: Budget | None = None) -> tuple[torch.Tensor, tuple, torch.Tensor]:
    """The photo, the two paintings (at ``s.compare_size``) and the mask (1: the left half)
    of notebook 4's two styles in two regions."""
    s = s or budget()
    photo = resize(picture(TWO_STYLES[0]), s.compare_size).contiguous()
    paintings = tuple(resize(picture(n), s.compare_size).contiguous() for n in TWO_STYLES[1])
    mask = torch.zeros(1, 1, *photo.shape[-2:])
    mask[..., : mask.shape[-1] // 2] = 1
    return photo, paintings, mask


def two_styles(masked_gram: Callable | None = None, s: Budget | None = None, *,
               model=None) -> torch.Tensor:
    """Notebook 4: :func:`nst_lib.exercises.two_styles` on :func:`two_styles_inputs`, one
    scale of ``s.compare_steps`` iterations; returns the image. Through the cache when
    ``masked_gram`` is the library's (None); your own is run every time."""
    from . import exercises
    from .vgg import vgg19 as load

    s = s or budget()
    photo, paintings, mask = two_styles_inputs(s)
    library = exercises.EXERCISES["masked_gram"]
    library = library.fallback or library.reference
    config = Config(size=s.compare_size, steps=s.compare_steps, scales=1, init="content")

    def compute() -> Result:
        start = time.perf_counter()
        image, losses = exercises.two_styles(
            photo, paintings, mask, masked_gram or library, steps=s.compare_steps,
            model=model or load(config.weights, pooling=config.pooling))
        return Result(image=image, history=[{"step": i + 1, "loss": float(v)}
                                            for i, v in enumerate(losses)],
                      seconds=time.perf_counter() - start, config=config)

    if masked_gram not in (None, library):
        return compute().image
    return stored("two_styles", photo, [*paintings, mask.expand(1, 3, -1, -1)], config,
                  compute).image


EXTRAS.update(adain=(6, adain), two_styles=(4, lambda s, **kw: two_styles(None, s, **kw)))


# ------------------------------------------------------------------------ the command

def precompute(s: Budget | None = None, *, progress: bool = True,
               notebooks: Sequence[int] = (4, 5, 6)) -> float:
    """Run (or find in the cache) every transfer ``notebooks`` (4, 5 and 6) show: each
    table of :data:`EXPERIMENTS` and each of :data:`EXTRAS`; returns the seconds taken."""
    s = s or budget()
    start = time.perf_counter()
    for name, exp in EXPERIMENTS.items():
        if exp.notebook in notebooks:
            t = time.perf_counter()
            results(name, s, progress=progress)
            print(f"notebook {exp.notebook}, {name}: {time.perf_counter() - t:.0f} s", flush=True)
    for name, (notebook, compute) in EXTRAS.items():
        if notebook in notebooks:
            t = time.perf_counter()
            compute(s)
            print(f"notebook {notebook}, {name}: {time.perf_counter() - t:.0f} s", flush=True)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nst_lib.experiments",
        description="Fill the result cache for notebooks 4, 5 and 6 (notebooks/).")
    parser.add_argument("--precompute", action="store_true",
                        help="run every transfer the notebooks show (or find it in the cache)")
    parser.add_argument("--notebook", type=int, action="append", choices=(4, 5, 6),
                        help="only this notebook's (4, 5 or 6; may be given twice)")
    parser.add_argument("--quick", action="store_true",
                        help="the quick-mode sizes (as with NST_QUICK=1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not args.precompute:
        parser.print_help()
        return 2
    s = budget(quick=True if args.quick else None)
    print(f"{s}; results in {directory()}", flush=True)
    try:
        seconds = precompute(s, progress=not args.quiet, notebooks=args.notebook or (4, 5, 6))
    except KeyboardInterrupt:
        print("interrupted: the runs that finished are kept; run the same command again to "
              "go on", file=sys.stderr)
        return 130
    print(f"done in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
