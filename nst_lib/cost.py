"""What a run will cost, known before it starts: peak memory, and roughly the time.

Nearly all of a run's memory is VGG19's feature maps, kept for the backward pass, and
L-BFGS's history of past steps; both are counted here from the image's size and the layers,
without running anything. So are the style images, whose size and number the user sets
apart from the result's (``style_size``, a list to blend): each is held for the whole run
and passes through VGG19 once per scale, and an image file is decoded once at its own size.
:func:`check_fits` refuses a run that would not fit in the memory this machine has free,
before a single image is decoded, and names the largest ``size`` or ``style_size`` that
fits (a run that does not fit makes a laptop swap until it freezes).

The constants are fitted to the peak memory (RSS) and times that ``benchmarks/benchmark.py``
measures at 256, 512 and 1024 px on a 2-core x86 CPU; the benchmark prints the estimate
next to the measured peak.

The process's memory: :func:`keep_freed_memory` lets one evaluation reuse the memory of the
last; :func:`return_freed_memory` gives it back when a run ends.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from .config import Config, scale_levels, steps_per_scale
from .image import MIN_SIDE, ImageError, target_shape
from .layers import CFG, LAYERS

# fitted (benchmarks/benchmark.py): the process before the run (Python, torch, the weights)
BASE_MB = {"cpu": 900.0, "cuda": 160.0}
# bytes per element of the feature maps up to the deepest layer, for one loss evaluation
# (forward maps kept for the backward pass, the float32 copies the losses get, gradients)
BYTES_PER_ELEMENT = {torch.float32: 4.9, torch.bfloat16: 3.8, torch.float16: 3.8}
# seconds per element per loss evaluation on the benchmark's 2 cores, for the time estimate
SECONDS_PER_ELEMENT = {torch.float32: 1.35e-8, torch.bfloat16: 7.4e-9, torch.float16: 7.4e-9}
# and per loss evaluation whatever the image's size (each layer's weights, L-BFGS, Python)
SECONDS_PER_EVALUATION = 0.01
# a style image's pass through VGG19 (no gradients: the maps of its style layers, kept as
# float32, and the two maps of the layer being computed), per feature-map element; measured
# at 1024 and 2048 px (1.30 and 1.06-1.07)
STYLE_BYTES_PER_ELEMENT = {torch.float32: 1.35, torch.bfloat16: 1.1, torch.float16: 1.1}
IMAGE_BYTES = 2 * 3 * 4  # an image held as float32 RGB, with its copy (scaled, on the device)
DECODE_BYTES = 18  # per pixel decoded from a file: PIL's 3 bytes, a copy, and float32 RGB
LBFGS_HISTORY = 100  # the history_size optimize.py gives L-BFGS


def feature_elements(shape: tuple[int, int], deepest: str) -> int:
    """How many values VGG19's layers compute for an (H, W) image, up to ``deepest``:
    each conv and its ReLU output C x H x W, each pooling C x H/2 x W/2."""
    h, w = shape
    total, index, channels = 0, 0, 3
    for item in CFG:
        if index > LAYERS[deepest]:
            break
        if item == "M":
            h, w = h // 2, w // 2
            total += channels * h * w
            index += 1
        else:
            channels = item
            total += 2 * channels * h * w  # conv output and ReLU output
            index += 2
    return total


@dataclass(frozen=True)
class Cost:
    """The estimate of one run."""

    memory_mb: float  # peak memory of the process (RSS; on a GPU, the GPU's memory)
    seconds: float  # rough wall time on a 2-core CPU like the benchmark's (scaled by threads)
    available_mb: float | None  # memory free on the device now; None if unknown

    def __str__(self) -> str:
        free = f" of {self.available_mb / 1024:.1f} GB free" if self.available_mb else ""
        return f"about {self.memory_mb / 1024:.1f} GB{free}, roughly {_duration(self.seconds)}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def estimate(shape: tuple[int, int], config: Config, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, *, styles: Sequence[tuple[int, int]] = (),
             decoded: int = 0) -> Cost:
    """Peak memory and rough time of a run whose result is ``shape`` (H, W) pixels.

    Counts the feature maps of the largest scale (:func:`feature_elements`; the coarse
    scales' are freed before it starts), times the fitted bytes per element for ``dtype``,
    plus L-BFGS's history (two images per remembered step) and the process's base.
    ``styles``: the (H, W) of each style image at its size in the run. Each is held for the
    whole run (:data:`IMAGE_BYTES` a pixel), and passes through VGG19 before the
    optimisation starts (:data:`STYLE_BYTES_PER_ELEMENT`), one after the other.
    ``decoded``: the most pixels decoded from one image file, freed before the run. The
    peak is the largest of the optimisation, one style's pass and one file's decoding, plus
    the images held.
    """
    kind = torch.device(device).type
    layers = tuple(config.content_layers) + tuple(config.style_layers)
    deepest = max(layers, key=LAYERS.get) if layers else "conv1_1"
    style_deepest = max(config.style_layers, key=LAYERS.get) if config.style_layers else "conv1_1"
    pixels = shape[0] * shape[1]
    levels = scale_levels(max(shape), config.scales)
    budget = steps_per_scale(config, levels)
    history = min(LBFGS_HISTORY, budget[-1]) if config.optimizer == "lbfgs" else 2
    run = feature_elements(shape, deepest) * BYTES_PER_ELEMENT[dtype] + 2 * history * 3 * pixels * 4
    passes = [feature_elements(s, style_deepest) * STYLE_BYTES_PER_ELEMENT[dtype] for s in styles]
    held = IMAGE_BYTES * sum(h * w for h, w in styles)
    memory = (max(run, decoded * DECODE_BYTES, *passes) + held) / 2**20 \
        + BASE_MB.get(kind, BASE_MB["cpu"])
    seconds = 0.0
    for scale, steps in enumerate(budget):
        factor = 2 ** (levels - 1 - scale)
        coarse = (max(MIN_SIDE, shape[0] // factor), max(MIN_SIDE, shape[1] // factor))
        seconds += steps * (feature_elements(coarse, deepest) * SECONDS_PER_ELEMENT[dtype]
                            + SECONDS_PER_EVALUATION)
        for h, w in styles:  # one forward pass (a third of an evaluation) per scale
            coarse = (max(MIN_SIDE, h // factor), max(MIN_SIDE, w // factor))
            seconds += feature_elements(coarse, style_deepest) * SECONDS_PER_ELEMENT[dtype] / 3
    seconds *= 2 / max(1, torch.get_num_threads()) if kind == "cpu" else 0.05
    return Cost(memory, seconds, available_mb(device))


def available_mb(device: torch.device | str = "cpu") -> float | None:
    """Memory free for a run: the GPU's free memory, or the system's available memory
    (Linux ``MemAvailable``, else what ``os.sysconf`` reports), and no more than a
    container's limit leaves (cgroups: JupyterHub and Docker set one per user); None if
    unknown."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0] / 2**20
    free = _meminfo_available_mb()
    limited = _cgroup_free_mb()
    if limited is not None:
        free = limited if free is None else min(free, limited)
    return free


def _meminfo_available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


# (limit, usage) files of this process's memory cgroup: version 2, then version 1
CGROUP_FILES = (("memory.max", "memory.current"),
                ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"))


def _cgroup_free_mb(root: str = "/sys/fs/cgroup") -> float | None:
    """What this process's memory cgroup still allows (its limit less its usage), or None
    where there is no limit. The machine's MemAvailable does not see such a limit: a run
    past it is killed, not refused."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            with open(os.path.join(root, limit_file)) as f:
                limit = f.read().strip()
            with open(os.path.join(root, usage_file)) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max", or v1's huge number: no limit
            return max(0, int(limit) - usage) / 2**20
    return None


def _largest(fits: Callable[[int], bool]) -> int:
    """The largest longest side (px), from MIN_SIDE to 65536, for which ``fits`` holds."""
    low, high = MIN_SIDE, 1 << 16
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _at(styles: Sequence[tuple[int, int]], size) -> list[tuple[int, int]]:
    """The (H, W) of style images of shapes ``styles`` at ``size`` (None: as they are)."""
    return [s if size is None else target_shape(*s, size) for s in styles]


def largest_size(aspect_hw: tuple[int, int], config: Config, device, dtype,
                 limit_mb: float, *, styles: Sequence[tuple[int, int]] = (),
                 decoded: int = 0) -> int:
    """The largest longest side (px) whose :func:`estimate` stays under ``limit_mb``;
    ``styles`` (their shapes as given) are at ``config.style_size``, else at that side."""
    return _largest(lambda side: estimate(
        target_shape(*aspect_hw, side), config, device, dtype, decoded=decoded,
        styles=_at(styles, config.style_size or side)).memory_mb <= limit_mb)


def largest_style_size(shape: tuple[int, int], styles: Sequence[tuple[int, int]],
                       config: Config, device, dtype, limit_mb: float, decoded: int = 0) -> int:
    """The largest ``style_size`` whose :func:`estimate` of a ``shape`` run stays under
    ``limit_mb``."""
    return _largest(lambda side: estimate(shape, config, device, dtype, decoded=decoded,
                                          styles=_at(styles, side)).memory_mb <= limit_mb)


def check_fits(shape: tuple[int, int], config: Config, device, dtype, *,
               styles: Sequence[tuple[int, int]] = (), decoded: int = 0) -> Cost:
    """The :func:`estimate` of a run, or ValueError if it needs more memory than is free.

    ``shape``: the result's (H, W); ``styles``: each style image's (H, W) as given (a
    file's from its header), set to ``config.style_size`` (else ``config.size``) here;
    ``decoded``: see :func:`estimate`. The message, one line, names the largest ``size``
    that fits (with 10% to spare), and the largest ``style_size`` when one is set.
    """
    style_size = config.style_size or config.size
    _check_style_sides(styles, config.style_size)  # at size: the content's message first
    cost = estimate(shape, config, device, dtype, styles=_at(styles, style_size),
                    decoded=decoded)
    free = cost.available_mb
    if free is None or cost.memory_mb <= 0.9 * free:
        return cost
    limit, advice, text = 0.9 * free, [], _run_text(shape, _at(styles, style_size))
    if config.style_size is None:
        size = largest_size(shape, config, device, dtype, limit, styles=styles, decoded=decoded)
        advice.append(f"size={size} (--size {size})")
    else:
        small = estimate(shape, config, device, dtype, styles=_at(styles, MIN_SIDE),
                         decoded=decoded)
        if small.memory_mb > limit:  # too large even with the smallest style images
            size = largest_size(shape, replace(config, style_size=MIN_SIDE), device, dtype,
                                limit, styles=styles, decoded=decoded)
            shape = target_shape(*shape, size)
            advice.append(f"size={size} (--size {size})")
        fits = largest_style_size(shape, styles, config, device, dtype, limit, decoded)
        advice.append(f"style_size={fits} (--style-size {fits})")
    raise ValueError(
        f"{text} needs about "
        f"{cost.memory_mb / 1024:.1f} GB of memory but {free / 1024:.1f} GB is free; use "
        f"{' and '.join(advice)} or less, or close other programs."
    )


def _check_style_sides(styles: Sequence[tuple[int, int]], size: int | None) -> None:
    """ImageError naming the smallest ``style_size`` that gives every style image MIN_SIDE
    px a side, if ``size`` (the style_size set) gives one less."""
    if not isinstance(size, int):
        return
    option = "style_size"
    for h, w in styles:
        th, tw = target_shape(h, w, size)
        if min(th, tw) < MIN_SIDE:
            least = math.ceil((MIN_SIDE - 0.5) * max(h, w) / min(h, w))  # rounds to MIN_SIDE
            while min(target_shape(h, w, least)) < MIN_SIDE:
                least += 1
            raise ImageError(
                f"The style image would be {tw}x{th} pixels at {option}={size}: too small, "
                f"VGG19's deepest layers need at least {MIN_SIDE} px on each side; use "
                f"{option}={least} (--{option.replace('_', '-')} {least}) or more, or a less "
                "elongated style image.")


def _run_text(shape: tuple[int, int], styles: Sequence[tuple[int, int]]) -> str:
    """"A 64x43 px run", with its style images when there are several or one is larger
    than the result."""
    text = f"A {shape[1]}x{shape[0]} px run"
    if not styles or (len(styles) == 1 and styles[0][0] * styles[0][1] <= shape[0] * shape[1]):
        return text
    h, w = max(styles, key=lambda s: s[0] * s[1])
    if len(styles) == 1:
        return f"{text} with a {w}x{h} px style image"
    return f"{text} with {len(styles)} style images of up to {w}x{h} px"


@functools.cache
def _libc():
    """glibc (Linux), or None elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@functools.cache
def keep_freed_memory() -> None:
    """Ask glibc's malloc (Linux) to keep freed memory for reuse, once per process.

    By default every large feature map is returned to the system when freed and faulted in
    again on the next evaluation: 3.2 s of system time in a 32 s run (benchmarks/). With
    mmap off for large blocks and no trimming, the memory of one evaluation is reused by
    the next. Elsewhere this does nothing.
    """
    if _libc() is not None:
        _libc().mallopt(-4, 0)  # M_MMAP_MAX: no mmap for large blocks
        _libc().mallopt(-1, 2**30)  # M_TRIM_THRESHOLD: keep up to 1 GiB free at the top


def return_freed_memory() -> None:
    """Give the memory the process has freed back to the system (glibc's ``malloc_trim``):
    at the end of a run and after weights are loaded, so that a notebook's kernel does not
    keep every run's peak until it ends (notebooks/README.md)."""
    if _libc() is not None:
        _libc().malloc_trim(0)
