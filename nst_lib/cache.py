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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable

import torch

from .config import Config, split_settings
from .files import atomic_write
from .image import as_list, load_image, save_image
from .losses import LossFunctions
from .optimize import ImageLike, Result, Stop, transfer
from .vgg import weights_id
from .weights import cache_dir

VERSION = 2  # bump when a change to the library changes what the same settings give


def directory() -> Path:
    """The folder holding cached results: ``cache_dir() / "results"``."""
    return cache_dir() / "results"


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
    """The stored result of these settings, or None if there is none."""
    config, _ = split_settings(config, overrides)
    stem = directory() / key(content, style, config)
    png, meta = stem.with_suffix(".png"), stem.with_suffix(".json")
    if not (png.is_file() and meta.is_file()):
        return None
    try:
        data = json.loads(meta.read_text())
        image = load_image(png)
    except (OSError, ValueError):  # damaged entry: compute again
        return None
    return Result(image=image, history=data["history"], stop_reason=data["stop_reason"],
                  seconds=data["seconds"], config=config)


def store(result: Result, content: ImageLike | None, style, config: Config) -> Path:
    """Write ``result`` to the cache (image first, then the JSON that marks it complete)."""
    stem = directory() / key(content, style, config)
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_image(result.image, stem.with_suffix(".png"))
    data = {"history": result.history, "stop_reason": result.stop_reason,
            "seconds": result.seconds, "config": repr(config)}
    with atomic_write(stem.with_suffix(".json"), "w") as f:
        json.dump(data, f)
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
    """Delete every cached result; returns how many there were."""
    files = list(directory().glob("*.json")) if directory().is_dir() else []
    for meta in files:
        meta.with_suffix(".png").unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
    return len(files)
