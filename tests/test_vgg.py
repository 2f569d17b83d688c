import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nst_lib as nst
from nst_lib import vgg
from nst_lib.layers import features
from nst_lib.vgg import PREPROCESSING

def test_the_model_takes_one_name_names_separated_by_commas_or_none(random_model):
    x = torch.rand(1, 3, 32, 32)
    assert list(random_model(x, "conv2_1")) == ["conv2_1"]  # not the letters c, o, n ...
    assert set(random_model(x, "conv1_1, conv2_1")) == {"conv1_1", "conv2_1"}
    assert random_model(x, []) == {}


def test_no_in_place_relu_can_overwrite_stored_features(random_model):
    assert not any(getattr(m, "inplace", False) for m in random_model.modules())


def test_values_are_rectified_responses_and_survive_later_layers(random_model):
    x = torch.rand(1, 3, 32, 32)
    out = random_model(x, ["conv1_1", "conv1_2", "pool1", "conv5_1"])
    conv1, conv2 = random_model.features[0], random_model.features[2]
    expected = F.relu(conv1(random_model.preprocessing(x)))
    assert torch.equal(out["conv1_1"], expected)  # unchanged by the layers computed after it
    assert torch.equal(out["conv1_2"], F.relu(conv2(expected)))
    assert torch.equal(out["pool1"], F.avg_pool2d(out["conv1_2"], 2))
    assert out["conv1_1"].min() >= 0


def test_in_place_relus_of_the_features_given_are_replaced():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    features = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1),
                             nn.ReLU(inplace=True), nn.MaxPool2d(2))  # as torchvision builds it
    model = nst.VGG19(features, PREPROCESSING["torchvision"], "max")
    assert [type(m) for m in model.features] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU,
                                                 nn.MaxPool2d]
    assert not any(m.inplace for m in model.features if isinstance(m, nn.ReLU))
    x = torch.rand(1, 3, 8, 8)
    out = model(x, ["conv1_1", "conv1_2"])
    with torch.no_grad():
        assert torch.allclose(out["conv1_1"], F.relu(conv(PREPROCESSING["torchvision"](x))))


@pytest.mark.parametrize("layers, modules", [
    (["conv1_1"], 2),  # conv1_1 and its ReLU
    (["conv2_1", "conv1_1"], 7),  # block 1 (conv, ReLU, conv, ReLU, pool), conv2_1, ReLU
    (["conv4_2"], 23),
    (["pool5", "conv1_1"], 37),  # all of them
])
def test_forward_stops_at_the_deepest_requested_layer(random_model, layers, modules):
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in random_model.features]
    try:
        out = random_model(torch.rand(1, 3, 32, 32), layers)
    finally:
        for h in hooks:
            h.remove()
    assert len(calls) == modules and set(out) == set(layers)


def test_max_pooling_option(random_model):
    model = nst.VGG19(features(), random_model.preprocessing, "max")
    assert isinstance(model.features[4], nn.MaxPool2d)
    assert isinstance(random_model.features[4], nn.AvgPool2d)
    with pytest.raises(ValueError, match="pooling"):
        nst.VGG19(random_model.features, random_model.preprocessing, "median")


def test_preprocessing_travels_with_the_weights():
    mean_rgb = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1) / 255
    assert torch.allclose(PREPROCESSING["caffe"](mean_rgb), torch.zeros(1, 3, 1, 1), atol=1e-4)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert PREPROCESSING["caffe"](red)[0, 2, 0, 0] > 100  # red is the last channel in BGR
    tv = PREPROCESSING["torchvision"](torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
    assert torch.allclose(tv, torch.zeros(1, 3, 1, 1), atol=1e-6)


@pytest.mark.slow
def test_caffe_weights_are_the_trained_network(caffe_model):
    assert caffe_model.features[0].weight.shape == (64, 3, 3, 3)  # conv1_1
    # a photo and its spatially shuffled pixels look alike to conv1_1 statistics but not to
    # conv5_1: a trained network sees structure
    photo = nst.load_image(nst.example("chelsea.png"), 128)
    shuffled = photo.flatten(2)[..., torch.randperm(photo[0, 0].numel())].view_as(photo)
    a, b = caffe_model(photo, ["conv5_1"])["conv5_1"], caffe_model(shuffled, ["conv5_1"])["conv5_1"]
    assert (a - b).norm() / a.norm() > 0.8  # random weights give about 0.35


def test_random_weights_warn_that_pictures_will_not_look_right():
    vgg._cached_vgg19.cache_clear()
    with pytest.warns(UserWarning, match="will not look like style transfer"):
        nst.vgg19("random", device="cpu", seed=1)


def test_auto_and_the_device_it_picks_share_one_network(monkeypatch):
    monkeypatch.setattr(vgg, "resolve_device", lambda device="auto": torch.device("cpu"))
    with pytest.warns(UserWarning):
        model = nst.vgg19("random", device="auto", seed=3)
    assert nst.vgg19("random", device="cpu", seed=3) is model
    assert nst.vgg19("random", seed=3) is model


def test_precision_is_decided_by_the_hardware(monkeypatch):
    monkeypatch.setattr(vgg, "native_bfloat16", lambda: True)
    assert vgg.resolve_precision("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(vgg, "native_bfloat16", lambda: False)
    assert vgg.resolve_precision("auto", "cpu") == torch.float32
    assert vgg.resolve_precision("float32", "cpu") == torch.float32
    assert vgg.resolve_precision("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        vgg.resolve_precision("fp8", "cpu")


def test_native_bfloat16_reads_the_cpu_flags(monkeypatch, tmp_path):
    real = vgg.Path
    for flags, expected in (("fpu sse2 avx512f avx512_bf16", True), ("fpu sse2 avx2", False)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor : 0\nflags : {flags}\n")
        monkeypatch.setattr(vgg, "Path", lambda p, info=info: info if p == "/proc/cpuinfo"
                            else real(p))
        assert vgg.native_bfloat16() is expected


def test_bfloat16_features_are_float32_and_close(random_model):
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    exact = random_model(x, ["conv1_1", "conv4_2"])
    fast = random_model(x, ["conv1_1", "conv4_2"], dtype=torch.bfloat16)
    for name in exact:
        assert fast[name].dtype == torch.float32
        err = (fast[name] - exact[name]).norm() / exact[name].norm()
        assert 0 < err < 0.03  # bfloat16 keeps 8 bits of mantissa: ~0.4% per value


def test_bfloat16_copy_of_the_weights_computes_what_autocast_computes(random_model):
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    layers = ["conv1_1", "conv3_1", "conv4_2"]
    fast = random_model(x, layers, dtype=torch.bfloat16)
    fast_grad, = torch.autograd.grad(sum(f.square().sum() for f in fast.values()), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = random_model.preprocessing(x).contiguous(memory_format=torch.channels_last)
        auto = {}
        for index, module in enumerate(random_model.features[: nst.LAYERS["conv4_2"] + 1]):
            y = module(y)
            auto.update({name: y.float() for name in layers if nst.LAYERS[name] == index})
    auto_grad, = torch.autograd.grad(sum(f.square().sum() for f in auto.values()), x)
    for name in layers:
        assert torch.equal(fast[name], auto[name])
    assert torch.equal(fast_grad, auto_grad)
    assert random_model.layers_in(torch.float32) is random_model.features


def test_the_copy_of_the_weights_follows_changes_to_them(random_model):
    model = copy.deepcopy(random_model)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    before = model(x, ["conv1_1"], dtype=torch.bfloat16)["conv1_1"]
    assert model.layers_in(torch.bfloat16) is model.layers_in(torch.bfloat16)  # kept
    with torch.no_grad():
        model.features[0].weight.mul_(2)
        model.features[0].bias.mul_(2)
    after = model(x, ["conv1_1"], dtype=torch.bfloat16)["conv1_1"]
    torch.testing.assert_close(after, 2 * before, rtol=0.02, atol=1e-3)
    assert model.layers_in(torch.bfloat16)[0].weight.dtype == torch.bfloat16
    assert not any(p.dtype == torch.bfloat16 for p in model.parameters())  # not a submodule


# ---------------------------------------------------------------------------- the device


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"),
    (True, False, "cuda"),
    (False, True, "mps"),
    (False, False, "cpu"),
])
def test_auto_takes_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert nst.resolve_device("auto") == torch.device(expected)
    assert nst.resolve_device() == torch.device(expected)  # auto is the default


def test_auto_is_the_cpu_where_torch_has_no_mps_backend(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delattr(torch.backends, "mps")
    assert nst.resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("given, expected", [
    ("cpu", torch.device("cpu")),
    ("cuda", torch.device("cuda")),  # named, so taken even where there is none
    ("cuda:1", torch.device("cuda", 1)),
    ("mps", torch.device("mps")),
    (torch.device("cpu"), torch.device("cpu")),
])
def test_a_named_device_is_taken_as_it_is(monkeypatch, given, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert nst.resolve_device(given) == expected
