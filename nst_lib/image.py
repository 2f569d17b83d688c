"""Images in and out: files to RGB tensors in [0, 1] of shape (1, 3, H, W), and back.

Every function here works in plain RGB [0, 1]; the network's own preprocessing (Caffe's
BGR 0-255 or torchvision's mean/std) lives with the weights in :mod:`nst_lib.vgg`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MAX_PIXELS = 80_000_000  # larger files are refused before decoding (decompression bombs)
MIN_SIDE = 16  # pool4 halves four times; smaller images leave nothing for conv5_x


class ImageError(ValueError):
    """An image file that cannot be used, with a message that says what to do."""


def example(name: str) -> Path:
    """Path of a bundled example image in ``data/``, e.g. ``example("starry_night.jpg")``."""
    path = DATA_DIR / name
    if not path.is_file():
        names = sorted(p.name for p in DATA_DIR.glob("*") if p.suffix != ".md")
        raise ImageError(f"No example image {name!r}; the bundled ones are: {', '.join(names)}.")
    return path


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as an upright RGB PIL image.

    EXIF orientation is applied (phone photos). Greyscale, palette, CMYK and 16-bit images
    are converted to RGB; transparent pixels are composited on white.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file; check the path.")
    if path.is_dir():
        raise ImageError(f"{path} is a directory; give the path of an image file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes); use another copy of the image.")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(
                    f"{path} is {im.width}x{im.height} pixels, more than {MAX_PIXELS:,}; "
                    "scale it down before using it."
                )
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path} is not a readable image ({err}); use a JPEG, PNG or WebP file.")


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bit
        scale = 1 / 256 if im.mode.startswith("I;16") or im.getextrema()[1] > 255 else 1
        im = im.point(lambda v: v * scale).convert("L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor (1, 3, H, W) in [0, 1]."""
    data = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
    return data.view(im.height, im.width, 3).permute(2, 0, 1).unsqueeze(0).float() / 255


def resize(
    image: torch.Tensor, size: int | tuple[int, int] | None
) -> torch.Tensor:
    """Resize (1, 3, H, W): an int is the longest side (aspect kept), a pair is (H, W)."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"size must be a positive number of pixels, got {size}.")
        s = size / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
    if min(size) < MIN_SIDE:
        raise ImageError(
            f"{size[0]}x{size[1]} pixels is too small: VGG19's deepest layers need at least "
            f"{MIN_SIDE} px on each side."
        )
    if tuple(size) == (h, w):
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def load_image(
    path: str | os.PathLike, size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """Load an image file as an RGB tensor (1, 3, H, W) in [0, 1].

    ``size``: None keeps the file's size, an int sets the longest side (keeping the aspect
    ratio), a pair (H, W) sets the exact size.
    """
    return resize(to_tensor(open_image(path)), size).clamp(0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) tensor -> PIL RGB image, clamped to [0, 1]."""
    image = image.detach().to("cpu", torch.float32)
    if image.dim() == 4:
        image = image[0]
    data = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    return Image.fromarray(data.numpy(), "RGB")


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now, not after the run, if ``path`` cannot be written."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ImageError(f"{path} is a directory; give a file name such as {path / 'out.png'}.")
    if not folder.is_dir():
        raise ImageError(f"Cannot write {path}: folder {folder} does not exist.")
    if not os.access(folder, os.W_OK):
        raise ImageError(f"Cannot write {path}: folder {folder} is not writable.")
    return path


def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save as PNG (or any format PIL knows by the suffix), atomically.

    The file is written under a temporary name and renamed, so an interrupted save never
    leaves a half-written image.
    """
    path = check_writable(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            to_pil(image).save(f, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
