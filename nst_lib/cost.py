"""What a run will cost, known before it starts: peak memory, and roughly the time.

Nearly all of a run's memory is VGG19's feature maps, kept for the backward pass, and
L-BFGS's history of past steps; both are counted here from the image's size and the layers,
without running anything. :func:`check_fits` refuses a run that would not fit in the
memory this machine has free, before a single large tensor is made, and names the largest
size that fits (a run that does not fit makes a laptop swap until it freezes).

The constants are fitted to the peak memory (RSS) and times that ``benchmarks/benchmark.py``
measures at 256, 512 and 1024 px on a 2-core x86 CPU; the benchmark prints the estimate
next to the measured peak.

The process's memory: :func:`keep_freed_memory` lets one evaluation reuse the memory of the
last; :func:`return_freed_memory` gives it back when a run ends.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

import torch

from .config import Config, scale_levels, steps_per_scale
from .image import MIN_SIDE, target_shape
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
             dtype: torch.dtype = torch.float32) -> Cost:
    """Peak memory and rough time of a run whose result is ``shape`` (H, W) pixels.

    Counts the feature maps of the largest scale (:func:`feature_elements`; the coarse
    scales' are freed before it starts), times the fitted bytes per element for ``dtype``,
    plus L-BFGS's history (two images per remembered step) and the process's base.
    """
    kind = torch.device(device).type
    layers = tuple(config.content_layers) + tuple(config.style_layers)
    deepest = max(layers, key=LAYERS.get) if layers else "conv1_1"
    pixels = shape[0] * shape[1]
    levels = scale_levels(max(shape), config.scales)
    budget = steps_per_scale(config, levels)
    history = min(LBFGS_HISTORY, budget[-1]) if config.optimizer == "lbfgs" else 2
    memory = (feature_elements(shape, deepest) * BYTES_PER_ELEMENT[dtype]
              + 2 * history * 3 * pixels * 4) / 2**20 + BASE_MB.get(kind, BASE_MB["cpu"])
    seconds = 0.0
    for scale, steps in enumerate(budget):
        factor = 2 ** (levels - 1 - scale)
        coarse = (max(MIN_SIDE, shape[0] // factor), max(MIN_SIDE, shape[1] // factor))
        seconds += steps * (feature_elements(coarse, deepest) * SECONDS_PER_ELEMENT[dtype]
                            + SECONDS_PER_EVALUATION)
    seconds *= 2 / max(1, torch.get_num_threads()) if kind == "cpu" else 0.05
    return Cost(memory, seconds, available_mb(device))


def available_mb(device: torch.device | str = "cpu") -> float | None:
    """Memory free for a run: the GPU's free memory, or the system's available memory
    (Linux ``MemAvailable``, else what ``os.sysconf`` reports); None if unknown."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0] / 2**20
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


def largest_size(aspect_hw: tuple[int, int], config: Config, device, dtype,
                 limit_mb: float) -> int:
    """The largest longest side (px) whose :func:`estimate` stays under ``limit_mb``."""
    low, high = MIN_SIDE, 1 << 16
    while low < high:
        mid = (low + high + 1) // 2
        shape = target_shape(*aspect_hw, mid)
        if estimate(shape, config, device, dtype).memory_mb <= limit_mb:
            low = mid
        else:
            high = mid - 1
    return low


def check_fits(shape: tuple[int, int], config: Config, device, dtype) -> Cost:
    """The :func:`estimate` of a run, or ValueError if it needs more memory than is free.

    The message names the largest ``size`` that fits (with 10% to spare)."""
    cost = estimate(shape, config, device, dtype)
    free = cost.available_mb
    if free is not None and cost.memory_mb > 0.9 * free:
        fits = largest_size(shape, config, device, dtype, 0.9 * free)
        raise ValueError(
            f"A {shape[1]}x{shape[0]} px run needs about {cost.memory_mb / 1024:.1f} GB of "
            f"memory but {free / 1024:.1f} GB is free; use size={fits} (--size {fits}) or "
            "less, or close other programs."
        )
    return cost


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
