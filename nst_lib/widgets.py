"""ipywidgets front-ends over :func:`nst_lib.transfer` and :mod:`nst_lib.plot`.

- :class:`Explorer`: the whole method (eq. 7) with every knob: alpha/beta, the layers, the
  start image, steps, size, your own images.
- :class:`ContentReconstruction`: pick a layer, reconstruct the photo from white noise.

Both run the optimisation in a background thread so the notebook stays responsive: the
progress bar and the picture update while it runs, and Stop ends the run keeping the image
so far. Everything a button does is a method too (``run(wait=True)``, ``stop()``), so a
notebook or a test can drive a widget without clicking.
"""

from __future__ import annotations

import html
import io
import os
import tempfile
import threading
import warnings
from dataclasses import replace
from pathlib import Path

import ipywidgets as w
import torch

from . import plot
from .config import STYLE_LAYERS, Config
from .image import ImageError, as_image, example, open_image, resize, to_pil, to_tensor
from .optimize import (ImageLike, Result, Step, check_cost, scale_levels, steps_per_scale,
                       transfer)
from .vgg import CONV_LAYERS, VGG19

MAX_SIDE = 1024  # uploaded or given images are kept at most this large (longest side)


def png(image: torch.Tensor) -> bytes:
    """(1, 3, H, W) tensor in [0, 1] -> PNG bytes for an ``ipywidgets.Image``."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _load(source: ImageLike, what: str = "image") -> torch.Tensor:
    """A file or a tensor (see :func:`nst_lib.image.as_image`) as (1, 3, H, W), at most
    MAX_SIDE px; a large file is decoded at reduced resolution, not in full."""
    if isinstance(source, (str, os.PathLike)):
        image = to_tensor(open_image(source, size=MAX_SIDE))
    else:
        image = as_image(source, what=what)
    image = resize(image, MAX_SIDE) if max(image.shape[-2:]) > MAX_SIDE else image
    return image.contiguous()  # a channels-last tensor would break L-BFGS's flat gradient


def load_upload(upload: w.FileUpload) -> torch.Tensor | None:
    """The file chosen in a ``FileUpload`` as an RGB tensor (1, 3, H, W), or None if none.

    The bytes go through the checks and conversions of files on disk (EXIF rotation,
    greyscale, alpha, size limits; a large picture is read at reduced resolution), via a
    temporary file of the upload's name; messages name the uploaded file, not that one.
    """
    if not upload.value:
        return None
    item = upload.value[-1]
    name = Path(item["name"]).name or "upload"
    with tempfile.TemporaryDirectory(prefix="nst_upload_") as folder:
        path = Path(folder) / name
        path.write_bytes(bytes(item["content"]))
        try:
            return _load(path)
        except ImageError as err:
            raise ImageError(str(err).replace(str(path), name)) from None


WIDE = {"description_width": "90px"}  # room for the longest label, "content layer"


class _Runner:
    """The shared machinery: Run/Stop buttons, a progress bar, a status line and a picture.

    A subclass says what to run (:meth:`job`) and how to lay it out (:attr:`widget`).
    """

    def __init__(self, *, model: VGG19 | None, image_every: int, width: int):
        self.model = model
        self.image_every = image_every
        self.run_button = w.Button(description="Run", icon="play", button_style="primary")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="steps")
        self.status = w.HTML("Press Run.")
        self.image = w.Image(format="png", width=width)
        self.result: Result | None = None  # the last run's result (also after Stop)
        self.error: Exception | None = None  # what made the last run fail, if anything
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())

    def job(self) -> tuple[torch.Tensor | None, torch.Tensor | None, Config]:
        """(content, style, config) for the next run, read from the controls."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self, *, wait: bool = False) -> Result | None:
        """Start a run in a background thread (ignored while one is running).

        ``wait=True`` blocks until it ends, returns the result and raises its error if it
        failed: the way to drive the widget from code.
        """
        if self.running:
            return None
        self.result, self.error = None, None
        try:
            content, style, config = self.job()
            cost = check_cost(content, style, config, self.model)  # too large: refused here
        except Exception as err:  # bad settings: say so in the widget, not in a traceback
            self._failed(err)
        else:
            self._stop = threading.Event()
            longest = config.size or max(content.shape[-2:])
            self.progress.max = sum(steps_per_scale(config, scale_levels(longest, config.scales)))
            self.progress.value = 0
            self.progress.bar_style = ""
            self.run_button.disabled, self.stop_button.disabled = True, False
            self.status.value = f"Running: needs {html.escape(str(cost))} ..."
            self.thread = threading.Thread(target=self._work, args=(content, style, config),
                                           daemon=True)
            self.thread.start()
        if wait:
            return self.wait()
        return None

    def wait(self, timeout: float | None = None) -> Result | None:
        """Block until the current run ends; return its result or raise its error.

        With a ``timeout`` (seconds) it may return while the run goes on; ``running`` tells.
        """
        if self.thread is not None:
            self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self) -> None:
        """End the current run after the loss evaluation in progress; its image is kept."""
        self._stop.set()

    def _work(self, content, style, config: Config) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. weights="random"; the status says enough
                result = transfer(content, style, config, model=self.model,
                                  callback=self._on_step, image_every=self.image_every,
                                  progress=False, stop=self._stop)
            self.result = result
            self.image.value = png(result.image)
            self.progress.bar_style = "success" if result.stop_reason == "steps" else "warning"
            self.status.value = (f"{result.stop_reason}: {len(result.history)} evaluations in "
                                 f"{result.seconds:.1f} s, loss {_last_loss(result):.3g}")
            self.finished(result)
        except Exception as err:  # shown in the widget; wait() raises it
            self._failed(err)
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True

    def _on_step(self, step: Step) -> None:
        self.progress.value = min(step.step, self.progress.max)
        if step.image is not None:
            self.image.value = png(step.image)
            self.status.value = f"step {step.step}/{self.progress.max}: loss {step.loss:.3g}"

    def _failed(self, err: Exception) -> None:
        self.error = err
        self.progress.bar_style = "danger"
        self.status.value = f"<b>Error:</b> {html.escape(f'{type(err).__name__}: {err}')}"

    def finished(self, result: Result) -> None:
        """Hook for subclasses: called in the worker thread after a run ends."""

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _last_loss(result: Result) -> float:
    return result.history[-1]["loss"] if result.history else float("nan")


class Explorer(_Runner):
    """Style transfer with every knob of the method, for trying things by hand.

    ``Explorer(content, style)`` (default: the cat and The Starry Night), then display it
    (last line of a cell). The controls: alpha/beta (log slider; the paper's values assume
    its rescaled network, see notebook 5), content layer, style layers, start image, steps
    per scale, scales (coarse-to-fine levels), size, your own images (upload), Run, Stop.
    ``config`` sets everything the controls do not (e.g. ``weights="random"`` for a quick
    test) and the scales' start value; ``model`` reuses a loaded network.
    """

    def __init__(
        self,
        content: ImageLike | None = None,
        style: ImageLike | None = None,
        *,
        config: Config | None = None,
        model: VGG19 | None = None,
        size: int = 256,
        steps: int = 100,
        image_every: int = 5,
    ):
        super().__init__(model=model, image_every=image_every, width=384)
        self.base = config or Config()
        self.content_image = _load(content if content is not None else example("chelsea.png"),
                                  "content image")
        self.style_image = _load(style if style is not None else example("starry_night.jpg"),
                                "style image")
        ratio = min(max(self.base.ratio, 1e-6), 1e-1)
        self.ratio = w.FloatLogSlider(value=ratio, base=10, min=-6, max=-1, step=0.25,
                                      description="α/β", readout_format=".0e", style=WIDE)
        self.content_layer = w.Dropdown(options=CONV_LAYERS, value=self.base.content_layers[0],
                                        description="content layer", style=WIDE)
        self.style_layers = {name: w.Checkbox(value=name in self.base.style_layers,
                                              description=name, indent=False,
                                              layout=w.Layout(width="80px"))
                             for name in STYLE_LAYERS}
        self.init = w.ToggleButtons(options=["noise", "content", "style"], value=self.base.init,
                                    description="start from",
                                    style={"button_width": "70px", **WIDE})
        self.steps = w.IntSlider(value=steps, min=5, max=500, step=5, description="steps/scale",
                                 style=WIDE)
        self.scales = w.IntSlider(value=self.base.scales, min=1, max=4, description="scales",
                                  style=WIDE)
        self.size = w.IntSlider(value=size, min=32, max=512, step=16, description="size (px)",
                                style=WIDE)
        self.content_upload = w.FileUpload(accept="image/*", description="your content")
        self.style_upload = w.FileUpload(accept="image/*", description="your style")
        self.content_preview = w.Image(value=png(resize(self.content_image, 160)), width=160)
        self.style_preview = w.Image(value=png(resize(self.style_image, 160)), width=160)
        self.losses = w.Image(format="png", width=480)
        self.content_upload.observe(self._uploaded, names="value")
        self.style_upload.observe(self._uploaded, names="value")
        self.image.value = self.content_preview.value

        label = lambda text: w.HTML(f"<b>{text}</b>")  # noqa: E731
        controls = w.VBox([
            self.ratio, self.content_layer,
            w.HBox([w.Label("style layers", layout=w.Layout(width="90px")),
                    *self.style_layers.values()]),
            self.init, self.steps, self.scales, self.size,
            w.HBox([self.run_button, self.stop_button]), self.progress, self.status,
        ])
        images = w.VBox([
            w.HBox([w.VBox([label("content"), self.content_preview, self.content_upload]),
                    w.VBox([label("style"), self.style_preview, self.style_upload])]),
        ])
        self.widget = w.VBox([w.HBox([controls, images]),
                              w.HBox([w.VBox([label("result"), self.image]),
                                      w.VBox([label("losses"), self.losses])])])

    def config(self) -> Config:
        """The settings the controls show, as a :class:`~nst_lib.Config`."""
        return replace(
            self.base,
            alpha=1.0,
            beta=1.0 / self.ratio.value,  # alpha/beta = the slider's value
            content_layers=(self.content_layer.value,),
            style_layers=tuple(n for n, box in self.style_layers.items() if box.value),
            style_weights=None,
            init=self.init.value,
            steps=self.steps.value,
            scales=self.scales.value,
            size=self.size.value,
        )

    def job(self):
        config = self.config()
        if not config.style_layers:
            raise ValueError("Tick at least one style layer.")
        return self.content_image, self.style_image, config

    def _uploaded(self, change) -> None:
        upload = change["owner"]
        try:
            with warnings.catch_warnings(record=True) as caught:  # shown in the status line
                warnings.simplefilter("always")
                image = load_upload(upload)
        except Exception as err:  # not an image, or too large: say why, keep the last one
            self._failed(err)
            return
        if image is None:
            return
        if upload is self.content_upload:
            self.content_image = image
            self.content_preview.value = png(resize(image, 160))
        else:
            self.style_image = image
            self.style_preview.value = png(resize(image, 160))
        notes = "".join(f" {w.message}" for w in caught)
        self.status.value = html.escape(f"Loaded {upload.value[-1]['name']}.{notes} Press Run.")

    def finished(self, result: Result) -> None:
        self.losses.value = plot.to_png(plot.loss_curves(result))


class ContentReconstruction(_Runner):
    """CVPR 2016, Fig. 1 (bottom row) one layer at a time: pick a layer, press Run.

    The photo is reconstructed from white noise (``init="noise"``) by matching only that
    layer's responses (eq. 1); the original (default: the cat) is shown beside it.
    """

    def __init__(
        self,
        image: ImageLike | None = None,
        *,
        layer: str = "conv4_2",
        size: int = 128,
        steps: int = 100,
        config: Config | None = None,
        model: VGG19 | None = None,
        image_every: int = 5,
    ):
        super().__init__(model=model, image_every=image_every, width=2 * size)
        self.base = config or Config()
        self.original = _load(image if image is not None else example("chelsea.png"))
        self.layer = w.Dropdown(options=CONV_LAYERS, value=layer, description="layer")
        self.steps = w.IntSlider(value=steps, min=5, max=500, step=5, description="steps")
        self.size = size
        preview = w.Image(value=png(resize(self.original, size)), width=2 * size)
        self.widget = w.VBox([
            w.HBox([self.layer, self.steps]),
            w.HBox([self.run_button, self.stop_button, self.progress]),
            self.status,
            w.HBox([w.VBox([w.HTML("<b>original</b>"), preview]),
                    w.VBox([w.HTML("<b>reconstruction</b>"), self.image])]),
        ])

    def job(self):
        config = replace(self.base, content_layers=(self.layer.value,), init="noise",
                         scales=1, steps=self.steps.value, size=self.size)  # as the paper
        return self.original, None, config
