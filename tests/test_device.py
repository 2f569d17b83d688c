import pytest
import torch

import nst_lib as nst

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_picks_an_available_device():
    device = nst.resolve_device("auto")
    if torch.cuda.is_available():
        assert device.type == "cuda"
    elif torch.backends.mps.is_available():
        assert device.type == "mps"
    else:
        assert device.type == "cpu"
    assert nst.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.cuda
@cuda
def test_transfer_on_the_gpu_returns_a_cpu_image(tiny):
    content, style = tiny
    result = nst.transfer(content, style, weights="random", device="cuda", size=None, steps=5,
                          scales=1, progress=False)
    model = nst.vgg19("random", device="cuda")
    assert next(model.parameters()).is_cuda  # weights and tensors moved together
    assert result.image.device.type == "cpu" and result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.cuda
@cuda
def test_gpu_and_cpu_agree_on_the_loss(random_model, tiny):
    content, style = tiny
    cpu = nst.Targets(random_model, nst.Config(), content, style)
    gpu_model = nst.vgg19("random", device="cuda")
    gpu = nst.Targets(gpu_model, nst.Config(), content.cuda(), style.cuda())
    a = cpu.losses(random_model, content, 1.0, 1.0)[0]
    b = gpu.losses(gpu_model, content.cuda(), 1.0, 1.0)[0]
    assert torch.allclose(a, b.cpu(), rtol=1e-3)
