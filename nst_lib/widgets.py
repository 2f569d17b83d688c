"""ipywidgets front-ends over :func:`nst_lib.transfer` and :mod:`nst_lib.plot`.

- :class:`Explorer`: the whole method (eq. 7) with every knob: a preset (the paper's recipe
  or the library's fast defaults), alpha/beta, the layers, the start image, steps, scales,
  size, seed, the photo's colours, your own images; what a run will cost, before Run; a
  gallery of every run with two side by side; an animation of a run; Save.
- :class:`ContentReconstruction`: pick a layer, reconstruct the photo from white noise.

Both run the optimisation in a background thread so the notebook stays responsive: the
progress bar and the picture update while it runs, and Stop ends the run keeping the image
so far. Everything a button does is a method too (``run(wait=True)``, ``stop()``,
``save()``), so a notebook or a test can drive a widget without clicking.
"""

from __future__ import annotations

import base64
import html
import io
import tempfile
import textwrap
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import ipywidgets as w
import torch

from . import plot
from .color import combine_luminance, transfer_preserving_color
from .config import (INITS, POOLINGS, STYLE_LAYERS, Config, parse_steps, scale_levels,
                     steps_per_scale, steps_text)
from .experiments import PAPER_RECIPE, ratio_text
from .image import (ImageError, example, image_from, resize, save_image, to_pil,
                    unused_path)
from .layers import CONV_LAYERS
from .optimize import ImageLike, Result, Step, check_cost, transfer
from .vgg import VGG19, vgg19

MAX_SIDE = 1024  # uploaded or given images are kept at most this large (longest side)
# The explorer's presets set how the image is optimised and which layers it matches (the
# fields below); alpha/beta, the size, the seed and the colours stay as they are.
PRESETS = {"paper": Config(**PAPER_RECIPE), "fast": Config()}
PRESET_FIELDS = ("content_layers", "style_layers", "init", "steps", "scales", "pooling")
COLOURS = (("painting's", "off"), ("photo's: luminance", "luminance"),
           ("photo's: histogram", "histogram"))  # nst_lib.color.transfer_preserving_color
# the α/β slider's values: 1, 2 and 5 in each decade from 1e-6 to 1e-1, and the paper's 8e-4
# (CVPR Fig. 3, The Starry Night); a value elsewhere (from a Config) is added as it is
RATIOS = tuple(sorted({m * 10.0**e for e in range(-6, -1) for m in (1, 2, 5)} | {8e-4, 1e-1}))
STYLE_SIZES = (("same as size", 0), *((f"{n} px", n) for n in (64, 128, 256, 384, 512)))
MIME = {".png": "image/png", ".gif": "image/gif"}


def png(image: torch.Tensor, *, longest: int | None = None) -> bytes:
    """(1, 3, H, W) tensor in [0, 1] -> PNG bytes for an ``ipywidgets.Image``; ``longest``:
    shrunk (never enlarged) to at most this many pixels on its longest side."""
    pil = to_pil(image)
    if longest is not None:
        pil.thumbnail((longest, longest))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def _load(source: ImageLike, what: str = "image") -> torch.Tensor:
    """A file or a tensor (see :func:`nst_lib.image.as_image`) as (1, 3, H, W), at most
    MAX_SIDE px; a large file is decoded at reduced resolution, not in full."""
    return image_from(source, MAX_SIDE, what=what, at_most=True)


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


class _RunPanel:
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

    def _model_for(self, config: Config) -> VGG19 | None:
        """The network of a run: the one given, unless the run asks for the other pooling
        (then the same weights with that pooling, loaded once; None: transfer loads it)."""
        if self.model is None or self.model.pooling == config.pooling:
            return self.model
        return vgg19(config.weights, pooling=config.pooling,
                     device=str(next(self.model.parameters()).device))

    def _transfer(self, content, style, config: Config, **kwargs) -> Result:
        """The run itself; a subclass may put something around :func:`nst_lib.transfer`."""
        return transfer(content, style, config, **kwargs)

    def _work(self, content, style, config: Config) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. weights="random"; the status says enough
                result = self._transfer(content, style, config, model=self._model_for(config),
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


def _steps_or_say(text: str) -> int | tuple[int, ...]:
    try:
        return parse_steps(text)
    except ValueError as err:
        raise ValueError(f"steps/scale: {err}.") from None


@dataclass
class Entry:
    """One run in the explorer's gallery."""

    result: Result
    settings: dict[str, str]  # what its caption shows, e.g. "α/β" -> "5e-4", "time" -> ...
    animation: bytes | None = None  # a GIF of the run, when "animation" was ticked

    def caption(self, sep: str = "\n") -> str:
        return sep.join(f"{key}: {value}" for key, value in self.settings.items())


def describe(result: Result, colours: str = "off") -> dict[str, str]:
    """The settings of a run as short texts (alpha/beta, layers, start, pooling, steps,
    size, seed, colours, time), for the gallery's captions."""
    c = result.config
    height, width = result.image.shape[-2:]
    levels = scale_levels(max(height, width), c.scales)  # a small image skips coarse ones
    style_size = f", style {c.style_size} px" if c.style_size else ""
    return {
        "α/β": ratio_text(c.ratio),
        "content": ", ".join(c.content_layers),
        "style": ", ".join(c.style_layers),
        "start": c.init,
        "pooling": c.pooling,
        "steps": f"{steps_text(c.steps)} ({levels} scale{'s' if levels > 1 else ''})",
        "size": f"{width}x{height} px{style_size}",
        "seed": str(c.seed),
        "colours": "the painting's" if colours == "off" else f"the photo's ({colours})",
        "time": f"{result.seconds:.1f} s, {len(result.history)} evaluations, "
                f"{result.stop_reason}",
    }


def _html_lines(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _thumbnails(gallery: list[Entry]) -> str:
    """The gallery as HTML: one small picture per run with its settings below it."""
    figures = []
    for number, entry in enumerate(gallery, 1):
        data = base64.b64encode(png(entry.result.image, longest=140)).decode("ascii")
        figures.append(
            '<figure style="margin:0 10px 10px 0; width:150px">'
            f'<img src="data:image/png;base64,{data}" style="width:140px">'
            f'<figcaption style="font-size:10px; line-height:1.25"><b>#{number}</b><br>'
            f'{_html_lines(entry.caption())}</figcaption></figure>')
    return f'<div style="display:flex; flex-wrap:wrap">{"".join(figures)}</div>'


def _write_new(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, or to path-1 ... if it exists: never replaces a file."""
    while True:
        target = unused_path(path)
        try:
            with open(target, "xb") as f:
                f.write(data)
            return target
        except FileExistsError:  # written by someone else since unused_path looked
            continue


def download_link(path: Path) -> str:
    """An HTML link that downloads the file from the page itself (a data: URL), so it works
    where the browser cannot reach the server's folders (Binder, Colab)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = html.escape(Path(path).name)
    return (f'<a download="{name}" href="data:{MIME[Path(path).suffix]};base64,{data}" '
            f'style="text-decoration:underline">{name}</a>')


def _label(text: str) -> w.HTML:
    return w.HTML(f"<b>{text}</b>")


class Explorer(_RunPanel):
    """Style transfer with every knob of the method, for trying things by hand.

    ``Explorer(content, style)`` (default: the cat and The Starry Night), then display it
    (last line of a cell). The controls: a preset ("paper": the paper's recipe, from white
    noise at one scale, 1000 evaluations; "fast": the library's defaults), alpha/beta (log
    slider; the paper's values assume its rescaled network, see notebook 5), content layer,
    style layers, start image, steps per scale, scales (coarse-to-fine levels), size, style
    size, seed, colours (the painting's, or the photo's), animation, your own images
    (upload), Run, Stop; the line under Run says what the run will cost. Every finished run
    (also a stopped one) joins :attr:`gallery`; the "A" and "B" menus show two runs side
    by side. Save writes the last picture, the gallery and the animation to a folder.
    ``config`` sets everything the controls do not (e.g. ``weights="random"`` for a quick
    test) and the controls' start values; ``model`` reuses a loaded network.
    """

    def __init__(
        self,
        content: ImageLike | None = None,
        style: ImageLike | None = None,
        *,
        config: Config | None = None,
        model: VGG19 | None = None,
        size: int = 256,
        steps: int | tuple[int, ...] = 100,
        image_every: int = 5,
    ):
        super().__init__(model=model, image_every=image_every, width=384)
        self.base = config or Config()
        self.content_image = _load(content if content is not None else example("chelsea.png"),
                                  "content image")
        self.style_image = _load(style if style is not None else example("starry_night.jpg"),
                                "style image")
        self.gallery: list[Entry] = []  # every finished run, oldest first
        self.frames: list[torch.Tensor] | None = None  # this run's pictures, if animated
        self._colours = "off"  # this run's colours
        self._setting = False  # True while the controls are set from code (a preset)
        # the pooling control starts at the given network's
        pooling = model.pooling if model is not None else self.base.pooling
        start = replace(self.base, size=size, steps=steps, pooling=pooling)
        self._make_method_controls(start)
        self._make_picture_controls(start)
        self._make_gallery_and_save()
        self.widget = w.VBox([w.HBox([self._controls_box(), self._inputs_box()]),
                              self._results_box(), self._gallery_box(), self._save_box()])
        self._observe()
        self._controls_changed()

    # ------------------------------------------------------------------ building the widget

    def _make_method_controls(self, start: Config) -> None:
        """The preset and the controls of the method: alpha/beta, layers, start, steps."""
        self.preset = w.ToggleButtons(options=list(PRESETS), value=None, description="preset",
                                      tooltips=["the paper's recipe: from white noise, one "
                                                f"scale, {PRESETS['paper'].steps} evaluations "
                                                "(their number is the library's choice)",
                                                "the library's defaults: from the photo in "
                                                "the painting's palette, coarse to fine, "
                                                f"{steps_text(PRESETS['fast'].steps)} "
                                                "evaluations per scale"],
                                      style={"button_width": "70px", **WIDE})
        ratio = min(max(start.ratio, RATIOS[0]), RATIOS[-1])
        ratios = sorted(set(RATIOS) | {ratio})  # every value a step of its own, no rounding
        self.ratio = w.SelectionSlider(options=[(ratio_text(r), r) for r in ratios],
                                       value=ratio, description="α/β", style=WIDE)
        self.content_layer = w.Dropdown(options=CONV_LAYERS, value=start.content_layers[0],
                                        description="content layer", style=WIDE)
        self.style_layers = {name: w.Checkbox(value=name in start.style_layers,
                                              description=name, indent=False,
                                              layout=w.Layout(width="80px"))
                             for name in STYLE_LAYERS}
        self.init = w.ToggleButtons(options=list(INITS), value=start.init,
                                    description="start from",
                                    style={"button_width": "70px", **WIDE})
        self.steps = w.Text(value=steps_text(start.steps), description="steps/scale",
                            placeholder="50, or 100,40,15 (coarsest first)",
                            continuous_update=False, style=WIDE)
        self.scales = w.IntSlider(value=start.scales, min=1, max=4, description="scales",
                                  style=WIDE)
        self.pooling = w.ToggleButtons(options=list(POOLINGS), value=start.pooling,
                                       description="pooling",
                                       tooltips=["average pooling (the paper's)",
                                                 "max pooling (VGG19 as trained)"],
                                       style={"button_width": "70px", **WIDE})

    def _make_picture_controls(self, start: Config) -> None:
        """Size, style size, seed, colours, animation; the uploads and their previews."""
        self.size = w.IntSlider(value=start.size, min=32, max=512, step=16,
                                description="size (px)", style=WIDE)
        sizes = dict(STYLE_SIZES) | ({f"{start.style_size} px": start.style_size}
                                     if start.style_size else {})
        self.style_size = w.Dropdown(options=list(sizes.items()), value=start.style_size or 0,
                                     description="style size", style=WIDE)
        self.seed = w.IntText(value=start.seed, description="seed", style=WIDE,
                              layout=w.Layout(width="180px"))
        self.colours = w.ToggleButtons(options=COLOURS, value="off", description="colours",
                                       tooltips=["the painting's colours (the paper)",
                                                 "the photo's colours: transfer the "
                                                 "luminance only (Gatys et al. 2017)",
                                                 "the photo's colours: the painting's "
                                                 "colours matched to the photo's first"],
                                       style={"button_width": "160px", **WIDE})
        self.animate = w.Checkbox(value=False, description="animation (a GIF of the run)",
                                  indent=False)
        self.cost = w.HTML()  # what the run will need, updated as the controls change
        self.content_upload = w.FileUpload(accept="image/*", description="your content")
        self.style_upload = w.FileUpload(accept="image/*", description="your style")
        self.content_preview = w.Image(value=png(resize(self.content_image, 160)), width=160)
        self.style_preview = w.Image(value=png(resize(self.style_image, 160)), width=160)
        self.losses = w.Image(format="png", width=480)
        self.animation = w.Image(format="gif", width=384)
        self.image.value = self.content_preview.value

    def _make_gallery_and_save(self) -> None:
        self.thumbnails = w.HTML("Every run will be kept here.")
        self.pick = {side: w.Dropdown(options=[], description=side,
                                      layout=w.Layout(width="320px"),
                                      style={"description_width": "20px"})
                     for side in ("A", "B")}
        self.compared = {side: w.Image(format="png", width=320) for side in ("A", "B")}
        self.compared_settings = {side: w.HTML(layout=w.Layout(width="330px"))
                                  for side in ("A", "B")}
        self.folder = w.Text(value="out/", description="folder", style=WIDE)
        self.save_button = w.Button(description="Save", icon="download")
        self.downloads = w.HTML()

    def _controls_box(self) -> w.VBox:
        return w.VBox([
            self.preset, self.ratio, self.content_layer,
            w.HBox([w.Label("style layers", layout=w.Layout(width="90px")),
                    *self.style_layers.values()]),
            self.init, self.steps, self.scales, self.pooling, self.size, self.style_size,
            self.seed, self.colours, self.animate,
            w.HBox([self.run_button, self.stop_button]), self.cost, self.progress,
            self.status,
        ])

    def _inputs_box(self) -> w.VBox:
        return w.VBox([
            w.HBox([w.VBox([_label("content"), self.content_preview, self.content_upload]),
                    w.VBox([_label("style"), self.style_preview, self.style_upload])]),
        ])

    def _results_box(self) -> w.HBox:
        self.animation_box = w.VBox([_label("animation"), self.animation],
                                    layout=w.Layout(display="none"))
        return w.HBox([w.VBox([_label("result"), self.image]), self.animation_box,
                       w.VBox([_label("losses"), self.losses])])

    def _gallery_box(self) -> w.VBox:
        sides = [w.VBox([self.pick[s], self.compared[s], self.compared_settings[s]])
                 for s in ("A", "B")]
        return w.VBox([_label("gallery: every run (A and B: two of them side by side)"),
                       self.thumbnails, w.HBox(sides)])

    def _save_box(self) -> w.HBox:
        return w.HBox([self.folder, self.save_button, self.downloads])

    def _observe(self) -> None:
        for control in (self.ratio, self.content_layer, *self.style_layers.values(), self.init,
                        self.steps, self.scales, self.pooling, self.size, self.style_size,
                        self.seed, self.colours):
            control.observe(self._controls_changed, names="value")
        self.preset.observe(self._preset_chosen, names="value")
        for pick in self.pick.values():
            pick.observe(self._show_compared, names="value")
        self.content_upload.observe(self._uploaded, names="value")
        self.style_upload.observe(self._uploaded, names="value")
        self.save_button.on_click(lambda _: self.save())

    # ------------------------------------------------------------------ settings

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
            steps=_steps_or_say(self.steps.value),
            scales=self.scales.value,
            pooling=self.pooling.value,
            size=self.size.value,
            style_size=self.style_size.value or None,
            seed=self.seed.value,
        )

    def _settings(self) -> tuple[torch.Tensor, torch.Tensor, Config]:
        config = self.config()
        if not config.style_layers:
            raise ValueError("Tick at least one style layer.")
        return self.content_image, self.style_image, config

    def job(self):
        content, style, config = self._settings()
        self._colours = self.colours.value
        self.frames = [] if self.animate.value else None
        return content, style, config

    @contextmanager
    def _quietly(self):
        """Set controls without the reactions to a change by hand (a preset's, the cost's)."""
        self._setting = True
        try:
            yield
        finally:
            self._setting = False

    def _preset_chosen(self, change) -> None:
        if self._setting or change["new"] is None:
            return
        preset = PRESETS[change["new"]]
        with self._quietly():
            self.content_layer.value = preset.content_layers[0]
            for name, box in self.style_layers.items():
                box.value = name in preset.style_layers
            self.init.value = preset.init
            self.steps.value = steps_text(preset.steps)
            self.scales.value = preset.scales
            self.pooling.value = preset.pooling
        self._show_cost()

    def _matching_preset(self) -> str | None:
        """The preset the controls show now, or None when they differ from both."""
        try:
            config = self.config()
        except ValueError:
            return None
        return next((name for name, preset in PRESETS.items()
                     if all(getattr(preset, f) == getattr(config, f) for f in PRESET_FIELDS)),
                    None)

    def _controls_changed(self, _=None) -> None:
        if self._setting:
            return
        with self._quietly():
            self.preset.value = self._matching_preset()
        self._show_cost()

    def _show_cost(self) -> None:
        """The line under Run: what a run with these settings will need (nst.check_cost)."""
        try:
            content, style, config = self._settings()
            cost = check_cost(content, style, config, self.model)
        except Exception as err:  # bad settings or too large: the same message as Run's
            self.cost.value = f"<b>Cannot run:</b> {html.escape(str(err))}"
            return
        self.cost.value = f"This run will need {html.escape(str(cost))}."

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
        self._show_cost()

    # ------------------------------------------------------------------ a run

    def _transfer(self, content, style, config: Config, **kwargs) -> Result:
        if self._colours == "off":
            return super()._transfer(content, style, config, **kwargs)
        return transfer_preserving_color(content, style, config, method=self._colours, **kwargs)

    def _on_step(self, step: Step) -> None:
        if step.image is not None and self._colours == "luminance":  # grey: add the colours
            step = replace(step, image=combine_luminance(step.image, self.content_image))
        if step.image is not None and self.frames is not None:
            self.frames.append(step.image)
        super()._on_step(step)

    def finished(self, result: Result) -> None:
        self.losses.value = plot.to_png(plot.loss_curves(result))
        gif = plot.animation([*self.frames, result.image]) if self.frames is not None else None
        self.gallery.append(Entry(result, describe(result, self._colours), gif))
        if gif is not None:
            self.animation.value = gif
        self.animation_box.layout.display = "none" if gif is None else ""
        self._show_gallery()

    # ------------------------------------------------------------------ gallery and save

    def _show_gallery(self) -> None:
        """Thumbnails of every run; A stays where it was (the first run at first), B shows
        the newest."""
        self.thumbnails.value = _thumbnails(self.gallery)
        options = [(f"#{n}: α/β {e.settings['α/β']}, {e.settings['size']}", n - 1)
                   for n, e in enumerate(self.gallery, 1)]
        a = self.pick["A"].value if self.pick["A"].value is not None else 0
        for pick in self.pick.values():
            pick.options = options
        self.pick["A"].value, self.pick["B"].value = a, len(options) - 1
        self._show_compared()

    def _show_compared(self, _=None) -> None:
        for side, pick in self.pick.items():
            if pick.value is not None:
                entry = self.gallery[pick.value]
                self.compared[side].value = png(entry.result.image)
                self.compared_settings[side].value = (
                    f'<div style="line-height:1.35"><b>#{pick.value + 1}</b><br>'
                    f"{_html_lines(entry.caption())}</div>")

    def contact_sheet(self) -> bytes:
        """The gallery as one PNG: every run, with its settings below it."""
        captions = [f"#{n}\n" + "\n".join(textwrap.fill(line, 44, subsequent_indent="   ")
                                          for line in e.caption().splitlines())
                    for n, e in enumerate(self.gallery, 1)]
        fig = plot.contact_sheet([e.result.image for e in self.gallery], captions,
                                 ncols=min(4, len(self.gallery)), width=3.2)
        return plot.to_png(fig, dpi=100, tight=True)

    def save(self) -> list[Path]:
        """Write the last run's picture, the gallery (:meth:`contact_sheet`) and the last
        run's animation, if it has one, to the "folder" field's folder (made if missing).

        Files are never replaced: result.png, then result-1.png ... Shows a download link
        for each (it works on Binder and Colab too) and says where they went; returns
        their paths (none if there is nothing to save or they cannot be written).
        """
        if not self.gallery:
            self.status.value = "Nothing to save yet: press Run first."
            return []
        last = self.gallery[-1]
        try:
            folder = Path(self.folder.value.strip() or ".").expanduser()
            folder.mkdir(parents=True, exist_ok=True)
            paths = [save_image(last.result.image, unused_path(folder / "result.png")),
                     _write_new(folder / "gallery.png", self.contact_sheet())]
            if last.animation is not None:
                paths.append(_write_new(folder / "animation.gif", last.animation))
        except (OSError, ImageError) as err:
            self.status.value = f"<b>Not saved:</b> {html.escape(str(err))}"
            return []
        self.downloads.value = "download: " + " · ".join(download_link(p) for p in paths)
        where = folder.resolve()
        self.status.value = html.escape(f"Saved {', '.join(p.name for p in paths)} in {where}")
        return paths


class ContentReconstruction(_RunPanel):
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
            w.HBox([w.VBox([_label("original"), preview]),
                    w.VBox([_label("reconstruction"), self.image])]),
        ])

    def job(self):
        config = replace(self.base, content_layers=(self.layer.value,), init="noise",
                         scales=1, steps=self.steps.value, size=self.size)  # as the paper
        return self.original, None, config
