"""Config: its fields, how they are held, and every setting that is refused."""

import dataclasses
import re
import warnings

import pytest

import nst_lib as nst
import nst_lib.optimize as optimize_module
from nst_lib.config import Config, split_settings


@pytest.mark.parametrize("given, expected", [
    ("conv1_1", ("conv1_1",)),  # one name, not the letters c, o, n, v, 1, _, 1
    ("conv1_1, conv3_1", ("conv1_1", "conv3_1")),  # as on the command line
    (["conv1_1", "conv3_1"], ("conv1_1", "conv3_1")),
    ((name for name in ("conv2_1",)), ("conv2_1",)),
])
def test_one_name_or_a_list_of_names_is_held_as_a_tuple(given, expected):
    config = nst.Config(style_layers=given, content_layers=given if isinstance(given, str)
                        else "conv4_2")
    assert config.style_layers == expected and isinstance(config.style_layers, tuple)
    hash(config)  # a Config is a cache key: it must stay hashable
    assert list(config.layer_weights()) == list(expected)


def test_replace_keeps_the_names_as_tuples():
    config = dataclasses.replace(nst.Config(), content_layers="conv5_2")
    assert config.content_layers == ("conv5_2",)


def test_empty_layer_lists_are_allowed_in_the_config_itself():
    # a style-only or content-only run needs no layers of the other kind
    assert nst.Config(content_layers=(), style_layers="").style_layers == ()


def test_style_weights_that_do_not_sum_to_1_are_divided_by_their_sum_with_a_warning():
    with pytest.warns(UserWarning, match=re.escape(
            "style_weights (1, 1, 2) sum to 4; divided them by their sum, to (0.25, 0.25, 0.5): "
            "only their ratios matter (beta sets how much the style counts)")):
        config = nst.Config(style_layers=("conv1_1", "conv2_1", "conv3_1"),
                            style_weights=(1, 1, 2))
    assert config.layer_weights() == {"conv1_1": 0.25, "conv2_1": 0.25, "conv3_1": 0.5}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once they sum to 1: no warning, values kept as given
        assert dataclasses.replace(config, seed=1).style_weights == (0.25, 0.25, 0.5)
        assert nst.Config(style_layers="conv1_1,conv2_1",
                          style_weights=(0.3, 0.7)).style_weights == (0.3, 0.7)


def test_style_blend_is_divided_by_its_sum_and_may_leave_an_image_out():
    with pytest.warns(UserWarning, match=r"style_blend \(1, 3\) sum to 4; divided them by "
                                         r"their sum, to \(0.25, 0.75\)"):
        assert nst.Config(style_blend=(1, 3)).style_blend == (0.25, 0.75)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nst.Config(style_blend=(0, 1)).style_blend == (0.0, 1.0)  # the second alone


def test_require_layers_refuses_an_empty_list_for_an_image_that_is_given():
    from nst_lib.config import require_layers

    no_style, no_content = nst.Config(style_layers=()), nst.Config(content_layers=())
    require_layers(no_style, content=True, style=False)  # a content reconstruction
    require_layers(no_content, content=False, style=True)  # a texture
    with pytest.raises(ValueError, match=r"^style_layers is empty, so the style image would be "
                                         r"ignored; name at least one layer"):
        require_layers(no_style, content=True, style=True)
    with pytest.raises(ValueError, match=r"^content_layers is empty, so the content image would "
                                         r"be ignored; name a layer"):
        require_layers(no_content, content=True, style=True)


def test_split_settings_separates_config_fields_from_other_keywords():
    config, others = split_settings(nst.Config(size=64), {"steps": 7, "progress": False})
    assert (config.size, config.steps) == (64, 7) and others == {"progress": False}
    assert split_settings(None, {})[0] == nst.Config()


# ---------------------------------------------------------------------------- refused settings


# Config refuses a bad setting when it is made; these two helpers are the only place that
# knows how a setting is checked.


def _accepted(**settings) -> Config:
    """The Config of these settings (the others: defaults), checked as a run checks it."""
    return dataclasses.replace(Config(), **settings)


def _refused(**settings) -> str:
    """The message of the ValueError that refuses these settings (the others: defaults)."""
    with pytest.raises(ValueError) as err:
        _accepted(**settings)
    return str(err.value)


VALID = ("conv1_1, conv1_2, pool1, conv2_1, conv2_2, pool2, conv3_1, conv3_2, conv3_3, "
         "conv3_4, pool3, conv4_1, conv4_2, conv4_3, conv4_4, pool4, conv5_1, conv5_2, "
         "conv5_3, conv5_4, pool5.")
WEIGHED_0 = "; leave a layer out of style_layers instead of weighing it 0."
NAN, INF = float("nan"), float("inf")

REFUSED = [  # one row per rule: the settings, then the message; its first setting is named
    # layers
    (dict(style_layers=("conv1_1", "relu2_1")),
     f"style_layers: Unknown layer name relu2_1; valid names are {VALID}"),
    (dict(content_layers="conv4-2"), f"content_layers: Unknown layer name conv4-2; valid names "
                                     f"are {VALID}"),
    (dict(content_layers=("relu4_2",)), "content_layers: Unknown layer name relu4_2; valid"),
    (dict(style_layers=("conv1_1", "conv2_1", "conv1_1")),
     "style_layers names conv1_1 more than once; give each layer once."),
    (dict(style_layers=5), "style_layers must be layer names such as ('conv1_1', 'conv2_1'), "
                           "got 5."),
    (dict(content_layers=[4, 2]), "content_layers must be layer names such as ('conv1_1', "
                                  "'conv2_1'), got [4, 2]."),
    # their weights, and the weights of several style images
    (dict(style_weights=(1, 0, 1, 1, 1)),
     "style_weights must be positive and finite, got (1, 0, 1, 1, 1)" + WEIGHED_0),
    (dict(style_weights=(1, -1, 1, 1, 1)),
     "style_weights must be positive and finite, got (1, -1, 1, 1, 1)" + WEIGHED_0),
    (dict(style_weights=(1, NAN, 1, 1, 1)),
     "style_weights must be positive and finite, got (1, nan, 1, 1, 1)" + WEIGHED_0),
    (dict(style_weights=(1, INF, 1, 1, 1)),
     "style_weights must be positive and finite, got (1, inf, 1, 1, 1)" + WEIGHED_0),
    (dict(style_weights=0.5), "style_weights must be a list of numbers, got 0.5."),
    (dict(style_weights=(1.0,)), "style_weights has 1 entries for 5 style_layers; give one "
     "weight per style layer."),
    (dict(style_blend=(-0.5, 1.5)), "style_blend must be finite and >= 0, got (-0.5, 1.5)."),
    (dict(style_blend=(0, 0)), "style_blend cannot all be 0, got (0, 0)."),
    (dict(style_blend=()), "style_blend cannot all be 0, got ()."),
    # alpha and beta
    (dict(alpha=-1.0), "alpha must be finite and >= 0, got -1.0."),
    (dict(alpha=INF), "alpha must be finite and >= 0, got inf."),
    (dict(alpha=NAN), "alpha must be finite and >= 0, got nan."),
    (dict(beta=INF), "beta must be finite and >= 0, got inf."),
    (dict(beta=-1.0), "beta must be finite and >= 0, got -1.0."),
    (dict(alpha=0.0, beta=0.0), "alpha and beta cannot both be 0."),
    # images
    (dict(size=0), "size must be a positive number of pixels, got 0."),
    (dict(size=-5), "size must be a positive number of pixels, got -5."),
    (dict(style_size=0), "style_size must be a positive number of pixels, got 0."),
    # optimisation
    (dict(optimizer="sgd"), "optimizer must be one of lbfgs, adam, got 'sgd'."),
    (dict(lr=0.0), "lr must be positive and finite, got 0.0."),
    (dict(lr=INF), "lr must be positive and finite, got inf."),
    (dict(steps=0), "steps must be at least 1, got 0 (a whole number, or one per scale)."),
    (dict(steps=-1), "steps must be at least 1, got -1 (a whole number, or one per scale)."),
    (dict(steps=(100, 0, 20)), "steps must be at least 1, got (100, 0, 20) (a whole number"),
    (dict(steps=2.5), "steps must be at least 1, got 2.5 (a whole number, or one per scale)."),
    (dict(steps=(50, 20), scales=3), "steps gives 2 numbers for 3 scales; give one per scale, "
                                     "coarsest first."),
    (dict(scales=0), "scales must be at least 1, got 0 (a whole number)."),
    (dict(init="zeros"), "init must be one of noise, content, style, palette, got 'zeros'."),
    (dict(tol=-0.1), "tol must be >= 0, got -0.1."),
    (dict(time_limit=-1.0), "time_limit must be >= 0 seconds, got -1.0."),
    # the network
    (dict(pooling="median"), "pooling must be one of avg, max, got 'median'."),
    (dict(precision="fp8"), "precision must be one of auto, float32, bfloat16, float16, got "
                            "'fp8'."),
    (dict(device="gpu"), "device must be 'auto', 'cpu', 'cuda' or 'mps', got 'gpu'."),
]


@pytest.mark.parametrize("settings, message", REFUSED, ids=[repr(s) for s, _ in REFUSED])
def test_every_refused_setting_is_one_line_naming_the_field(settings, message):
    text = _refused(**settings)
    assert message in text and "\n" not in text
    assert text.startswith(next(iter(settings)))


def test_the_settings_refused_are_the_only_ones():
    # one value next to each refused one is accepted (a boundary, or the other kind of value)
    for settings in (dict(alpha=0.0), dict(beta=0.0), dict(size=None), dict(size=16),
                     dict(style_size=None), dict(steps=1), dict(steps=(1, 1, 1)),
                     dict(steps=(3, 2, 1, 1), scales=3), dict(scales=1), dict(tol=0.0),
                     dict(time_limit=0.0), dict(lr=1e-6), dict(style_blend=(0, 1)),
                     dict(init="style"), dict(pooling="max"), dict(precision="bfloat16"),
                     dict(device="cuda"), dict(device="mps")):  # not present here: still a device
        config = _accepted(**settings)
        assert all(getattr(config, k) == v for k, v in settings.items())


def test_transfer_refuses_a_bad_setting_before_any_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    monkeypatch.setattr(optimize_module, "vgg19", forbidden)
    monkeypatch.setattr(optimize_module.img, "load_image", forbidden)
    for settings in (dict(size=0), dict(pooling="median"), dict(init="zeros"),
                     dict(device="gpu"), dict(style_layers="conv6_1")):
        with pytest.raises(ValueError, match=f"^{next(iter(settings))}"):
            nst.transfer("missing.jpg", "missing.jpg", weights="random", **settings)
