import warnings

import pytest
import torch

import nst_lib as nst


@pytest.fixture(scope="session")
def random_model():
    """An untrained VGG19 (seeded): fast tests that do not need real features."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "untrained VGG19": tested in test_vgg.py
        return nst.vgg19("random", pooling="avg", device="cpu")


@pytest.fixture(scope="session")
def caffe_model():
    """The paper's VGG19 (fetched and cached on first use)."""
    return nst.vgg19("caffe", pooling="avg", device="cpu")


@pytest.fixture
def tiny():
    """A content and a style image of different sizes, (1, 3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(12345)  # not the noise init's seed
    return torch.rand(1, 3, 32, 48, generator=g), torch.rand(1, 3, 40, 40, generator=g)
