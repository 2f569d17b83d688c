"""Config checks its layers and weights when it is made, and holds them as tuples."""

import dataclasses
import re
import warnings

import pytest

import nst_lib as nst


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


@pytest.mark.parametrize("field, given, message", [
    ("style_layers", ("conv1_1", "relu2_1"), "Unknown layer name relu2_1; valid names are "
                                             "conv1_1"),
    ("content_layers", "conv4-2", "Unknown layer name conv4-2"),
    ("style_layers", ("conv1_1", "conv2_1", "conv1_1"),
     "style_layers names conv1_1 more than once; give each layer once"),
    ("style_layers", 5, "style_layers must be layer names such as ('conv1_1', 'conv2_1'), got 5"),
    ("content_layers", [4, 2], "content_layers must be layer names such as"),
])
def test_bad_layer_names_are_refused_when_the_config_is_made(field, given, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        nst.Config(**{field: given})


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


@pytest.mark.parametrize("weights", [(1, 0, 1, 1, 1), (1, -1, 1, 1, 1), (1, float("nan"), 1, 1, 1),
                                     (1, float("inf"), 1, 1, 1)])
def test_zero_negative_or_infinite_style_weights_are_refused(weights):
    with pytest.raises(ValueError, match=re.escape(
            f"style_weights must be positive and finite, got {weights!r}; leave a layer out "
            "of style_layers instead of weighing it 0")):
        nst.Config(style_weights=weights)


def test_style_weights_must_be_numbers():
    with pytest.raises(ValueError, match="style_weights must be a list of numbers, got 0.5"):
        nst.Config(style_weights=0.5)


def test_style_blend_is_divided_by_its_sum_and_may_leave_an_image_out():
    with pytest.warns(UserWarning, match=r"style_blend \(1, 3\) sum to 4; divided them by "
                                         r"their sum, to \(0.25, 0.75\)"):
        assert nst.Config(style_blend=(1, 3)).style_blend == (0.25, 0.75)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nst.Config(style_blend=(0, 1)).style_blend == (0.0, 1.0)  # the second alone


@pytest.mark.parametrize("blend, message", [
    ((-0.5, 1.5), "style_blend must be finite and >= 0, got (-0.5, 1.5)."),
    ((0, 0), "style_blend cannot all be 0, got (0, 0)."),
    ((), "style_blend cannot all be 0, got ()."),
])
def test_negative_or_all_zero_style_blends_are_refused(blend, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        nst.Config(style_blend=blend)


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
