"""The figures of notebook 5: the CVPR 2016 paper's, one call each, and a few controls.

Figure numbers are those of the CVPR 2016 paper (Gatys, Ecker and Bethge, pp. 2414-2423).
The grid of style layer sets by alpha/beta is the preprint's Fig. 3 (arXiv:1508.06576).

Each figure is an entry of :data:`EXPERIMENTS`: a table of runs, ``{title: changes}``, where
``changes`` names the images (``content``, default :data:`PHOTO`, and ``style``: files in
``data/``, a tuple for several styles), alpha/beta (``ratio``), optionally ``color`` (a
method of :func:`nst_lib.color.transfer_preserving_color`) or ``calibration`` (the images to
normalise the network on, :func:`calibrated_weights`), and any :class:`~nst_lib.Config`
fields that differ from :attr:`Budget.config`. :func:`results`
runs them through the disk cache (:mod:`nst_lib.cache`) and :func:`figure` draws them, so a
figure computed once shows at once. Compute everything notebook 5 shows ahead of time
(e.g. the evening before class) with::

    python -m nst_lib.experiments --precompute

alpha/beta is in the paper's units: the content term is eq. 1 per position of the content
layer (``Config.per_position``, derived in notebook 5), and each run sets alpha = 1 and
beta = 1 / ratio.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from . import plot
from .cache import cached_transfer, directory
from .color import transfer_preserving_color
from .config import POOLINGS, STYLE_LAYERS, Config
from .image import example, load_image, resize, target_shape
from .layers import block
from .normalize import mean_responses
from .optimize import Result, Targets
from .quick import quick_mode
from .vgg import normalized_caffe, vgg19

Runner = Callable[..., Result]

# How the paper optimises: from white noise (init), at one scale, with L-BFGS run long (it
# gives no number; 1000 evaluations here). Its layers, w_l = 1/5, the rescaled network and
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


@dataclass(frozen=True)
class Budget:
    """The sizes and step counts of notebook 5, in one place."""

    size: int = 192  # longest side (px) of the figures' results
    steps: int = 100  # loss evaluations per scale
    small: int = 128  # the preprint's grid (12 runs)
    sizes: tuple[int, int] = (128, 256)  # the two sizes of the per-position comparison
    large: int = 384  # the coarse-to-fine comparison
    seconds: float = 30.0  # its time budget per run

    @property
    def config(self) -> Config:
        """The settings of every run: the library's defaults (the paper's network, alpha/beta
        per position) from white noise as in the paper, with two scales (e.g. 96 then 192
        px) instead of the paper's one, to be rid of the noise in few steps."""
        return Config(size=self.size, steps=self.steps, scales=2, init="noise")


def budget(quick: bool | None = None) -> Budget:
    """Small images and few steps in quick mode (``NST_QUICK=1``, CI), else the full ones."""
    quick = quick_mode() if quick is None else quick
    if quick:
        return Budget(size=48, steps=4, small=32, sizes=(32, 64), large=64, seconds=2.0)
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
    ratio = s.config.ratio
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
    # half the steps per scale, so that coarse to fine reaches the full size in time; the
    # single scale gets ten times that, so that time, not steps, ends both runs
    timed = dict(FIG6, size=s.large, time_limit=s.seconds)
    return {"coarse to fine, scales=3": timed | dict(scales=3, steps=max(1, s.steps // 2)),
            "single scale, scales=1": timed | dict(scales=1, steps=5 * s.steps)}


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
    """The run time and the number of loss evaluations, as a caption."""
    return f"{result.seconds:.0f} s, {len(result.history)} evaluations"


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
    "resolution": Experiment("The same time at 384 px", _resolution, caption=timing,
                             width=4.5),
    "blends": Experiment("Two styles blended", _blends),
}


def runs(name: str, s: Budget | None = None) -> dict[str, dict]:
    """The table of runs of experiment ``name``: ``{title: changes}``."""
    return EXPERIMENTS[name].runs(s or budget())


def calibrated_weights(images: Sequence[str], pooling: str = "avg") -> Path:
    """A weights file of VGG19 normalised on other ``images`` (files in ``data/``):
    :func:`nst_lib.vgg.normalized_caffe`, computed once and cached; for the default
    images it is the file of ``weights="caffe-normalized"``."""
    return normalized_caffe(pooling, [example(name) for name in images])


def config_of(changes: Mapping, s: Budget | None = None) -> Config:
    """The Config of one run: :attr:`Budget.config` with alpha = 1, beta = 1 / ratio
    and the run's Config fields."""
    s = s or budget()
    fields_ = {k: v for k, v in changes.items() if k not in ("content", "style", "ratio",
                                                             "color", "calibration")}
    if "calibration" in changes:
        pooling = changes.get("pooling", s.config.pooling)
        fields_["weights"] = str(calibrated_weights(changes["calibration"], pooling))
    ratio = changes.get("ratio", s.config.ratio)
    return replace(s.config, alpha=1.0, beta=1.0 / ratio, **fields_)


def run(changes: Mapping, s: Budget | None = None, *, runner: Runner = cached_transfer,
        progress: bool = False) -> Result:
    """One run of a table: its images, its Config (:func:`config_of`) and, with
    ``color``, :func:`nst_lib.color.transfer_preserving_color` around ``runner``."""
    content = picture(changes.get("content", PHOTO))
    style = changes["style"]
    style = [picture(n) for n in style] if isinstance(style, tuple) else picture(style)
    config = config_of(changes, s)
    if "color" in changes:
        return transfer_preserving_color(content, style, config, method=changes["color"],
                                         runner=runner, progress=progress)
    return runner(content, style, config, progress=progress)


def results(name: str, s: Budget | None = None, *, runner: Runner = cached_transfer,
            progress: bool = False) -> dict[str, Result]:
    """The runs of experiment ``name``, ``{title: Result}``, each through ``runner``."""
    return {title: run(changes, s, runner=runner, progress=progress)
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
           progress: bool = False) -> Figure:
    """Experiment ``name`` as one figure (:func:`nst_lib.plot.images`)."""
    s = s or budget()
    exp, table = EXPERIMENTS[name], runs(name, s)
    done = results(name, s, runner=runner, progress=progress)
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


# ------------------------------------------------------------------------ the command

def precompute(s: Budget | None = None, *, progress: bool = True) -> float:
    """Run (or find in the cache) every transfer notebook 5 shows; returns the seconds taken."""
    s = s or budget()
    start = time.perf_counter()
    for name in EXPERIMENTS:
        t = time.perf_counter()
        results(name, s, progress=progress)
        print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nst_lib.experiments",
        description="Fill the result cache for notebooks/05_experiments.ipynb.")
    parser.add_argument("--precompute", action="store_true",
                        help="run every transfer the notebook shows (or find it in the cache)")
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
        seconds = precompute(s, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted: the runs that finished are kept; run the same command again to "
              "go on", file=sys.stderr)
        return 130
    print(f"done in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
