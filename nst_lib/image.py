"""Images in and out: files to RGB tensors in [0, 1] of shape (1, 3, H, W), and back.

Every function here works in plain RGB [0, 1]; the network's own preprocessing (Caffe's
BGR 0-255 or torchvision's mean/std) lives with the weights in :mod:`nst_lib.vgg`.
"""

from __future__ import annotations

import difflib
import os
import struct
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .files import atomic_write, write_problem

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MAX_PIXELS = 80_000_000  # more pixels than this are never decoded (decompression bombs)
LARGE_PIXELS = 16_000_000  # above this, a file is read at reduced resolution when a size is given
MIN_SIDE = 16  # pool4 halves four times; smaller images leave nothing for conv5_x
SIDEWAYS = (5, 6, 7, 8)  # EXIF orientations stored rotated by 90 degrees


class ImageError(ValueError):
    """An image file that cannot be used, with a message that says what to do."""


def example(name: str) -> Path:
    """Path of a bundled example image in ``data/``, e.g. ``example("starry_night.jpg")``."""
    path = DATA_DIR / name
    if not path.is_file():
        names = sorted(p.name for p in DATA_DIR.glob("*") if p.suffix != ".md")
        raise ImageError(f"No example image {name!r}; the bundled ones are: {', '.join(names)}.")
    return path


def open_image(
    path: str | os.PathLike, *, size: int | tuple[int, int] | None = None
) -> Image.Image:
    """Open an image file as an upright RGB PIL image.

    EXIF orientation is applied (phone photos). Greyscale, palette, CMYK and 16-bit images
    are converted to RGB; transparent pixels are composited on white.

    Files of more than ``MAX_PIXELS`` pixels are refused before decoding. When ``size`` is
    given (see :func:`resize`), a file of more than ``LARGE_PIXELS`` pixels is read at a
    reduced resolution that is still at least twice ``size`` (JPEGs are decoded at 1/2, 1/4
    or 1/8 scale, other files are shrunk by an integer factor), with a warning.

    ``~`` is your home folder, as in a shell. A web address is refused (download the file
    first); a missing file's message names a file of a similar name in its folder if any.
    """
    path = _existing(path)
    if size is not None:
        target_shape(1, 1, size)  # a bad size is reported as such, not as a bad file
    im, stored, sideways = _decode(path, size)
    w, h = stored[::-1] if sideways else stored  # as displayed
    if im.size != (w, h):
        warnings.warn(f"{path.name} is {w}x{h} pixels; read it at {im.width}x{im.height} to "
                      "save memory.", stacklevel=2)
    return im


def _existing(path: str | os.PathLike) -> Path:
    """``path`` as a Path (``~`` expanded) if it names a file that is not empty."""
    if str(path).startswith(("http://", "https://", "ftp://")):
        raise ImageError(f"{path} is a web address; download the image first and give the "
                         "path of the file.")
    path = Path(path).expanduser()
    try:
        exists = path.exists()
    except OSError as err:  # a name too long, a loop of links: not a file it can read
        raise ImageError(f"{path}: {err.strerror or err}; check the path.") from None
    if not exists:
        raise ImageError(f"{path}: no such file; check the path{_similar(path)}.")
    if path.is_dir():
        raise ImageError(f"{path} is a directory; give the path of an image file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes); use another copy of the image.")
    return path


SHRINK_HINT = "scale it down first, for example to 4000 px on the longest side"


def _decode(path: Path, size) -> tuple[Image.Image, tuple[int, int], bool]:
    """:func:`_read`, with every way decoding can fail as an :class:`ImageError`."""
    try:
        return _read(path, size)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(f"{path} has more pixels than PIL's safety limit of {limit:,}; "
                         f"{SHRINK_HINT}.") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not a readable image (not a format PIL knows); use a "
                         "JPEG, PNG or WebP file.") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise ImageError(f"{path} is damaged or incomplete ({err}); use another copy of the "
                         "image.") from None


def _read(path: Path, size) -> tuple[Image.Image, tuple[int, int], bool]:
    """The decoded, upright RGB image, its size in the file, and whether it was sideways."""
    with warnings.catch_warnings():
        # PIL warns above 89 MP and refuses above 179 MP; our own limit is MAX_PIXELS
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(path)  # reads the header only
    with im:
        stored = im.size  # (W, H) in the file
        shrink = size is not None and stored[0] * stored[1] > LARGE_PIXELS
        if shrink and im.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale
            factor = _reduction(im, size)  # a JPEG's EXIF is in its header: cheap
            im.draft(im.mode, (im.width // factor, im.height // factor))
        if im.width * im.height > MAX_PIXELS:
            raise ImageError(f"{path} is {im.width}x{im.height} pixels, more than the "
                             f"{MAX_PIXELS:,} this library decodes; {SHRINK_HINT}.")
        im.load()  # decode now, inside the try: a truncated file fails here, not later
        sideways = _sideways(im)  # after load(): a PNG's EXIF may follow its pixels
        im = ImageOps.exif_transpose(im)
    im = _to_rgb(im)
    if shrink and _reduction(im, size) > 1:
        im = im.reduce(_reduction(im, size))  # box filter, cheap; resize() does the rest
    return im, stored, sideways


def _similar(path: Path) -> str:
    """ " (did you mean X?)" for the file in ``path``'s folder whose name is closest, or ""."""
    try:
        names = [p.name for p in path.parent.iterdir() if p.is_file()]
    except OSError:  # no such folder, or not readable
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f" (did you mean {path.parent / close[0]}?)" if close else ""


def _sideways(im: Image.Image) -> bool:
    """True when the EXIF orientation says the picture is stored rotated by 90 degrees."""
    return im.getexif().get(ExifTags.Base.Orientation, 1) in SIDEWAYS


def _reduction(im: Image.Image, size: int | tuple[int, int]) -> int:
    """The integer factor by which ``im`` can shrink and still be twice ``size`` (>= 1)."""
    h, w = (im.width, im.height) if _sideways(im) else (im.height, im.width)
    th, tw = target_shape(h, w, size)
    return max(1, min(h // (2 * max(th, 1)), w // (2 * max(tw, 1))))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bit
        scale = 1 / 256 if im.mode.startswith("I;16") or im.getextrema()[1] > 255 else 1
        im = im.point(lambda v: v * scale).convert("L")
    if im.mode == "P" or "transparency" in im.info:  # palette, or one colour transparent
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def as_image(x: torch.Tensor, *, what: str = "image") -> torch.Tensor:
    """A tensor given as an image, as a new RGB tensor (1, 3, H, W), float32 in [0, 1].

    The tensors most often passed by mistake are converted, with a warning that says so,
    instead of quietly painting a grey, black or white picture:

    - uint8 (or other integer) pixels 0-255 are divided by 255 (no warning: this is how
      pixels are usually stored);
    - floats above 1.5 and none below -0.5 (``x * 255``, pixels turned into floats) are read
      as 0-255 and divided by 255;
    - greyscale, (H, W), (1, H, W) or (1, 1, H, W), is repeated to 3 channels;
    - channels last, (H, W, 3) or (1, H, W, 3) as numpy and matplotlib store pictures, is
      permuted to channels first;
    - (3, H, W) gets its batch dimension (no warning); values at most 1% outside [0, 1]
      (rounding) are clamped.

    Refused with an :class:`ImageError` that names ``what`` and what was found: NaN or
    infinite values; other values outside [0, 1] (an image normalised with a mean and std,
    ``torch.randn``); a batch of several images; any other shape; anything not a tensor.
    """
    if not isinstance(x, torch.Tensor):
        raise ImageError(f"The {what} is a {type(x).__name__}; give a file path or a tensor "
                         "(1, 3, H, W) in [0, 1] (torch.from_numpy turns an array into one).")
    found = f"shape {tuple(x.shape)}, {str(x.dtype).removeprefix('torch.')}"
    x = _as_rgb_shape(x.detach(), what, found)
    if x.dtype == torch.bool or x.is_complex():
        raise ImageError(f"The {what} is a tensor of {found}; give RGB values in [0, 1].")
    return _as_unit_range(x, what, found)


def _as_rgb_shape(x: torch.Tensor, what: str, found: str) -> torch.Tensor:
    """``x`` shaped (1, 3, H, W), from the shapes :func:`as_image` accepts."""
    if x.dim() in (2, 3):
        x = x.reshape(1, *([1] if x.dim() == 2 else []), *x.shape)
    if x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        warnings.warn(f"The {what} ({found}) has its channels last; moved them first, to "
                      "(1, 3, H, W).", stacklevel=3)
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.numel() == 0:
        raise ImageError(f"The {what} has {found}; give an RGB image of shape (1, 3, H, W) "
                         "or (3, H, W) (of an RGBA image, its first 3 channels).")
    if x.shape[0] != 1:
        raise ImageError(f"The {what} is a batch of {x.shape[0]} images ({found}); give one, "
                         "e.g. x[:1].")
    if x.shape[1] == 1:
        warnings.warn(f"The {what} ({found}) is greyscale; repeated it to 3 channels (RGB).",
                      stacklevel=3)
        x = x.expand(1, 3, *x.shape[-2:])
    return x


def _as_unit_range(x: torch.Tensor, what: str, found: str) -> torch.Tensor:
    """``x`` as float32 in [0, 1], from [0, 1] or 0-255 (see :func:`as_image`)."""
    integer = not x.is_floating_point()
    x = x.float()
    if not torch.isfinite(x).all():
        raise ImageError(f"The {what} ({found}) holds NaN or infinite values; check the "
                         "computation that made it.")
    lo, hi = x.min().item(), x.max().item()
    scale = 255 if integer or (hi > 1.5 and lo > -0.5) else 1  # 0-255 or [0, 1]
    if lo / scale < -0.01 or hi / scale > 1.01:
        hint = (", not an image normalised with a mean and std or made with torch.randn "
                "(torch.rand is uniform in [0, 1])" if lo < 0
                else "; x.clamp(0, 1) clips them" if hi <= 1.5 else "")
        raise ImageError(f"The {what} has values from {lo:.3g} to {hi:.3g}; give RGB values in "
                         f"[0, 1] (or 0-255){hint}.")
    if scale == 255 and not integer:
        warnings.warn(f"The {what} has values from {lo:.3g} to {hi:.3g}; read them as 0-255 "
                      "and divided them by 255. Give values in [0, 1] to avoid this.",
                      stacklevel=3)
    return (x / scale).clamp(0, 1).contiguous()


def image_from(source, size: int | tuple[int, int] | None = None, *,
               what: str = "image", at_most: bool = False) -> torch.Tensor | None:
    """Any image the library takes as a tensor (1, 3, H, W) in [0, 1] at ``size``: a file
    (:func:`open_image`), a tensor (:func:`as_image`), or None (None).

    ``at_most``: an int ``size`` only shrinks; a smaller image keeps its size.
    """
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        image = to_tensor(open_image(source, size=size))
    else:
        image = as_image(source, what=what)
    if at_most and isinstance(size, int) and max(image.shape[-2:]) <= size:
        return image
    return resize(image, size).clamp(0, 1)


def as_list(images) -> list:
    """One image or several as a list: None -> [], a path or a tensor -> [it], a list or
    tuple of them -> a list (the way every function that takes "a style or many" reads it)."""
    if images is None:
        return []
    if isinstance(images, (str, os.PathLike, torch.Tensor)):
        return [images]
    return list(images)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor (1, 3, H, W) in [0, 1]."""
    data = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
    return data.view(im.height, im.width, 3).permute(2, 0, 1).unsqueeze(0).float() / 255


def result_shape(source: torch.Tensor | str | os.PathLike,
                 size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) that ``source`` (a tensor, or a file whose header alone is read) will have at
    ``size``, for costing a run before any image is decoded or resized."""
    if isinstance(source, torch.Tensor):
        h, w = source.shape[-2:] if source.dim() != 3 or source.shape[0] in (1, 3) \
            else source.shape[:2]  # (H, W, 3): see as_image
    else:
        try:
            with Image.open(Path(source).expanduser()) as im:
                w, h = im.size
                if _sideways(im):
                    h, w = w, h
        except Exception:  # unreadable: open_image says why, in words
            open_image(source)
            raise
    return (int(h), int(w)) if size is None else target_shape(int(h), int(w), size)


def decoded_pixels(source, size: int | tuple[int, int] | None) -> int:
    """About how many pixels :func:`image_from` decodes from ``source`` at ``size``, from
    the file's header alone: 0 for a tensor (it is in memory already); a file of more than
    LARGE_PIXELS is read at reduced resolution when a size is given (at least twice the
    size a side), and none of more than MAX_PIXELS is decoded."""
    if source is None or isinstance(source, torch.Tensor):
        return 0
    h, w = result_shape(source, None)
    pixels = min(h * w, MAX_PIXELS)
    if size is None or pixels <= LARGE_PIXELS:
        return pixels
    th, tw = target_shape(h, w, size)
    return min(pixels, max(LARGE_PIXELS, 16 * th * tw))


def target_shape(h: int, w: int, size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) that ``size`` gives an h x w image: an int is the longest side, a pair is (H, W)."""
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"size must be a positive number of pixels, got {size}.")
        s = size / max(h, w)
        return max(1, round(h * s)), max(1, round(w * s))
    return int(size[0]), int(size[1])


def resize(
    image: torch.Tensor, size: int | tuple[int, int] | None
) -> torch.Tensor:
    """Resize (1, 3, H, W): an int is the longest side (aspect kept), a pair is (H, W)."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    size = target_shape(h, w, size)
    if min(size) < MIN_SIDE:
        raise ImageError(
            f"{size[1]}x{size[0]} pixels is too small: VGG19's deepest layers need at least "
            f"{MIN_SIDE} px on each side; use a larger size or a less elongated image."
        )
    if size == (h, w):
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def mean_cov(images, weights=None, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean colour (3, 1) and colour covariance (3, 3) of the pixels of ``images``.

    One image (1, 3, H, W), or a list of them mixed with ``weights`` (equal by default):
    the mixture's mean is sum_i w_i mu_i and its covariance sum_i w_i (Sigma_i + mu_i mu_i^T)
    - mu mu^T, as if each image's pixels were drawn with probability w_i. ``eps`` is added to
    the covariance's diagonal. In float64.
    """
    images = as_list(images)
    weights = weights or [1.0 / len(images)] * len(images)
    mu = second = 0
    for w, image in zip(weights, images):
        x = image.reshape(3, -1).double()  # (3, pixels)
        mu = mu + w * x.mean(dim=1, keepdim=True)
        second = second + w * (x @ x.t()) / x.shape[1]
    return mu, second - mu @ mu.t() + eps * torch.eye(3, dtype=torch.float64)


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Symmetric square root (or inverse square root) of a (3, 3) covariance, by eigenvalues."""
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(1e-12) ** (-0.5 if inverse else 0.5)
    return vectors @ torch.diag(values) @ vectors.t()


def match_color(
    source: torch.Tensor, target, *, method: str = "cholesky", eps: float = 1e-5,
    weights=None,
) -> torch.Tensor:
    """Linear colour transfer: ``source`` with ``target``'s mean colour and colour covariance.

    Each pixel p (an RGB 3-vector) becomes A (p - mu_S) + mu_T with A Sigma_S A^T = Sigma_T
    (Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017,
    Sec. 5.2), where mu and Sigma are the mean and (3, 3) covariance of the pixels. Two
    choices of A:

    - ``"cholesky"``: A = L_T L_S^-1, with Sigma = L L^T the Cholesky factorisations;
    - ``"eigen"``: A = Sigma_T^1/2 Sigma_S^-1/2, symmetric square roots by eigenvalues
      (the "Image Analogies" variant; the paper found both give similar results).

    ``target`` may be a list of images, mixed with ``weights`` (:func:`mean_cov`).
    ``eps`` is added to both covariances' diagonals, so a grey source (covariance of rank 1)
    still works. (1, 3, H, W) in, (1, 3, H, W) out, not clamped: a few pixels may leave
    [0, 1]; clamp before showing or transferring.
    """
    mu_s, cov_s = mean_cov(source, eps=eps)
    mu_t, cov_t = mean_cov(target, weights, eps=eps)
    if method == "cholesky":
        a = torch.linalg.cholesky(cov_t) @ torch.linalg.inv(torch.linalg.cholesky(cov_s))
    elif method == "eigen":
        a = _sqrtm(cov_t) @ _sqrtm(cov_s, inverse=True)
    else:
        raise ValueError(f"method must be 'cholesky' or 'eigen', got {method!r}.")
    x = source.reshape(3, -1).double()
    out = a @ (x - mu_s) + mu_t
    return out.reshape(source.shape).to(source.dtype)


def load_image(
    path: str | os.PathLike, size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """Load an image file as an RGB tensor (1, 3, H, W) in [0, 1].

    ``size``: None keeps the file's size, an int sets the longest side (keeping the aspect
    ratio), a pair (H, W) sets the exact size.
    """
    return image_from(path, size)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) tensor -> PIL RGB image, clamped to [0, 1]."""
    image = image.detach().to("cpu", torch.float32)
    if image.dim() == 4:
        image = image[0]
    data = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    return Image.fromarray(data.numpy(), "RGB")


def _format(path: Path) -> str:
    """PIL's format name for the suffix of ``path``; no suffix means PNG."""
    if not path.suffix:
        return "PNG"
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt not in Image.SAVE:
        raise ImageError(
            f"Cannot write {path}: PIL does not write {path.suffix!r} files; use .png or .jpg."
        )
    return fmt


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now, not after the run, if ``path`` cannot be written.

    Checks the suffix, that the folder exists, and writes (and deletes) a temporary file
    there: permission bits alone do not tell (an administrator may write anywhere, a
    read-only disk refuses everyone). ``~`` is your home folder. Returns the path to write.
    """
    path = Path(path).expanduser()
    folder = path.parent
    try:
        path.is_dir()
    except OSError as err:  # a name too long
        raise ImageError(f"Cannot write {path}: {write_problem(folder, err, 'choose')}.") from None
    if path.is_dir():
        raise ImageError(f"{path} is a directory; give a file name such as {path / 'out.png'}.")
    _format(path)
    if folder.exists() and not folder.is_dir():
        raise ImageError(f"Cannot write {path}: {folder} is a file, not a folder.")
    if not folder.is_dir():
        raise ImageError(f"Cannot write {path}: folder {folder} does not exist; create it first.")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ImageError(f"Cannot write {path}: {write_problem(folder, err, 'choose')}.") from None
    return path


def unused_path(path: str | os.PathLike) -> Path:
    """``path``, or the first of path-1, path-2 ... (before the suffix) that does not exist:
    ``out.png`` -> ``out-1.png``, so that a file nobody named is never replaced."""
    path = Path(path)
    n, candidate = 0, path
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save as PNG (or any format PIL writes, chosen by the suffix), atomically.

    The file is written under a temporary name and renamed, so an interrupted or failed
    save never leaves a half-written image, and an older file of that name stays intact.
    An image holding NaN or infinite values is refused rather than saved as black pixels.
    """
    path = check_writable(path)
    if not torch.isfinite(image).all():
        raise ImageError(
            f"Not writing {path}: the image holds NaN or infinite values (a run that "
            "diverged?); lower the learning rate and run again."
        )
    try:
        with atomic_write(path) as f:
            to_pil(image).save(f, format=_format(path))
    except OSError as err:  # the disk filled up while writing
        raise ImageError(f"Cannot write {path}: "
                         f"{write_problem(path.parent, err, 'choose')}.") from None
    return path
