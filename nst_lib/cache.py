"""A disk cache of results, so that a run computed once shows at once the next time.

A result is stored under ``cache_dir() / "results"`` (``$NST_CACHE`` or ``~/.cache/nst_lib``)
as ``<key>.png`` (the image) and ``<key>.json`` (its loss history, stop reason and run time).
The key is a hash of everything the result depends on: every :class:`~nst_lib.Config`
field, the pixels of the content and style images, and the weights (their name, or for a
file its size and modification time). Change any of them and the key changes, so a stale
picture is never shown; quick mode (smaller sizes and fewer steps) gets keys of its own.

    from nst_lib.cache import cached_transfer
    result = cached_transfer(photo, painting, size=192)   # computed, then stored
    result = cached_transfer(photo, painting, size=192)   # read back from disk

The image comes back as stored in the PNG (8 bits per channel). Runs that were interrupted,
stopped or diverged are not stored; each complete run is stored as soon as it ends.

A class on one machine: the instructor sets ``NST_CACHE`` for everyone to a folder the
students can read but not write, and fills it (``python -m nst_lib.experiments
--precompute``). A student's results are looked for there first; new ones are stored in the
student's own ``~/.cache/nst_lib/results`` (else a folder in the temporary folder), without
any setting (:func:`folders`). A result that cannot be stored anywhere (a full
disk) is returned all the same, with a warning that says why.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

from .config import Config, split_settings
from .files import atomic_write, write_problem
from .image import ImageError, as_list, load_image, save_image
from .losses import LossFunctions
from .optimize import ImageLike, Result, Stop, transfer
from .vgg import weights_id
from .weights import cache_dir

VERSION = 2  # bump when a change to the library changes what the same settings give


def _writable(folder: Path) -> OSError | None:
    """None if a file can be written in ``folder`` (made if missing), else the error:
    permission bits alone do not tell (root writes anywhere, a read-only disk nobody)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe.", suffix=".part")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return err
    return None


def _own_folders() -> list[Path]:
    """This user's own folders for results, when ``$NST_CACHE`` cannot be written."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return [Path.home() / ".cache" / "nst_lib" / "results",
            Path(tempfile.gettempdir()) / f"nst_lib-{user}" / "results"]


def _folders() -> tuple[list[Path], OSError | None]:
    """:func:`folders`, and why the first cannot be written (None if it can)."""
    first = (cache_dir() / "results").expanduser()
    problem = _writable(first)
    if problem is None:
        return [first], None
    own = next((f for f in _own_folders() if f != first and _writable(f) is None), None)
    return ([first, own] if own is not None else [first]), problem


def folders() -> list[Path]:
    """Where results are looked for, in this order: ``cache_dir() / "results"``
    (``$NST_CACHE``, or ``~/.cache/nst_lib``); when this user cannot write there (a class's
    shared folder), also the first of ``~/.cache/nst_lib/results`` and
    ``<temporary folder>/nst_lib-<user>/results`` that the user can write."""
    return _folders()[0]


def directory() -> Path:
    """The folder new results are written to: the last of :func:`folders`. When the
    first cannot be written for another reason than being read-only (a file in its place,
    a full disk), a warning says why; when none can, the first, with a warning."""
    return _destination()[0]


def _destination() -> tuple[Path, bool]:
    """:func:`directory`, and whether it can be written."""
    found, problem = _folders()
    if problem is None:
        return found[0], True
    why = write_problem(found[0], problem, "set NST_CACHE to")
    if len(found) == 1:
        warnings.warn(f"Results cannot be stored: {why}.", stacklevel=3)
        return found[0], False
    if problem.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        # a read-only NST_CACHE is how a class shares results: nothing to warn about
        warnings.warn(f"Results are stored in {found[-1]}, not in {found[0]}: {why}.",
                      stacklevel=3)
    return found[-1], True


def image_hash(image: ImageLike) -> str:
    """SHA-256 of an image's pixels (a path is decoded first) and its shape."""
    if not isinstance(image, torch.Tensor):
        image = load_image(image)
    pixels = image.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(str(tuple(pixels.shape)).encode())
    digest.update(pixels.numpy().tobytes())
    return digest.hexdigest()


def key(content: ImageLike | None, style, config: Config) -> str:
    """The cache key of a run: 24 hex digits of a hash over all its inputs."""
    settings = dataclasses.asdict(config)
    settings["weights"] = weights_id(config.weights)
    inputs = {
        "version": VERSION,
        "config": settings,
        "content": image_hash(content) if content is not None else None,
        "style": [image_hash(s) for s in as_list(style)],
    }
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def lookup(content: ImageLike | None, style, config: Config | None = None,
           **overrides) -> Result | None:
    """The stored result of these settings, or None if there is none (looked for in each
    of :func:`folders`)."""
    config, _ = split_settings(config, overrides)
    return read(key(content, style, config), config)


def store(result: Result, content: ImageLike | None, style, config: Config) -> Path | None:
    """Write ``result`` to the cache under the key of its inputs (:func:`write`)."""
    return write(key(content, style, config), result, config)


def read(name: str, config: Config) -> Result | None:
    """The entry ``name`` (its image and the JSON beside it) from the first of
    :func:`folders` that holds it whole and readable, or None."""
    for folder in folders():
        png, meta = folder / f"{name}.png", folder / f"{name}.json"
        if not (png.is_file() and meta.is_file()):
            continue
        try:
            data = json.loads(meta.read_text())
            image = load_image(png)
        except (OSError, ValueError):  # damaged or unreadable entry: look further
            continue
        return Result(image=image, history=data["history"], stop_reason=data["stop_reason"],
                      seconds=data["seconds"], config=config)
    return None


def write(name: str, result: Result, config: Config) -> Path | None:
    """Write ``result`` as the entry ``name`` (image first, then the JSON that marks it
    complete), in :func:`directory`. A result that cannot be written (the disk filled up)
    is not stored: a warning says why, and None is returned."""
    folder, writable = _destination()
    if not writable:  # the warning says why
        return None
    stem = folder / name
    data = {"history": result.history, "stop_reason": result.stop_reason,
            "seconds": result.seconds, "config": repr(config)}
    try:
        save_image(result.image, stem.with_suffix(".png"))
        with atomic_write(stem.with_suffix(".json"), "w") as f:
            json.dump(data, f)
    except (OSError, ImageError) as err:  # save_image's ImageError says why in words
        why = err if isinstance(err, ImageError) else write_problem(stem.parent, err,
                                                                    "set NST_CACHE to")
        warnings.warn(f"The result was not stored: {why}", stacklevel=3)
        return None
    return stem.with_suffix(".json")


def cached_transfer(
    content: ImageLike | None = None,
    style=None,
    config: Config | None = None,
    *,
    refresh: bool = False,
    runner: Callable[..., Result] = transfer,
    **kwargs,
) -> Result:
    """:func:`nst_lib.transfer` through the disk cache: same arguments, same :class:`Result`.

    On a hit the stored result is returned without running anything; on a miss (or with
    ``refresh=True``) ``runner`` (default :func:`nst_lib.transfer`) computes it and a
    complete run is stored. ``kwargs`` are settings (Config fields, part of the key) and
    keywords for the runner such as ``model``, ``callback`` or ``progress`` (not part of the
    key: a ``model`` you pass must match ``config.weights`` and ``config.pooling``). A run
    with loss ``functions`` other than the library's is computed every time, never stored.
    An interrupted run (Ctrl-C) raises KeyboardInterrupt, so that a loop over many runs
    stops at once.
    """
    config, others = split_settings(config, kwargs)
    if others.get("functions", LossFunctions()) != LossFunctions():
        # the key cannot name what other loss functions compute (they may hold any value,
        # as a closure does): run them every time, and store nothing
        return runner(content, style, config, **others)
    if not refresh:
        hit = lookup(content, style, config)
        if hit is not None:
            return hit
    result = runner(content, style, config, **others)
    if result.stop_reason == Stop.INTERRUPTED:
        # Ctrl-C or the notebook's stop button: end the whole figure or precompute, not only
        # this one of its runs (runs finished before are in the cache)
        raise KeyboardInterrupt("interrupted; the runs that finished are kept in the cache")
    if result.stop_reason.complete:
        store(result, content, style, config)
    return result


def clear() -> int:
    """Delete every cached result this user can delete (a shared, read-only folder's stay);
    returns how many were deleted."""
    deleted = 0
    for folder in folders():
        for meta in folder.glob("*.json") if folder.is_dir() else []:
            try:
                meta.with_suffix(".png").unlink(missing_ok=True)
                meta.unlink(missing_ok=True)
            except OSError:  # not ours to delete
                continue
            deleted += 1
    return deleted
