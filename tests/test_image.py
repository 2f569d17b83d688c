import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import nst_lib as nst


def _save(tmp_path, im, name, **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK"])
def test_every_mode_loads_as_rgb_in_unit_range(tmp_path, mode):
    im = Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
    x = nst.load_image(_save(tmp_path, im, "a.png" if mode != "CMYK" else "a.jpg"))
    assert x.shape == (1, 3, 10, 20) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1


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
