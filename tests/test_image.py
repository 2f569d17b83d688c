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
