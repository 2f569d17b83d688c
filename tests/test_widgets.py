"""nst_lib.widgets driven from code, with an untrained VGG19 and tiny images (fast)."""

import base64
import datetime
import html
import io
import re
import struct
import time
import warnings
import zlib
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import nst_lib as nst  # noqa: E402
from nst_lib import widgets  # noqa: E402
from nst_lib.experiments import PAPER_RECIPE  # noqa: E402

CONFIG = nst.Config(weights="random", device="cpu", scales=1)


@pytest.fixture(scope="module")
def model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nst.vgg19("random", device="cpu")


@pytest.fixture
def explorer(model):
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 32, 48, generator=g), torch.rand(1, 3, 40, 40, generator=g)
    return widgets.Explorer(content, style, config=CONFIG, model=model, size=48, steps=6,
                            image_every=2)


def _png_bytes(size=(40, 30), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(data: bytes, name: str) -> tuple:
    return ({"name": name, "type": "image/png", "size": len(data), "last_modified": datetime.datetime(2024, 1, 1),
             "content": memoryview(data)},)


def test_explorer_config_follows_the_controls(explorer):
    explorer.ratio.value = 1e-4
    explorer.content_layer.value = "conv5_2"
    explorer.style_layers["conv4_1"].value = False
    explorer.style_layers["conv5_1"].value = False
    explorer.init.value = "noise"
    explorer.steps.value, explorer.scales.value, explorer.size.value = "20", 2, 96
    explorer.seed.value, explorer.style_size.value = 7, 64
    config = explorer.config()
    assert config.ratio == pytest.approx(1e-4)
    assert config.content_layers == ("conv5_2",)
    assert config.style_layers == ("conv1_1", "conv2_1", "conv3_1")
    assert (config.init, config.steps, config.scales, config.size) == ("noise", 20, 2, 96)
    assert (config.seed, config.style_size) == (7, 64)
    explorer.steps.value, explorer.style_size.value = "100, 50,20", 0  # spaces are allowed
    assert explorer.config().steps == (100, 50, 20) and explorer.config().style_size is None
    assert config.weights == "random"  # what the controls do not set comes from `config`


def test_explorer_ratio_slider_holds_the_papers_values_and_the_default(explorer):
    values = [v for _, v in explorer.ratio.options]
    assert values[0] == pytest.approx(1e-6) and values[-1] == pytest.approx(1e-1)
    for paper in (1e-4, 5e-4, 8e-4, 1e-3, 5e-3, 1e-2, 1e-1):  # CVPR Fig. 3 and 4
        assert any(v == pytest.approx(paper) for v in values)
    assert explorer.ratio.value == nst.Config().ratio  # the default itself, not rounded
    assert explorer.ratio.label == "2e-4"


def test_explorer_run_fills_progress_image_and_losses(explorer):
    shown = []
    explorer.image.observe(lambda change: shown.append(change["new"]), names="value")
    result = explorer.run(wait=True)
    assert result is explorer.result and result.stop_reason == "steps"
    assert result.image.shape == (1, 3, 32, 48)
    assert explorer.progress.max == 6 and explorer.progress.value == explorer.progress.max
    assert len(shown) >= 3  # every 2nd evaluation while running, and the final image
    assert explorer.image.value[:4] == b"\x89PNG" and explorer.losses.value[:4] == b"\x89PNG"
    assert not explorer.run_button.disabled and explorer.stop_button.disabled
    assert explorer.status.value.startswith("steps")


def test_progress_counts_the_evaluations_of_every_scale(explorer):
    explorer.scales.value = 2
    explorer.size.value = 128  # two levels: 64 and 128 px
    result = explorer.run(wait=True)
    assert explorer.progress.max == 2 * 6 == explorer.progress.value
    assert {h["scale"] for h in result.history} == {0, 1}


def test_explorer_run_button_starts_a_background_run(explorer):
    explorer.run_button.click()
    assert explorer.thread is not None
    explorer.run_button.click()  # ignored while running
    result = explorer.wait(timeout=60)
    assert not explorer.running and result is not None
    assert len(result.history) >= 6


def test_stop_keeps_the_image_so_far(explorer):
    explorer.steps.value = "500"
    explorer.run()
    deadline = time.time() + 60
    while explorer.progress.value < 3 and time.time() < deadline:
        time.sleep(0.01)
    explorer.stop_button.click()
    result = explorer.wait(timeout=60)
    assert result.stop_reason == "stopped"
    assert 3 <= len(result.history) < 500
    assert result.image.shape == (1, 3, 32, 48) and result.image.abs().sum() > 0
    assert explorer.image.value[:4] == b"\x89PNG"


def test_no_style_layer_is_an_error_in_the_widget_not_a_crash(explorer):
    for box in explorer.style_layers.values():
        box.value = False
    explorer.run_button.click()  # no exception from the click
    assert "style layer" in explorer.status.value
    with pytest.raises(ValueError, match="style layer"):
        explorer.run(wait=True)


def test_upload_replaces_the_content_image(explorer):
    explorer.content_upload.value = _upload(_png_bytes((40, 30)), "mine.png")
    assert explorer.content_image.shape == (1, 3, 30, 40)
    assert explorer.content_image[0, :, 0, 0].tolist() == pytest.approx([200 / 255, 30 / 255,
                                                                          30 / 255])
    assert "mine.png" in explorer.status.value
    result = explorer.run(wait=True)
    assert result.image.shape == (1, 3, 36, 48)  # the new content's aspect ratio


def test_upload_of_a_broken_file_keeps_the_previous_image(explorer):
    before = explorer.style_image
    explorer.style_upload.value = _upload(b"not an image", "broken.png")
    assert explorer.style_image is before
    assert "not a readable image" in explorer.status.value


def _huge_png_header(width, height) -> bytes:
    """A PNG that claims width x height pixels, for the cost of a few bytes."""
    def chunk(kind, data):
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("data, name, message", [
    (b"not an image", "notes.png", "notes.png is not a readable image (not a format PIL knows)"),
    (b"%PDF-1.4 a worksheet", "worksheet.pdf", "worksheet.pdf is not a readable image"),
    (_png_bytes()[:60], "cut.png", "cut.png is damaged or incomplete"),
    (_huge_png_header(100_000, 100_000), "huge.png", "huge.png has more pixels than PIL's "
                                                     "safety limit"),
    (_huge_png_header(9_000, 9_000), "big.png", "big.png is 9000x9000 pixels, more than the "
                                                "80,000,000 this library decodes; scale it down"),
])
@pytest.mark.parametrize("which", ["content", "style"])
def test_a_bad_upload_is_one_line_in_the_widget_and_the_last_picture_stays(explorer, data,
                                                                           name, message, which):
    explorer.run(wait=True)
    shown = (explorer.image.value, explorer.content_preview.value, explorer.style_preview.value)
    before = (explorer.content_image, explorer.style_image)
    getattr(explorer, f"{which}_upload").value = _upload(data, name)
    assert message in html.unescape(explorer.status.value)
    assert "/tmp" not in explorer.status.value and "\n" not in explorer.status.value
    assert (explorer.content_image, explorer.style_image) == before
    assert (explorer.image.value, explorer.content_preview.value,
            explorer.style_preview.value) == shown
    assert explorer.run(wait=True).image.shape == (1, 3, 32, 48)  # still runs, on the last one


def test_a_large_upload_is_read_at_reduced_resolution_and_says_so(explorer, monkeypatch):
    monkeypatch.setattr(nst.image, "LARGE_PIXELS", 1_000)
    monkeypatch.setattr(widgets, "MAX_SIDE", 64)
    explorer.content_upload.value = _upload(_png_bytes((400, 300)), "big.png")
    assert explorer.content_image.shape == (1, 3, 48, 64)
    assert "Loaded big.png. big.png is 400x300 pixels; read it at 134x100" in explorer.status.value


def test_tensors_given_by_mistake_are_converted_with_a_warning(model):
    x = torch.rand(32, 48, 3)  # channels last, as matplotlib shows pictures
    with pytest.warns(UserWarning, match=r"content image \(shape \(32, 48, 3\), float32\) has "
                                         "its channels last"):
        explorer = widgets.Explorer(x, (torch.rand(1, 3, 40, 40) * 255).to(torch.uint8),
                                    config=CONFIG, model=model, size=48, steps=2)
    assert torch.equal(explorer.content_image, x.permute(2, 0, 1)[None])
    assert explorer.style_image.dtype == torch.float32 and explorer.style_image.max() <= 1
    with pytest.raises(nst.ImageError, match="^The style image has values from -"):
        widgets.Explorer(None, torch.randn(1, 3, 40, 40), config=CONFIG, model=model)


def test_load_upload_none_when_empty():
    assert widgets.load_upload(widgets.w.FileUpload()) is None


def test_content_reconstruction_matches_only_the_chosen_layer(model):
    picker = widgets.ContentReconstruction(torch.rand(1, 3, 32, 32), layer="conv2_2", size=32,
                                           steps=5, config=replace(CONFIG, scales=3),
                                           model=model)
    picker.layer.value = "conv3_1"
    result = picker.run(wait=True)
    assert result.config.init == "noise" and result.config.content_layers == ("conv3_1",)
    assert result.config.scales == 1  # single scale from noise, as in the paper
    assert set(result.history[-1]["layers"]) == {"conv3_1"}
    assert picker.progress.value == picker.progress.max == 5
    assert result.image.shape == (1, 3, 32, 32)


def test_an_error_message_is_escaped_for_the_status_line(explorer):
    explorer._failed(ValueError("<script>"))
    assert "&lt;script&gt;" in explorer.status.value and "<script>" not in explorer.status.value


def test_the_explorer_shows_the_cost_and_refuses_what_cannot_fit(explorer, monkeypatch):
    result = explorer.run(wait=True)
    assert result is not None and explorer.error is None
    import nst_lib.cost as cost

    monkeypatch.setattr(cost, "available_mb", lambda device="cpu": 100.0)  # less than the base
    explorer.run()
    assert explorer.thread is None or not explorer.running
    assert isinstance(explorer.error, ValueError) and "use size=" in str(explorer.error)
    assert "use size=" in explorer.status.value


# ---------------------------------------------------------------------- presets and the cost


def test_the_paper_preset_sets_the_papers_recipe_and_fast_the_defaults(explorer):
    explorer.ratio.value, explorer.size.value, explorer.seed.value = 1e-3, 64, 5
    explorer.style_layers["conv2_1"].value = False
    explorer.preset.value = "paper"
    assert (explorer.init.value, explorer.steps.value, explorer.scales.value) == ("noise",
                                                                                 "1000", 1)
    assert explorer.content_layer.value == "conv4_2"
    assert all(box.value for box in explorer.style_layers.values())  # all five again
    paper = nst.Config(**PAPER_RECIPE)
    config = explorer.config()
    assert (config.init, config.steps, config.scales) == (paper.init, paper.steps, paper.scales)
    assert config.style_layers == nst.STYLE_LAYERS and config.pooling == "avg"
    assert (config.ratio, config.size, config.seed) == (pytest.approx(1e-3), 64, 5)  # kept
    explorer.preset.value = "fast"
    defaults = nst.Config()
    assert explorer.config().steps == defaults.steps == nst.Config().steps
    assert (explorer.init.value, explorer.scales.value) == (defaults.init, defaults.scales)


def test_the_preset_shows_whether_the_controls_still_match_it(explorer):
    assert explorer.preset.value is None  # steps=6, scales=1 from the test's config: neither
    explorer.preset.value = "paper"
    explorer.init.value = "content"
    assert explorer.preset.value is None
    explorer.init.value = "noise"
    assert explorer.preset.value == "paper"
    explorer.ratio.value = 1e-2  # not part of a preset
    assert explorer.preset.value == "paper"


def test_the_pooling_control_runs_the_network_with_that_pooling(explorer, model):
    assert explorer.pooling.value == model.pooling == "avg"  # starts at the given network's
    explorer.preset.value = "paper"
    explorer.pooling.value = "max"
    assert explorer.config().pooling == "max" and explorer.preset.value is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "untrained VGG19"
        other = explorer._model_for(explorer.config())
    assert other.pooling == "max" and other is not model
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in other.features)
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), model.parameters()))
    result = explorer.run(wait=True)
    assert result.config.pooling == "max"
    assert "max" in widgets.describe(result)["pooling"]
    explorer.pooling.value = "avg"
    assert explorer._model_for(explorer.config()) is model


def test_the_cost_line_follows_the_controls(explorer, monkeypatch):
    import nst_lib.cost as cost

    monkeypatch.setattr(cost, "available_mb", lambda device="cpu": 4096.0)

    def expected():
        return f"This run will need {nst.check_cost(explorer.content_image, explorer.style_image, explorer.config(), explorer.model)}."

    explorer.size.value = 64
    small = explorer.cost.value
    assert small == expected() and "of 4.0 GB free" in small
    explorer.size.value = 512
    explorer.preset.value = "paper"
    assert explorer.cost.value == expected() != small
    for box in explorer.style_layers.values():
        box.value = False
    assert explorer.cost.value == "<b>Cannot run:</b> Tick at least one style layer."
    explorer.style_layers["conv1_1"].value = True
    monkeypatch.setattr(cost, "available_mb", lambda device="cpu": 100.0)
    explorer.steps.value = "1000"  # any change: the cost is looked at again
    explorer.steps.value = "999"
    assert "Cannot run:" in explorer.cost.value and "use size=" in explorer.cost.value


# ---------------------------------------------------------------------- gallery, compare, save


def _three_runs(explorer):
    explorer.seed.value, explorer.init.value = 1, "noise"
    explorer.run(wait=True)
    explorer.init.value = "content"
    explorer.run(wait=True)
    explorer.steps.value = "500"
    explorer.run()
    deadline = time.time() + 60
    while explorer.progress.value < 3 and time.time() < deadline:
        time.sleep(0.01)
    explorer.stop()
    return explorer.wait(timeout=60)


def test_every_run_joins_the_gallery_also_a_stopped_one(explorer):
    assert explorer.gallery == []
    stopped = _three_runs(explorer)
    assert len(explorer.gallery) == 3
    assert [e.result.stop_reason for e in explorer.gallery] == ["steps", "steps", "stopped"]
    assert explorer.gallery[-1].result is stopped is explorer.result
    first = explorer.gallery[0].settings
    assert first["α/β"] == "2e-4" and first["start"] == "noise" and first["seed"] == "1"
    assert first["size"] == "48x32 px" and first["steps"] == "6 (1 scale)"
    assert first["content"] == "conv4_2" and first["style"].startswith("conv1_1, conv2_1")
    assert explorer.gallery[1].settings["start"] == "content"
    assert explorer.gallery[2].settings["time"].endswith("stopped")
    assert explorer.thumbnails.value.count("<img ") == 3 and "#3" in explorer.thumbnails.value


def test_a_and_b_show_two_runs_side_by_side(explorer):
    _three_runs(explorer)
    assert (explorer.pick["A"].value, explorer.pick["B"].value) == (0, 2)  # first, newest
    explorer.pick["A"].value, explorer.pick["B"].value = 1, 0
    for side, index in (("A", 1), ("B", 0)):
        entry = explorer.gallery[index]
        assert explorer.compared[side].value == widgets.png(entry.result.image)
        shown = html.unescape(explorer.compared_settings[side].value)
        assert re.match(f"<div[^>]*><b>#{index + 1}</b><br>", shown)
        assert f"start: {entry.settings['start']}" in shown
    assert explorer.compared["A"].value != explorer.compared["B"].value
    explorer.run(wait=True)  # a fourth run: B shows it, A stays
    assert (explorer.pick["A"].value, explorer.pick["B"].value) == (1, 3)


def test_save_writes_the_picture_and_the_gallery_and_never_replaces(explorer, tmp_path):
    assert explorer.save() == [] and "press Run first" in explorer.status.value
    explorer.run(wait=True)
    explorer.run(wait=True)
    explorer.folder.value = str(tmp_path / "new" / "folder")
    first = explorer.save()
    assert [p.name for p in first] == ["result.png", "gallery.png"]
    with Image.open(first[0]) as im:
        assert im.format == "PNG" and im.size == (48, 32)
        assert im.tobytes() == nst.to_pil(explorer.gallery[-1].result.image).tobytes()
    with Image.open(first[1]) as im:
        assert im.format == "PNG" and im.width > 2 * 48  # two runs and their captions
    before = {p: p.read_bytes() for p in first}
    second = explorer.save()
    assert [p.name for p in second] == ["result-1.png", "gallery-1.png"]
    assert {p: p.read_bytes() for p in first} == before
    assert str(tmp_path / "new" / "folder") in html.unescape(explorer.status.value)


def test_the_download_links_hold_the_saved_files(explorer, tmp_path):
    explorer.run(wait=True)
    explorer.folder.value = str(tmp_path)
    paths = explorer.save()
    links = re.findall(r'<a download="([^"]+)" href="data:(image/\w+);base64,([^"]+)"',
                       explorer.downloads.value)
    assert [(name, mime) for name, mime, _ in links] == [("result.png", "image/png"),
                                                         ("gallery.png", "image/png")]
    for path, (_, _, data) in zip(paths, links):
        assert base64.b64decode(data) == path.read_bytes()


def test_save_says_why_when_the_folder_cannot_be_made(explorer, tmp_path):
    explorer.run(wait=True)
    (tmp_path / "a file").write_text("not a folder")
    explorer.folder.value = str(tmp_path / "a file" / "out")
    assert explorer.save() == []
    assert explorer.status.value.startswith("<b>Not saved:</b>")


# ---------------------------------------------------------------------- animation and colours


def _distinct(frames):
    """How many frames a GIF of these keeps: consecutive equal pictures are merged."""
    pixels = [nst.to_pil(f).tobytes() for f in frames]
    return 1 + sum(a != b for a, b in zip(pixels, pixels[1:]))


def test_the_animation_records_the_pictures_of_the_run(explorer, tmp_path):
    explorer.animate.value = True
    result = explorer.run(wait=True)
    assert len(explorer.frames) == 3  # every 2nd of 6 evaluations
    assert explorer.animation_box.layout.display == ""
    with Image.open(io.BytesIO(explorer.animation.value)) as gif:
        assert gif.format == "GIF" and gif.size == (48, 32)
        assert gif.n_frames == _distinct([*explorer.frames, result.image])
    explorer.folder.value = str(tmp_path)
    assert [p.name for p in explorer.save()] == ["result.png", "gallery.png", "animation.gif"]
    assert (tmp_path / "animation.gif").read_bytes() == explorer.gallery[-1].animation
    explorer.animate.value = False
    explorer.run(wait=True)
    assert explorer.frames is None and explorer.gallery[-1].animation is None
    assert explorer.animation_box.layout.display == "none"


def test_the_photos_colours_are_kept_also_in_the_pictures_on_the_way(explorer):
    from nst_lib.color import rgb_to_yiq

    explorer.colours.value, explorer.animate.value = "luminance", True
    result = explorer.run(wait=True)
    photo = nst.resize(explorer.content_image, tuple(result.image.shape[-2:]))
    wanted = rgb_to_yiq(photo)[:, 1:]  # the photo's colour channels I and Q
    for picture in (result.image, explorer.frames[-1]):
        chroma = rgb_to_yiq(picture)[:, 1:]  # not grey (0), the photo's (up to clamping)
        assert (chroma - wanted).abs().mean() < 0.01 < 0.05 < chroma.abs().mean()
    assert explorer.gallery[-1].settings["colours"] == "the photo's (luminance)"
