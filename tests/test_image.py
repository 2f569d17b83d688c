import errno
import os
import importlib
import pkgutil
import re
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import nst_lib as nst
import nst_lib.image as image_module

ORIENTATION = 0x0112  # the EXIF tag


def _save(tmp_path, im, name, **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


@pytest.mark.parametrize("mode, colour", [
    ("RGB", (200, 100, 50)),
    ("L", (124, 124, 124)),  # 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2
    ("P", (200, 100, 50)),  # dithered from the web palette: right on average
    ("RGBA", (200, 100, 50)),
    ("LA", (124, 124, 124)),
    ("CMYK", (200, 100, 50)),
])
def test_every_mode_loads_as_rgb_with_its_colour(tmp_path, mode, colour):
    im = Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
    x = nst.load_image(_save(tmp_path, im, "a.png" if mode != "CMYK" else "a.jpg"))
    assert x.shape == (1, 3, 10, 20) and x.dtype == torch.float32
    assert x.mean(dim=(0, 2, 3)).mul(255).tolist() == pytest.approx(colour, abs=3)


def test_transparent_pixels_are_composited_on_white(tmp_path):
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    x = nst.load_image(_save(tmp_path, im, "t.png"))
    assert torch.allclose(x, torch.ones_like(x))


def test_16_bit_greyscale_png_keeps_its_brightness(tmp_path):
    data = np.full((6, 9), 32768, dtype=np.uint16)  # half of the 16-bit range
    x = nst.load_image(_save(tmp_path, Image.fromarray(data), "g16.png"))
    assert x.shape == (1, 3, 6, 9)
    assert torch.allclose(x, torch.full_like(x, 128 / 255))


def test_webp_loads(tmp_path):
    x = nst.load_image(_save(tmp_path, Image.new("RGB", (16, 12), (0, 255, 0)), "w.webp",
                             lossless=True))
    assert x.shape == (1, 3, 12, 16) and x[0, 1].min() > 0.99


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (30, 20))  # stored landscape
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the photo is portrait
    x = nst.load_image(_save(tmp_path, im, "phone.jpg", exif=exif))
    assert x.shape == (1, 3, 30, 20)


def test_resize_by_longest_side_keeps_aspect_and_exact_size_is_exact():
    x = torch.rand(1, 3, 300, 451)
    assert nst.resize(x, 128).shape == (1, 3, 85, 128)
    assert nst.resize(torch.rand(1, 3, 451, 300), 128).shape == (1, 3, 128, 85)
    assert nst.resize(x, (64, 32)).shape == (1, 3, 64, 32)
    assert nst.resize(x, None) is x


def test_image_from_sets_a_size_or_with_at_most_only_shrinks(tmp_path):
    big, small = torch.rand(1, 3, 300, 451), torch.rand(1, 3, 30, 45)
    assert nst.image.image_from(big, 128).shape == (1, 3, 85, 128)
    assert nst.image.image_from(small, 128).shape == (1, 3, 85, 128)  # enlarged
    assert nst.image.image_from(big, 128, at_most=True).shape == (1, 3, 85, 128)
    assert torch.equal(nst.image.image_from(small, 128, at_most=True), small)  # kept
    path = tmp_path / "small.png"
    nst.save_image(small, path)
    assert nst.image.image_from(path, 128, at_most=True).shape == (1, 3, 30, 45)
    assert nst.image.image_from(None, 128) is None


def test_bundled_examples_load():
    x = nst.load_image(nst.example("starry_night.jpg"), 256)
    assert x.shape == (1, 3, 201, 256)
    # the painting is cut to its canvas: no black border or light canvas edge on any side,
    # which the style loss would copy as straight lines
    full = nst.load_image(nst.example("starry_night.jpg"))
    for edge in (full[..., :3, :], full[..., -3:, :], full[..., :3], full[..., -3:]):
        assert 0.15 < edge.mean() < 0.55
    with pytest.raises(nst.ImageError, match="starry_night.jpg"):
        nst.example("mona_lisa.jpg")


def test_to_pil_clamps_and_save_round_trips(tmp_path):
    x = torch.rand(1, 3, 8, 8) * 3 - 1  # outside [0, 1]
    im = nst.to_pil(x)
    assert im.size == (8, 8) and im.mode == "RGB"
    path = nst.save_image(x, tmp_path / "out.png")
    y = nst.load_image(path)
    assert torch.allclose(y, x.clamp(0, 1), atol=1 / 255)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left over


# ---------------------------------------------------------------------------- tensors as images


def _pixels():
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (1, 3, 6, 8), generator=g, dtype=torch.uint8)


def test_as_image_leaves_a_good_image_as_it_is_in_a_new_tensor():
    x = _pixels().float() / 255
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning
        y = nst.as_image(x)
        assert torch.equal(nst.as_image(x[0]), x)  # (3, H, W) gets its batch dimension
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()


def test_as_image_divides_uint8_pixels_by_255_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = nst.as_image(_pixels())
    assert y.dtype == torch.float32 and torch.equal(y, _pixels().float() / 255)


@pytest.mark.parametrize("make", [lambda x: x * 255, lambda x: (x * 255).double()])
def test_as_image_reads_floats_up_to_255_as_pixels_with_a_warning(make):
    x = _pixels().float() / 255
    with pytest.warns(UserWarning, match=r"content image has values from 0 to 2\d\d; read them "
                                         r"as 0-255 and divided them by 255"):
        y = nst.as_image(make(x), what="content image")
    assert torch.allclose(y, x)


@pytest.mark.parametrize("shape", [(6, 8), (1, 6, 8), (1, 1, 6, 8)])
def test_as_image_repeats_greyscale_to_three_channels_with_a_warning(shape):
    grey = torch.rand(shape)
    with pytest.warns(UserWarning, match=re.escape(f"style image (shape {shape}, float32) is "
                                                   "greyscale; repeated it to 3 channels")):
        y = nst.as_image(grey, what="style image")
    assert y.shape == (1, 3, 6, 8) and all(torch.equal(y[0, c], grey.reshape(6, 8))
                                           for c in range(3))


@pytest.mark.parametrize("shape", [(6, 8, 3), (1, 6, 8, 3)])
def test_as_image_moves_channels_last_first_with_a_warning(shape):
    x = torch.rand(1, 3, 6, 8)
    last = x.permute(0, 2, 3, 1).reshape(shape)
    with pytest.warns(UserWarning, match="has its channels last; moved them first"):
        assert torch.equal(nst.as_image(last), x)


def _ramp(lo, hi):
    return torch.linspace(lo, hi, 3 * 6 * 8).reshape(1, 3, 6, 8)


@pytest.mark.parametrize("bad, message", [
    (torch.full((1, 3, 6, 8), float("nan")), r"content image \(shape \(1, 3, 6, 8\), float32\) "
                                             "holds NaN or infinite values"),
    (torch.ones(1, 3, 6, 8) / 0, "holds NaN or infinite values"),
    (_ramp(-2, 1.5), r"values from -2 to 1.5; give RGB values in \[0, 1\] \(or 0-255\), not "
                     "an image normalised with a mean and std or made with torch.randn"),
    (_ramp(1, 1.3), r"values from 1 to 1.3; give RGB values in \[0, 1\] \(or 0-255\); "
                    r"x.clamp\(0, 1\) clips them\.$"),
    (_ramp(256, 1256), r"from 256 to 1.26e\+03; give RGB values in \[0, 1\] \(or 0-255\)\.$"),
    (torch.tensor([[[[-3, 200]]]]).expand(1, 3, 1, 2), "values from -3 to 200"),
    (torch.rand(2, 3, 6, 8), r"content image is a batch of 2 images \(shape \(2, 3, 6, 8\)"),
    (torch.rand(1, 4, 6, 8), r"content image has shape \(1, 4, 6, 8\), float32; give an RGB"),
    (torch.rand(6, 8, 4), r"shape \(6, 8, 4\), float32; give an RGB image .*first 3 channels"),
    (torch.rand(1, 3, 0, 8), r"shape \(1, 3, 0, 8\)"),
    (torch.rand(3), r"shape \(3,\)"),
    (torch.ones(1, 3, 6, 8, dtype=torch.bool), "a tensor of shape .*, bool"),
    (np.zeros((6, 8, 3)), "content image is a ndarray; give a file path or a tensor"),
])
def test_as_image_refuses_what_is_not_an_image_and_says_what_it_got(bad, message):
    with pytest.raises(nst.ImageError, match=message):
        nst.as_image(bad, what="content image")


# ---------------------------------------------------------------------------- paths


def test_a_web_address_is_refused_with_advice():
    with pytest.raises(nst.ImageError, match="^https://example.com/cat.jpg is a web address; "
                                             "download the image first"):
        nst.load_image("https://example.com/cat.jpg")


def test_a_missing_file_names_the_closest_file_in_its_folder(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "chelsea.png")
    with pytest.raises(nst.ImageError, match=re.escape(
            f"chelsea.jpg: no such file; check the path (did you mean {tmp_path}/chelsea.png?)")):
        nst.load_image(tmp_path / "chelsea.jpg")
    with pytest.raises(nst.ImageError, match=r"no such file; check the path\.$"):
        nst.load_image(tmp_path / "zebra.webp")  # nothing like it
    with pytest.raises(nst.ImageError, match=r"no such file; check the path\.$"):
        nst.load_image(tmp_path / "no" / "folder.png")


def test_a_path_from_the_home_folder_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    Image.new("RGB", (5, 4)).save(tmp_path / "cat.png")
    assert nst.load_image("~/cat.png").shape == (1, 3, 4, 5)
    assert nst.save_image(torch.zeros(1, 3, 4, 5), "~/out.png") == tmp_path / "out.png"
    assert nst.load_image(tmp_path / "out.png").shape == (1, 3, 4, 5)


# ---------------------------------------------------------------------------- bad files


def test_bad_image_files_are_one_clear_error(bad_image_file):
    path, message = bad_image_file
    with pytest.raises(nst.ImageError, match=re.escape(message)):
        nst.load_image(path, 64)


def test_truncated_images_are_never_completed_silently(tmp_path, truncated):
    for module in pkgutil.iter_modules(nst.__path__):  # nothing in the package turns it on
        importlib.import_module(f"nst_lib.{module.name}")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    path = truncated(tmp_path / "half.jpg", "JPEG")
    with Image.open(path) as im:
        assert im.size == (64, 48)  # the header alone looks fine: only decoding tells
    with pytest.raises(nst.ImageError, match="truncated"):
        nst.load_image(path)


# ---------------------------------------------------------------------------- colour modes


def _rgb16_png(path, png):
    """16-bit RGB (PIL reads it but cannot write it): (32768, 65535, 0) everywhere."""
    rows = b"".join(b"\x00" + struct.pack(">HHH", 32768, 65535, 0) * 5 for _ in range(4))
    return png(path, 5, 4, depth=16, colour=2, rows=rows)


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


def _saved(im, path, **kwargs):
    im.save(path, **kwargs)
    return path


MODES = {  # name: (file, the colour of pixel (1, 1), and of pixel (0, 0) when it differs)
    "greyscale": (lambda d, png: _saved(Image.new("L", (5, 4), 128), d / "x.png"),
                  (128, 128, 128)),
    "1-bit": (lambda d, png: _saved(Image.new("1", (5, 4), 1), d / "x.png"), (255, 255, 255)),
    "palette": (lambda d, png: _saved(Image.new("RGB", (5, 4), (200, 100, 50))
                                      .convert("P", palette=Image.Palette.ADAPTIVE), d / "x.png"),
                (200, 100, 50)),
    "palette + transparency": (lambda d, png: _palette_with_transparency(d / "x.png"),
                               (200, 100, 50), (255, 255, 255)),
    "RGB + transparent colour": (lambda d, png: _rgb_with_transparent_colour(d / "x.png"),
                                 (200, 100, 50), (255, 255, 255)),
    "RGBA half transparent": (lambda d, png: _saved(Image.new("RGBA", (5, 4), (255, 0, 0, 128)),
                                                    d / "x.png"), (255, 127, 127)),
    "greyscale + alpha": (lambda d, png: _saved(Image.new("LA", (5, 4), (0, 0)), d / "x.png"),
                          (255, 255, 255)),
    "CMYK JPEG": (lambda d, png: _saved(Image.new("RGB", (16, 16), (200, 100, 50))
                                        .convert("CMYK"), d / "x.jpg", quality=95), (200, 100, 50)),
    "16-bit greyscale": (lambda d, png: _saved(Image.fromarray(np.full((4, 5), 32768, np.uint16)),
                                               d / "x.png"), (128, 128, 128)),
    "16-bit greyscale, dark": (lambda d, png: _saved(
        Image.fromarray(np.full((4, 5), 2560, np.uint16)), d / "x.png"), (10, 10, 10)),
    "16-bit RGB": (lambda d, png: _rgb16_png(d / "x.png", png), (128, 255, 0)),
}


@pytest.mark.parametrize("case", MODES)
def test_every_colour_mode_loads_as_rgb_with_its_brightness(tmp_path, png, case):
    make, colour, *corner = MODES[case]
    x = nst.load_image(make(tmp_path, png))
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
def test_files_claiming_huge_dimensions_are_refused_before_decoding(tmp_path, png, width,
                                                                    height, size):
    # the IDAT holds no pixels at all: decoding would fail with "damaged", not this message
    path = png(tmp_path / "huge.png", width, height)
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


def test_the_limits_apply_to_the_pixels_decoded(tmp_path, monkeypatch, photo):
    monkeypatch.setattr(image_module, "LARGE_PIXELS", 1_000)
    monkeypatch.setattr(image_module, "MAX_PIXELS", 5_000)
    jpeg, png = tmp_path / "a.jpg", tmp_path / "a.png"
    photo(320, 240).save(jpeg)
    photo(320, 240).save(png)
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


def test_a_sideways_huge_jpeg_is_reduced_by_its_upright_shape(tmp_path, monkeypatch, photo):
    monkeypatch.setattr(image_module, "LARGE_PIXELS", 1_000)
    monkeypatch.setattr(image_module, "MAX_PIXELS", 10_000)  # 320x80 only at half scale
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    photo(320, 80).save(tmp_path / "tall.jpg", exif=exif)  # shown 80 wide, 320 high
    # upright, (40, 16) allows half the size; the stored shape would allow no reduction
    with pytest.warns(UserWarning, match="is 80x320 pixels; read it at 40x160"):
        assert nst.load_image(tmp_path / "tall.jpg", (40, 16)).shape == (1, 3, 40, 16)


# ---------------------------------------------------------------------------- tiny images


def test_an_image_too_small_after_resizing_names_the_minimum(tmp_path, photo):
    photo(300, 12).save(tmp_path / "strip.png")  # 256 px long: 10 px high
    with pytest.raises(nst.ImageError, match=r"256x10 pixels is too small.*at least 16 px on "
                                             "each side"):
        nst.load_image(tmp_path / "strip.png", 256)
    with pytest.raises(ValueError, match="size must be a positive number of pixels, got 0"):
        nst.load_image(tmp_path / "strip.png", 0)  # a bad size, not a small image


# ---------------------------------------------------------------------------- saving


def test_an_image_with_nan_is_never_saved(tmp_path):
    x = torch.rand(1, 3, 8, 8)
    x[0, 1, 2, 3] = float("nan")
    with pytest.raises(nst.ImageError, match="NaN or infinite"):
        nst.save_image(x, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


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
    expected = (nst.ImageError, "the disk is full .*; free some space on it, or choose a "
                "folder on another disk") if isinstance(failure, OSError) else (KeyboardInterrupt, "")
    with pytest.raises(expected[0], match=expected[1]):
        nst.save_image(torch.ones(1, 3, 8, 8), out)
    assert out.read_bytes() == before and list(tmp_path.iterdir()) == [out]


def test_a_folder_that_refuses_writing_is_reported(tmp_path, monkeypatch):
    def refuse(**kwargs):  # what a read-only folder does, even for root on a read-only disk
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(image_module.tempfile, "mkstemp", refuse)
    with pytest.raises(nst.ImageError, match="is not writable for you \\(Permission denied\\); "
                       "choose a folder you can write"):
        nst.save_image(torch.zeros(1, 3, 8, 8), tmp_path / "out.png")


@pytest.mark.parametrize("code, advice", [
    (errno.ENOSPC, "the disk is full (No space left on device); free some space on it, or "
                   "choose a folder on another disk"),
    (errno.EDQUOT, "your disk quota is used up"),
    (errno.EROFS, "is on a read-only disk"),
    (errno.ENAMETOOLONG, "a name in the path is too long"),
])
def test_a_folder_that_refuses_writing_gets_the_advice_of_its_cause(tmp_path, monkeypatch, code,
                                                                    advice):
    def refuse(**kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(image_module.tempfile, "mkstemp", refuse)
    with pytest.raises(nst.ImageError) as refused:
        nst.save_image(torch.zeros(1, 3, 8, 8), tmp_path / "out.png")
    assert advice in str(refused.value)
    assert ("free some space" in str(refused.value)) == (code == errno.ENOSPC)
