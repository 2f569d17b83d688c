"""The paper's experiments, and the controls that came after it: one function per figure.

Notebook 5 calls these; each runs its transfers through the disk cache
(:mod:`nst_lib.cache`), so a figure computed once shows at once. Compute everything the
notebook shows ahead of time (e.g. the evening before class) with::

    python -m nst_lib.experiments --precompute

Run functions return ``{title: Result}``; :func:`row` draws them. :func:`tradeoff_grid` and
:func:`normalisation_grid` return a whole figure.

**alpha/beta "per position".** Eq. 1 sums over the M_l positions of the content layer while
eq. 4 divides by M_l^2, so with the equations as written the weight of the content term
grows with the image's area and no fixed alpha/beta means the same thing at two sizes.
Measured on chelsea.png and starry_night.jpg (:func:`magnitudes`, :func:`normalisation_grid`):

- VGG19 as trained (``weights="caffe"``): its filters' responses differ in scale by orders
  of magnitude, and E_l with them (photo against painting: ~5e5 at conv1_1, 3e7 at conv2_1,
  1e7 at conv3_1, 9e8 at conv4_1, 1e4 at conv5_1), so conv4_1 dominates the style loss. At
  128 px the paper's 1e-5, 1e-4 and 1e-3 all give the painting's texture, only 1e-2 shows
  the cat; at 256 px eq. 1 is 4 times larger and 1e-3 gives a good transfer.
- the normalised network (``weights="caffe-normalized"``, every filter's mean response 1):
  all E_l are ~0.5-6, eq. 1 of a noise image is ~1.6e6 at 128 px (6.6e6 at 256 px). With
  the paper's values the cat dominates everywhere; the progression happens at 1e-7 ... 1e-5
  at 128 px, i.e. about M_l = 160 (the positions of conv4_2) times lower.
- the normalised network with alpha/beta per position of the content layer
  (``alpha = ratio / M_l``, :func:`alpha_per_position`): the paper's 1e-5 gives texture,
  1e-4 texture with a hint of the cat, 1e-3 the cat in the painting's style and 1e-2 mostly
  the photo, as in its Fig. 4 (and Fig. 2 at 1e-3). Both terms are then independent of the
  image size (eq. 1 per position of noise: ~1e4 at 128 and at 256 px), so a ratio means
  the same at any size.

That last setting is what the notebook uses, so its ratios are the paper's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Callable

import torch
from matplotlib.figure import Figure

from .cache import cached_transfer, directory
from .color import transfer_preserving_color
from .config import STYLE_LAYERS, Config, quick_mode
from .image import example, load_image, resize, target_shape, to_pil
from .optimize import Result, Targets
from .vgg import LAYERS, vgg19

PAPER_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2)  # the columns of the paper's Fig. 4
LAYER_SETS = tuple(STYLE_LAYERS[:k] for k in range(1, 6))  # its rows: conv1_1, ... conv1_1-conv5_1
Runner = Callable[..., Result]


@dataclass(frozen=True)
class Settings:
    """The sizes and step counts of notebook 5, in one place."""

    size: int = 160  # longest side (px) of the grids and rows
    steps: int = 100  # loss evaluations per scale
    large: int = 512  # the high-resolution comparison
    seconds: float = 60.0  # its time budget per run
    ratio: float = 1e-3  # alpha/beta per position (module docstring), paper Fig. 2

    @property
    def config(self) -> Config:
        """The settings of every run: from white noise as in the paper, the normalised
        network, two scales (e.g. 80 then 160 px) instead of the paper's one, to be rid of
        the noise in few steps; alpha comes from ``ratio`` per position."""
        return Config(size=self.size, steps=self.steps, scales=2, init="noise",
                      weights="caffe-normalized")


def settings(quick: bool | None = None) -> Settings:
    """Small images and few steps in quick mode (``NST_QUICK=1``, CI), else the full ones."""
    quick = quick_mode() if quick is None else quick
    return Settings(size=48, steps=4, large=64, seconds=2.0) if quick else Settings()


def images() -> dict[str, torch.Tensor]:
    """The notebook's pictures at full size: the photo, the painting and a second style, a
    greyscale brick texture."""
    return {
        "photo": load_image(example("chelsea.png")),
        "painting": load_image(example("starry_night.jpg")),
        "texture": load_image(example("brick.png")),
    }


def positions(layer: str, shape: tuple[int, int]) -> int:
    """M_l: the number of positions of ``layer``'s feature maps for an H x W image."""
    pools = sum(1 for name, index in LAYERS.items()
                if name.startswith("pool") and index < LAYERS[layer])
    h, w = shape
    return (h // 2**pools) * (w // 2**pools)


def alpha_per_position(ratio: float, content: torch.Tensor, config: Config) -> float:
    """alpha that makes ``ratio`` act per position of the content layer: ratio / M_l.

    With beta = 1, alpha * L_content = ratio * (L_content / M_l), the content loss per
    position, for the result's size (``config.size``, the content's aspect). With several
    content layers, the first one's M_l is used. See the module docstring for why.
    """
    h, w = content.shape[-2:]
    shape = target_shape(h, w, config.size) if config.size else (h, w)
    return ratio / positions(config.content_layers[0], shape)


def _weighted(config: Config | None, content: torch.Tensor, ratio: float,
              per_position: bool = True) -> Config:
    """``config`` (default: the notebook's) with beta = 1 and alpha for ``ratio``."""
    config = config or settings().config
    alpha = alpha_per_position(ratio, content, config) if per_position else ratio
    return replace(config, alpha=alpha, beta=1.0)


def tradeoff_runs(
    content: torch.Tensor,
    style: torch.Tensor,
    config: Config,
    *,
    ratios: Sequence[float] = PAPER_RATIOS,
    layer_sets: Sequence[Sequence[str]] = LAYER_SETS,
    per_position: bool = True,
    runner: Runner = cached_transfer,
    progress: bool = False,
) -> dict[tuple[tuple[str, ...], float], Result]:
    """The runs of Fig. 4: ``{(style layers, ratio): Result}``, each through ``runner``."""
    runs = {}
    for layers in layer_sets:
        layered = replace(config, style_layers=tuple(layers), style_weights=None)
        for ratio in ratios:
            cell = _weighted(layered, content, ratio, per_position)
            runs[tuple(layers), ratio] = runner(content, style, cell, progress=progress)
    return runs


def tradeoff_grid(
    content: torch.Tensor,
    style: torch.Tensor,
    config: Config | None = None,
    *,
    ratios: Sequence[float] = PAPER_RATIOS,
    layer_sets: Sequence[Sequence[str]] = LAYER_SETS,
    per_position: bool = True,
    runner: Runner = cached_transfer,
    progress: bool = False,
    title: str | None = None,
) -> Figure:
    """Paper Fig. 4 as one figure: rows = style layers, columns = alpha/beta.

    Row k matches the style at conv1_1 ... convk_1 (w_l = 1/k), column j uses alpha/beta =
    ``ratios[j]`` (per position of the content layer unless ``per_position=False``: see the
    module docstring). Each cell is one run of ``runner`` (the disk cache by default).
    Returns a Figure with ``len(layer_sets)`` x ``len(ratios)`` axes.
    """
    config = config or settings().config
    runs = tradeoff_runs(content, style, config, ratios=ratios, layer_sets=layer_sets,
                         per_position=per_position, runner=runner, progress=progress)
    rows = [[runs[tuple(layers), r].image for r in ratios] for layers in layer_sets]
    labels = [layers[0] if len(layers) == 1 else f"{layers[0]} … {layers[-1]}"
              for layers in layer_sets]
    return grid(rows, row_labels=labels, col_labels=[f"α/β = {r:g}" for r in ratios],
                title=title)


NETWORKS = {  # label -> (weights, alpha/beta per position)
    "as trained\neq. 1 as written": ("caffe", False),
    "normalised\neq. 1 as written": ("caffe-normalized", False),
    "normalised\nα/β per position": ("caffe-normalized", True),
}


def normalisation_grid(
    content: torch.Tensor,
    style: torch.Tensor,
    config: Config | None = None,
    *,
    ratios: Sequence[float] = PAPER_RATIOS,
    runner: Runner = cached_transfer,
    progress: bool = False,
) -> Figure:
    """The paper's ratios with all five style layers, one row per setting of :data:`NETWORKS`.

    Which network and which reading of alpha/beta give the paper's progression from
    texture (1e-5) to photo (1e-2)? The last row is the last row of :func:`tradeoff_grid`.
    """
    config = config or settings().config
    rows = []
    for weights, per_position in NETWORKS.values():
        runs = tradeoff_runs(content, style, replace(config, weights=weights), ratios=ratios,
                             layer_sets=[STYLE_LAYERS], per_position=per_position,
                             runner=runner, progress=progress)
        rows.append([runs[STYLE_LAYERS, r].image for r in ratios])
    return grid(rows, row_labels=list(NETWORKS), col_labels=[f"α/β = {r:g}" for r in ratios])


def magnitudes(
    content: torch.Tensor,
    style: torch.Tensor,
    *,
    weights: str = "caffe",
    pooling: str = "avg",
    size: int = 128,
    layers: Sequence[str] = STYLE_LAYERS,
) -> dict[str, float]:
    """The size of each loss term before weighting, at ``size`` px.

    ``"content (noise)"``: eq. 1 at conv4_2 for a white-noise image (seed 0) against the
    photo; ``layer``: E_l (eq. 4) of the photo itself against the painting, the style
    loss a transfer starts with from the photo.
    """
    model = vgg19(weights, pooling=pooling, device="cpu")
    photo, painting = resize(content, size), resize(style, size)
    noise = torch.rand(photo.shape, generator=torch.Generator().manual_seed(0))
    config = Config(content_layers=("conv4_2",), style_layers=tuple(layers))
    targets = Targets(model, config, photo, painting)  # the targets a transfer uses
    with torch.no_grad():
        from_noise = targets.losses(model, noise, 1.0, 1.0)[3]  # per-layer terms
        from_photo = targets.losses(model, photo, 1.0, 1.0)[3]
    return {"content (noise)": from_noise["conv4_2"].item(),
            **{name: from_photo[name].item() for name in layers}}


def initialisations(
    content: torch.Tensor,
    style: torch.Tensor,
    config: Config | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3),
    ratio: float = 1e-3,
    runner: Runner = cached_transfer,
    progress: bool = False,
) -> dict[str, Result]:
    """Paper Fig. 6: the same transfer from the photo, from the painting and from white
    noise with each seed, single scale (``scales=1``) as in the paper, with twice
    ``config.steps`` (the evaluations of two scales, at a higher price each)."""
    config = config or settings().config
    config = _weighted(replace(config, scales=1, steps=2 * config.steps), content, ratio)
    starts = {"from the photo": dict(init="content"), "from the painting": dict(init="style")}
    starts |= {f"white noise, seed {s}": dict(init="noise", seed=s) for s in seeds}
    return {title: runner(content, style, replace(config, **change), progress=progress)
            for title, change in starts.items()}


def poolings(
    content: torch.Tensor,
    style: torch.Tensor,
    config: Config | None = None,
    *,
    ratio: float = 1e-3,
    runner: Runner = cached_transfer,
    progress: bool = False,
) -> dict[str, Result]:
    """Average pooling (the paper's choice) against max pooling (VGG19 as trained).

    With ``weights="caffe-normalized"`` each pooling has its own normalisation, computed
    with that pooling."""
    config = _weighted(config, content, ratio)
    return {f"{p} pooling": runner(content, style, replace(config, pooling=p),
                                   progress=progress) for p in ("avg", "max")}


def colors(
    content: torch.Tensor,
    style: torch.Tensor,
    config: Config | None = None,
    *,
    ratio: float = 1e-3,
    runner: Runner = cached_transfer,
    progress: bool = False,
) -> dict[str, Result]:
    """Plain transfer, luminance-only transfer and colour histogram matching (Gatys et al.
    2017, Sec. 5; :mod:`nst_lib.color`)."""
    config = _weighted(config, content, ratio)
    out = {"plain transfer": runner(content, style, config, progress=progress)}
    for title, method in (("luminance only", "luminance"), ("histogram matching", "histogram")):
        out[title] = transfer_preserving_color(content, style, config, method=method,
                                               runner=runner, progress=progress)
    return out


def resolutions(
    content: torch.Tensor,
    style: torch.Tensor,
    config: Config | None = None,
    *,
    size: int = 512,
    seconds: float = 60.0,
    ratio: float = 1e-3,
    runner: Runner = cached_transfer,
    progress: bool = False,
) -> dict[str, Result]:
    """Coarse to fine (``scales=3``) against one scale at ``size`` px, ``seconds`` each.

    The single-scale run gets ten times the evaluations per scale, so that the time limit,
    not the step count, ends both runs.
    """
    config = replace(config or settings().config, size=size, time_limit=seconds)
    config = _weighted(config, content, ratio)
    return {
        "coarse to fine, scales=3": runner(content, style, replace(config, scales=3),
                                           progress=progress),
        "single scale, scales=1": runner(content, style,
                                         replace(config, scales=1, steps=10 * config.steps),
                                         progress=progress),
    }


def blends(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    config: Config | None = None,
    *,
    weights: Sequence[float] = (0.0, 0.5, 1.0),
    ratio: float = 1e-3,
    runner: Runner = cached_transfer,
    progress: bool = False,
) -> dict[str, Result]:
    """Two styles blended: ``style_blend=(w, 1 - w)`` for each w in ``weights``: w = 1 is
    the first style alone, w = 0 the second."""
    config = _weighted(config, content, ratio)
    return {f"w = {w:g}": runner(content, list(styles), replace(config, style_blend=(w, 1 - w)),
                                 progress=progress) for w in weights}


def grid(
    rows: Sequence[Sequence[torch.Tensor]],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    width: float = 2.4,
) -> Figure:
    """Images (1, 3, H, W) in rows, with labels on the left and on top: one Figure."""
    nrows, ncols = len(rows), max(len(r) for r in rows)
    aspect = max(im.shape[-2] / im.shape[-1] for r in rows for im in r)
    left = 0.5 if row_labels else 0.0
    fig = Figure(figsize=(width * ncols + left, width * aspect * nrows + 0.35 * (nrows + 1)
                          + 0.3 * bool(title)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, r in enumerate(rows):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(r):
                ax.imshow(to_pil(r[j]))
            if captions and j < len(captions[i]):
                ax.set_xlabel(captions[i][j], fontsize=9)
            if row_labels and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=9)
            if col_labels and i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=10)
    if title:
        fig.suptitle(title)
    return fig


def row(
    pictures: Mapping[str, Result | torch.Tensor],
    *,
    timings: bool = False,
    title: str | None = None,
    width: float = 3.0,
) -> Figure:
    """One row of pictures titled by their keys; Results show their image, and with
    ``timings`` their run time and number of loss evaluations underneath."""
    images_ = [p.image if isinstance(p, Result) else p for p in pictures.values()]
    captions = None
    if timings:
        captions = [[f"{p.seconds:.0f} s, {len(p.history)} evaluations"
                     if isinstance(p, Result) else "" for p in pictures.values()]]
    return grid([images_], col_labels=list(pictures), captions=captions, title=title,
                width=width)


def precompute(s: Settings | None = None, *, progress: bool = True) -> float:
    """Run (or find in the cache) every transfer notebook 5 shows; returns the seconds taken."""
    s = s or settings()
    pics = images()
    photo, painting, texture = pics["photo"], pics["painting"], pics["texture"]
    start = time.perf_counter()
    steps = [
        ("Fig. 4 grid", lambda: tradeoff_grid(photo, painting, s.config, progress=progress)),
        ("networks", lambda: normalisation_grid(photo, painting, s.config, progress=progress)),
        ("Fig. 6 initialisations",
         lambda: initialisations(photo, painting, s.config, ratio=s.ratio, progress=progress)),
        ("pooling", lambda: poolings(photo, painting, s.config, ratio=s.ratio, progress=progress)),
        ("colour", lambda: colors(photo, painting, s.config, ratio=s.ratio, progress=progress)),
        ("resolution", lambda: resolutions(photo, painting, s.config, size=s.large,
                                           seconds=s.seconds, ratio=s.ratio,
                                           progress=progress)),
        ("two styles", lambda: blends(photo, [painting, texture], s.config, ratio=s.ratio,
                                      progress=progress)),
    ]
    for name, compute in steps:
        t = time.perf_counter()
        compute()
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
    s = settings(quick=True if args.quick else None)
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
