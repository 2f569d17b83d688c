import pytest

import nst_lib as nst
from nst_lib import layers

# counted by hand from VGG19 (configuration E): in vgg19().features each conv is followed by
# its ReLU (the layer's value is the ReLU's output), each block of 2, 2, 4, 4, 4 convs by a
# pooling layer
LAYERS = {"conv1_1": 1, "conv1_2": 3, "pool1": 4,
          "conv2_1": 6, "conv2_2": 8, "pool2": 9,
          "conv3_1": 11, "conv3_2": 13, "conv3_3": 15, "conv3_4": 17, "pool3": 18,
          "conv4_1": 20, "conv4_2": 22, "conv4_3": 24, "conv4_4": 26, "pool4": 27,
          "conv5_1": 29, "conv5_2": 31, "conv5_3": 33, "conv5_4": 35, "pool5": 36}


def test_layer_table_has_the_papers_names_at_the_indices_counted_by_hand():
    assert list(nst.LAYERS.items()) == list(LAYERS.items())
    assert nst.CONV_LAYERS == tuple(name for name in LAYERS if name.startswith("conv"))
    assert len(nst.CONV_LAYERS) == 16


def test_unknown_layer_names_are_reported_with_the_valid_ones():
    with pytest.raises(ValueError, match="conv6_1.*valid names are conv1_1"):
        nst.check_layers(["conv1_1", "conv6_1"])



def test_block_is_the_number_of_poolings_before_a_conv_plus_one():
    assert [layers.block(n) for n in ("conv1_1", "conv2_2", "pool2", "conv5_4", "pool5")] == [
        1, 2, 2, 5, 5]


def test_keras_blocks_and_weight_shapes_counted_by_hand():
    assert layers.KERAS_BLOCKS == ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    shapes = layers.expected_shapes()
    assert len(shapes) == 32 and shapes["0.weight"] == (64, 3, 3, 3)
    assert shapes["21.weight"] == (512, 512, 3, 3) and shapes["10.bias"] == (256,)
    assert [name for name, _ in sorted(((n, i) for n, i in layers.LAYERS.items()),
                                       key=lambda p: p[1])][:3] == ["conv1_1", "conv1_2", "pool1"]
