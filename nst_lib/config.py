"""Defaults for a run, in one frozen dataclass.

Override a field with ``dataclasses.replace(nst.Config(), steps=50)`` or with keywords to
:func:`nst_lib.transfer`.  Everything a result depends on is a field here, so a
:class:`Config` is also the key of a result cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

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
    content_layers: tuple[str, ...] = CONTENT_LAYERS  # matched by eq. 1
    style_layers: tuple[str, ...] = STYLE_LAYERS  # matched by eq. 4-5
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
    steps: int = 50  # loss evaluations per scale (150 in all with scales=3)
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


def split_settings(config: Config | None, kwargs: dict) -> tuple[Config, dict]:
    """``config`` with the Config fields among ``kwargs`` applied, and the other keywords
    (e.g. ``model`` or ``progress``), for functions that take both as keywords."""
    names = {f.name for f in fields(Config)}
    settings = {k: v for k, v in kwargs.items() if k in names}
    others = {k: v for k, v in kwargs.items() if k not in names}
    return replace(config or Config(), **settings), others
