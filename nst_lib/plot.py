"""Matplotlib figures for the notebooks: image rows, loss curves, Gram heatmaps, feature maps;
and :func:`animation`, a run's pictures as an animated GIF (Pillow).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so it is
drawn once when it is the last expression of a notebook cell (after ``%matplotlib inline``)
and can be made from any thread (the widgets draw in a background thread). Save one with
``fig.savefig("out.png")``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Union

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from .image import load_image, to_pil
from .optimize import Result

Picture = Union[torch.Tensor, Image.Image, str, os.PathLike]  # tensor (1, 3, H, W) in [0, 1]


def _pil(picture: Picture) -> Image.Image:
    if isinstance(picture, Image.Image):
        return picture
    if isinstance(picture, torch.Tensor):
        return to_pil(picture)
    return to_pil(load_image(picture))


def images(
    pictures: Sequence[Picture] | Mapping[str, Picture],
    *,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    width: float = 3.0,
    title: str | None = None,
) -> Figure:
    """A row (or grid) of images with titles, e.g. ``images({"photo": x, "conv4_2": y})``.

    ``pictures``: tensors (1, 3, H, W) in [0, 1], PIL images or file paths; a mapping's keys
    are the titles. ``ncols``: images per row (default: all in one row). ``width``: inches
    per image.
    """
    if isinstance(pictures, Mapping):
        titles, pictures = list(pictures.keys()), list(pictures.values())
    pils = [_pil(p) for p in pictures]
    if not pils:
        raise ValueError("images() needs at least one picture.")
    titles = list(titles) if titles is not None else [""] * len(pils)
    ncols = min(ncols or len(pils), len(pils))
    nrows = math.ceil(len(pils) / ncols)
    aspect = max(p.height / p.width for p in pils)
    height = width * aspect * nrows + 0.4 * (1 + bool(title))
    fig, axes = _panels(nrows, ncols, width * ncols, height, title)
    for ax, pil, name in zip(axes, pils, titles):
        ax.imshow(pil)
        ax.set_title(name, fontsize=10)
    return fig


def _panels(nrows: int, ncols: int, width: float, height: float, title: str | None):
    """A figure of nrows x ncols image panels without axes, and its panels in reading order."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig, axes


def grid(rows: Sequence[Sequence[torch.Tensor]], *, row_labels: Sequence[str] | None = None,
         col_labels: Sequence[str] | None = None, title: str | None = None,
         width: float = 2.4) -> Figure:
    """Rows of images as one :func:`images` figure; each picture is titled by
    its column's label (top row) and its row's label (first column)."""
    ncols = max(len(r) for r in rows)
    pictures, titles = [], []
    for i, r in enumerate(rows):
        for j in range(ncols):
            pictures.append(r[j] if j < len(r) else torch.ones_like(r[0]))
            parts = [col_labels[j] if col_labels and i == 0 and j < len(col_labels) else "",
                     row_labels[i] if row_labels and j == 0 else ""]
            titles.append("\n".join(p for p in parts if p))
    return images(pictures, titles=titles, ncols=ncols, width=width, title=title)




def contact_sheet(
    pictures: Sequence[Picture],
    captions: Sequence[str],
    *,
    ncols: int = 4,
    width: float = 3.0,
    fontsize: float = 8.0,
    title: str | None = None,
) -> Figure:
    """A grid of pictures, each with a caption of one or more lines below it, left-aligned:
    e.g. several runs, each with its settings.

    ``pictures`` as in :func:`images`; one caption per picture (``"\n"`` between lines).
    ``ncols``: pictures per row; ``width``: inches per picture. The captions may reach
    past the figure's edge: save it with ``bbox_inches="tight"`` (``to_png(fig, tight=True)``).
    """
    if len(pictures) != len(captions):
        raise ValueError(f"contact_sheet() got {len(pictures)} pictures but "
                         f"{len(captions)} captions; give one caption per picture.")
    fig = images(pictures, ncols=ncols, width=width, title=title)
    lines = max(caption.count("\n") + 1 for caption in captions)
    nrows = math.ceil(len(pictures) / min(ncols, len(pictures)))
    w, h = fig.get_size_inches()
    fig.set_size_inches(w, h + nrows * lines * fontsize * 1.7 / 72)  # room for the captions
    for ax, caption in zip(fig.axes, captions):
        ax.text(0, -0.02, caption, transform=ax.transAxes, ha="left", va="top",
                fontsize=fontsize)
    return fig


def _loss_axes(ax, heading: str, history: Sequence[Mapping], log: bool) -> None:
    ax.set_title(heading, fontsize=10)
    ax.set_xlabel("loss evaluation")
    if log:
        ax.set_yscale("log")
    if ax.lines:
        ax.legend(fontsize=8)
    for h0, h1 in zip(history, history[1:]):  # coarse-to-fine: mark where a scale starts
        if h1.get("scale", 0) != h0.get("scale", 0):
            ax.axvline(h1["step"], color="grey", lw=0.8, ls=":")


def loss_curves(
    run: Result | Sequence[Mapping],
    *,
    alpha: float | None = None,
    beta: float | None = None,
    log: bool = True,
    title: str | None = None,
) -> Figure:
    """Two panels: the terms of eq. 7 (total, alpha L_content, beta L_style) and each layer's term.

    ``run``: a :class:`~nst_lib.Result` or its ``history`` (a list of dicts with ``loss``,
    ``content``, ``style`` and ``layers``). ``alpha``/``beta`` default to the result's
    config, else 1. The per-layer panel shows L_content for content layers and E_l (eq. 4,
    before w_l and beta) for style layers.
    """
    history = run.history if isinstance(run, Result) else list(run)
    config = run.config if isinstance(run, Result) else None
    alpha = alpha if alpha is not None else (config.alpha if config else 1.0)
    beta = beta if beta is not None else (config.beta if config else 1.0)
    steps = [h["step"] for h in history]
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    terms, layers = fig.subplots(1, 2)
    curves = {  # name -> (values, line style); the total is dashed so it shows over a term
        "total (eq. 7)": ([h["loss"] for h in history], dict(color="black", ls="--", zorder=3)),
        "α · L_content": ([alpha * h["content"] for h in history], dict(color="tab:blue")),
        "β · L_style": ([beta * h["style"] for h in history], dict(color="tab:orange")),
    }
    for name, (values, style) in curves.items():
        if any(v > 0 for v in values):
            terms.plot(steps, _positive(values, log), label=name, **style)
    names = list(dict.fromkeys(name for h in history for name in h["layers"]))
    for name in names:
        layers.plot(steps, _positive([h["layers"].get(name, math.nan) for h in history], log),
                    label=name)
    for ax, heading in ((terms, "terms of the total loss"), (layers, "per layer (unweighted)")):
        _loss_axes(ax, heading, history, log)
    if title:
        fig.suptitle(title)
    return fig


def _positive(values: list[float], log: bool) -> list[float]:
    return [v if v > 0 or not log else math.nan for v in values]  # log axes cannot show <= 0


def gram_heatmap(
    grams: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    channels: int | None = 64,
    title: str | None = None,
) -> Figure:
    """Heatmap of one or more Gram matrices (N, N), e.g. ``gram_heatmap({"cat": g1, "painting": g2})``.

    ``channels``: show only the first ``channels`` filters (None = all N). Each panel has its
    own colour bar; G_ij is large when filters i and j are active at the same places.
    """
    if isinstance(grams, torch.Tensor):
        grams = {"": grams}
    fig = Figure(figsize=(4.2 * len(grams), 3.8), layout="constrained")
    axes = fig.subplots(1, len(grams), squeeze=False)[0]
    for ax, (name, gram) in zip(axes, grams.items()):
        g = gram.detach().to("cpu", torch.float32).squeeze()
        if g.dim() != 2 or g.shape[0] != g.shape[1]:
            raise ValueError(f"A Gram matrix is square (N, N); got shape {tuple(gram.shape)}.")
        g = g[:channels, :channels] if channels else g
        shown = ax.imshow(g.numpy(), cmap="magma", interpolation="nearest")
        fig.colorbar(shown, ax=ax, shrink=0.8)
        ax.set_title(name or f"Gram matrix, first {len(g)} filters", fontsize=10)
        ax.set_xlabel("filter j")
        ax.set_ylabel("filter i")
    if title:
        fig.suptitle(title)
    return fig


def feature_maps(
    features: torch.Tensor,
    *,
    channels: int | Sequence[int] = 16,
    order: str = "activity",
    ncols: int = 8,
    width: float = 1.5,
    title: str | None = None,
) -> Figure:
    """A grid of feature maps of one layer, each as a greyscale image (bright = strong response).

    ``features``: (1, N, H, W) or (N, H, W). ``channels``: how many maps, or which indices.
    ``order``: with a count, "activity" picks the most active maps (largest mean response),
    "index" the first ones. Each map is scaled to its own maximum.
    """
    f = features.detach().to("cpu", torch.float32)
    f = f[0] if f.dim() == 4 else f  # (N, H, W)
    if isinstance(channels, int):
        if order not in ("activity", "index"):
            raise ValueError(f"order must be 'activity' or 'index', got {order!r}.")
        count = min(channels, f.shape[0])
        picked = (f.mean(dim=(1, 2)).argsort(descending=True)[:count].tolist()
                  if order == "activity" else list(range(count)))
    else:
        picked = list(channels)
    ncols = min(ncols, len(picked))
    nrows = math.ceil(len(picked) / ncols)
    aspect = f.shape[1] / f.shape[2]
    height = (width * aspect + 0.25) * nrows + 0.4 * bool(title)
    fig, axes = _panels(nrows, ncols, width * ncols, height, title)
    for ax, index in zip(axes, picked):
        ax.imshow(f[index].numpy(), cmap="gray", vmin=0, interpolation="nearest")
        ax.set_title(f"#{index}", fontsize=8)
    return fig


def receptive_fields(
    picture: Picture, sizes: Mapping[str, int], *, width: float = 6.0, title: str | None = None
) -> Figure:
    """The image with one centred square per layer, as large as that layer's receptive field.

    ``sizes``: layer name -> receptive field in input pixels (one side of the square).
    """
    pil = _pil(picture)
    fig = Figure(figsize=(width * 1.35, width * pil.height / pil.width + 0.4),
                 layout="constrained")
    ax = fig.subplots()
    ax.imshow(pil)
    cx, cy = pil.width / 2, pil.height / 2
    colours = ["#ffffff", "#ffe066", "#ff9f40", "#ff4d6d", "#3fa7ff", "#b28dff"]
    for k, (name, side) in enumerate(sizes.items()):
        ax.add_patch(Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, lw=1.8,
                               edgecolor=colours[k % len(colours)], label=f"{name}: {side} px"))
    half = max(sizes.values(), default=0) / 2  # squares may be larger than the image
    ax.set_xlim(min(0, cx - half) - 4, max(pil.width, cx + half) + 4)
    ax.set_ylim(max(pil.height, cy + half) + 4, min(0, cy - half) - 4)
    ax.set_facecolor("0.25")  # shows where a square reaches past the image
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, facecolor="0.85")
    if title:
        ax.set_title(title)
    return fig


def to_png(fig: Figure, *, dpi: int = 80, tight: bool = False) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image``); ``tight``: cropped to what is
    drawn, including text outside the axes (:func:`contact_sheet`'s captions)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    return buffer.getvalue()


def animation(
    frames: Sequence[torch.Tensor],
    path: str | os.PathLike | None = None,
    *,
    fps: float = 10.0,
    hold: float = 1.0,
) -> bytes:
    """An animated GIF of ``frames``, tensors (1, 3, H, W) in [0, 1], played once a loop.

    ``frames``: e.g. the pictures a run's callback receives (``Step.image``), then the
    result. Each frame is scaled to the size of the last (the result), so the small
    pictures of coarse-to-fine's first scales fill the frame too. ``fps``: frames per
    second; the last frame stays ``hold`` seconds. A frame equal to the one before only adds
    its time to it (Pillow merges them), so the GIF may have fewer frames than ``frames``.
    Returns the GIF's bytes and writes them to ``path`` if one is given.
    """
    if not frames:
        raise ValueError("animation() needs at least one frame.")
    size = tuple(frames[-1].shape[-2:])  # (H, W) of the result
    pils = [to_pil(_scaled(frame.detach().cpu().float(), size)) for frame in frames]
    durations = [round(1000 / fps)] * (len(pils) - 1) + [round(1000 * hold)]
    buffer = io.BytesIO()
    pils[0].save(buffer, format="GIF", save_all=True, append_images=pils[1:],
                 duration=durations, loop=0)
    data = buffer.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


def _scaled(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, h, w) -> (1, 3, H, W), bilinear; unchanged if it has that size already."""
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def algorithm(style: Picture | None = None, start: Picture | None = None,
              content: Picture | None = None) -> Figure:
    """The paper's algorithm as a diagram (CVPR 2016, Fig. 2), in its three columns.

    Left, the style image a through VGG19: its Gram matrices A^l on conv1_1 ... conv5_1,
    stored once. Right, the content image p: its response P^l on conv4_2, stored once.
    Middle, the image x, white noise at first, through the same network: its G^l and F^l
    against the stored targets give E_l (eq. 4) and L_content (eq. 1); eq. 5 and eq. 7 add
    them up, and the gradient of L_total (back-propagation) is what L-BFGS changes x by.
    ``style``, ``start``, ``content``: pictures to draw in place of the three boxes.
    """
    fig = Figure(figsize=(9.5, 5.8), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, 12)
    ax.set_ylim(-0.3, 10.0)
    ax.set_axis_off()
    columns = {"style": 2.0, "x": 6.0, "content": 10.0}
    blocks = [(f"conv{b}_1", f"conv{b}_2") for b in range(1, 6)]
    height = 0.8

    def block_y(b: int) -> float:  # the centre of block b (0 = conv1)
        return 3.0 + 1.05 * b

    pictures = {"style": (style, "style image $\\vec a$"),
                "x": (start, "$\\vec x$: white noise at first"),
                "content": (content, "content image $\\vec p$")}
    for key, (picture, label) in pictures.items():
        cx = columns[key]
        if picture is not None:
            ax.imshow(_pil(picture), extent=(cx - 0.9, cx + 0.9, 0.6, 2.2), aspect="auto",
                      zorder=2)
        else:
            ax.add_patch(Rectangle((cx - 0.9, 0.6), 1.8, 1.6, facecolor="#eeeeee",
                                   edgecolor="grey"))
        ax.text(cx, 0.25, label, ha="center", va="center", fontsize=9)
        ax.annotate("", xy=(cx, block_y(0) - height / 2), xytext=(cx, 2.25),
                    arrowprops=dict(arrowstyle="->", color="grey"))
        for b, names in enumerate(blocks):
            y = block_y(b)
            used = {"style": names[0], "content": "conv4_2" if b == 3 else None,
                    "x": names[0] if b != 3 else "conv4_1, conv4_2"}[key]
            ax.add_patch(Rectangle((cx - 0.9, y - height / 2), 1.8, height,
                                   facecolor="#dbe8f6" if used else "#f4f4f4",
                                   edgecolor="#4a6fa5" if used else "#bbbbbb"))
            ax.text(cx, y, used or f"block {b + 1}", ha="center", va="center", fontsize=8,
                    color="black" if used else "grey")
    ax.text(columns["x"], block_y(4) + 0.75, "VGG19 (normalised, average pooling), fixed",
            ha="center", fontsize=8, color="grey")
    for b in range(5):  # the style layers: A^l against G^l, E_l
        y = block_y(b)
        ax.text(columns["style"] + 1.0, y, "$A^{l}$", va="center", fontsize=9)
        ax.annotate("", xy=(columns["style"] + 1.5, y), xytext=(columns["x"] - 1.5, y),
                    arrowprops=dict(arrowstyle="<->", color="#b5533c"))
        ax.text(columns["x"] - 0.95, y, "$G^{l}$", va="center", ha="right", fontsize=9)
        ax.text((columns["style"] + columns["x"]) / 2, y + 0.12, f"$E_{b + 1}$",
                ha="center", va="bottom", fontsize=9, color="#b5533c")
    y = block_y(3)  # the content layer
    ax.text(columns["x"] + 1.0, y, "$F^{l}$", va="center", fontsize=9)
    ax.annotate("", xy=(columns["x"] + 1.5, y), xytext=(columns["content"] - 1.5, y),
                arrowprops=dict(arrowstyle="<->", color="#3c7d4f"))
    ax.text(columns["content"] - 1.0, y, "$P^{l}$", va="center", ha="right", fontsize=9)
    ax.text((columns["x"] + columns["content"]) / 2, y + 0.12,
            "$\\mathcal{L}_{content}$ (eq. 1)", ha="center", va="bottom", fontsize=9,
            color="#3c7d4f")
    top = block_y(4) + 1.35
    ax.text(columns["style"] + 2.0, top, "$\\mathcal{L}_{style} = \\sum_l w_l E_l$, "
            "$w_l = 1/5$ (eq. 5)", ha="center", fontsize=9, color="#b5533c")
    ax.text(columns["x"] + 2.4, top + 0.6, "$\\mathcal{L}_{total} = \\alpha\\, "
            "\\mathcal{L}_{content} + \\beta\\, \\mathcal{L}_{style}$ (eq. 7)", ha="center",
            fontsize=10)
    ax.annotate("gradient of $\\mathcal{L}_{total}$ (back-propagation):\nL-BFGS changes "
                "$\\vec x$, never the network", xy=(columns["x"] + 0.95, 1.4),
                xytext=(columns["x"] + 2.4, top + 0.35), ha="center", va="top", fontsize=8,
                arrowprops=dict(arrowstyle="->", color="black",
                                connectionstyle="arc3,rad=-0.35"))
    ax.text(columns["style"], -0.15, "targets computed once", ha="center", fontsize=8,
            color="grey")
    ax.text(columns["content"], -0.15, "targets computed once", ha="center", fontsize=8,
            color="grey")
    ax.text(columns["x"], -0.15, "computed at every evaluation", ha="center", fontsize=8,
            color="grey")
    fig.suptitle("The algorithm (CVPR 2016, Fig. 2)", fontsize=11)
    return fig
