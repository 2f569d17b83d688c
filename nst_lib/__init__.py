"""nst_lib: neural style transfer as in Gatys, Ecker and Bethge (CVPR 2016), for teaching.

    import nst_lib as nst
    result = nst.transfer(nst.example("chelsea.png"), nst.example("starry_night.jpg"))
    result.save("out.png")
"""

from .config import CONTENT_LAYERS, STYLE_LAYERS, Config
from .image import ImageError, as_image, example, load_image, resize, save_image, to_pil
from .layers import CONV_LAYERS, LAYERS, check_layers
from .losses import (LossFunctions, content_loss, fast_style_layer_loss, gram_matrix,
                     style_layer_loss, style_loss, total_loss)
from .optimize import (Result, Step, Stop, Targets, check_cost, reconstruct_content,
                       reconstruct_style, transfer)
from .quick import quick_mode
from .vgg import VGG19, WEIGHTS, resolve_device, vgg19
from .weights import WeightsError

_LEAF_MODULES = ("plot", "widgets", "exercises", "experiments", "color", "cache", "limits")


def __getattr__(name: str):
    """``nst.plot``, ``nst.widgets`` ... are imported on first use (they pull in matplotlib
    and ipywidgets, which the core does not need)."""
    if name in _LEAF_MODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nst_lib' has no attribute {name!r}")


__all__ = [
    "CONTENT_LAYERS", "CONV_LAYERS", "Config", "ImageError", "LAYERS", "Result", "STYLE_LAYERS",
    "LossFunctions", "Step", "Stop", "Targets", "VGG19", "WEIGHTS", "WeightsError", "as_image", "check_cost", "check_layers",
    "content_loss",
    "example", "fast_style_layer_loss", "gram_matrix", "load_image", "quick_mode", "reconstruct_content",
    "reconstruct_style", "resize", "resolve_device", "save_image", "style_layer_loss",
    "style_loss", "to_pil", "total_loss", "transfer", "vgg19",
]
