import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nst_lib as nst
from nst_lib import cache, vgg
from nst_lib.vgg import PREPROCESSING
from nst_lib.weights import save_weights

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
    model = nst.VGG19(vgg._features(), random_model.preprocessing, "max")
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
    nst.vgg19.cache_clear()
    with pytest.warns(UserWarning, match="will not look like style transfer"):
        nst.vgg19("random", device="cpu", seed=1)


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


# ---------------------------------------------------------------------------- normalised weights


@pytest.fixture(scope="module")
def calibration():
    g = torch.Generator().manual_seed(99)
    return [torch.rand(1, 3, 40, 48, generator=g), torch.rand(1, 3, 48, 36, generator=g) ** 2]


def _model(state, pooling="avg", preprocessing="torchvision"):
    features = vgg._features()
    features.load_state_dict(state)
    return nst.VGG19(features, vgg.PREPROCESSING[preprocessing], pooling)


def _means(model, images, size=48):
    """Each filter's response, averaged over positions, then over the images: layer -> (N,)."""
    sums = {}
    with torch.no_grad():
        for image in images:
            for name, f in model(nst.resize(image, size), nst.CONV_LAYERS).items():
                sums[name] = sums.get(name, 0) + f.mean(dim=(0, 2, 3))
    return {name: s / len(images) for name, s in sums.items()}


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_every_filter_has_mean_response_one_on_the_calibration_images(
        random_model, calibration, pooling):
    original = nst.VGG19(vgg._features(), random_model.preprocessing, pooling)
    original.load_state_dict(random_model.state_dict())
    state = vgg.normalize_weights(original, calibration, size=48)
    before = _means(original, calibration)
    after = _means(_model(state, pooling), calibration)
    for name in nst.CONV_LAYERS:
        alive = before[name] > 0
        assert alive.float().mean() > 0.5, name
        # float32: filters that fire at a handful of positions only are a little less exact
        error = (after[name][alive] - 1).abs()
        assert error.max() < 1e-2 and error.median() < 1e-4, name
        assert torch.equal(after[name][~alive], before[name][~alive])  # silent: left alone


def test_responses_keep_their_pattern_up_to_a_scale_per_filter(random_model, calibration):
    state = vgg.normalize_weights(random_model, calibration, size=48)
    normalized = _model(state)
    other = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))  # not seen
    before, after = random_model(other, nst.CONV_LAYERS), normalized(other, nst.CONV_LAYERS)
    means = _means(random_model, calibration)
    for name in ("conv1_1", "conv3_1", "conv5_4"):
        s = torch.where(means[name] > 0, means[name], torch.ones_like(means[name]))
        expected = before[name] / s.view(1, -1, 1, 1)
        assert torch.allclose(after[name], expected, rtol=1e-3, atol=1e-5 * expected.max()), name


def test_a_state_dict_source_gives_the_same_weights(random_model, calibration):
    from_model = vgg.normalize_weights(random_model, calibration, size=48)
    from_state = vgg.normalize_weights(random_model.features.state_dict(), calibration,
                                       preprocessing="torchvision", size=48)
    assert from_model.keys() == from_state.keys()
    for k in from_model:
        assert torch.allclose(from_model[k], from_state[k], rtol=1e-5, atol=1e-8), k
    # the source is left as it was
    assert not torch.equal(from_model["0.weight"], random_model.features[0].weight)


def test_the_default_calibration_images_are_the_bundled_ones():
    names = [p.name for p in vgg.calibration_images()]
    assert "chelsea.png" in names and "starry_night.jpg" in names
    assert not any(n.endswith(".md") for n in names)


def test_caffe_normalized_is_computed_once_and_kept_in_the_cache(
        random_model, calibration, tmp_path, monkeypatch):
    """The weight option, with random weights standing in for Caffe's."""
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    plain = save_weights(random_model.features.state_dict(), tmp_path / "plain.pth", "caffe")
    monkeypatch.setattr(vgg, "caffe_weights", lambda: plain)
    monkeypatch.setattr(vgg, "calibration_images", lambda: calibration)
    state, preprocessing = vgg._state_dict("caffe-normalized", "max")
    assert preprocessing == "caffe"
    assert (tmp_path / f"vgg19_caffe_normalized_max_{vgg.calibration_id()}.pth").is_file()
    monkeypatch.setattr(vgg, "normalize_weights", None)  # a second call must not recompute
    again, _ = vgg._state_dict("caffe-normalized", "max")
    assert all(torch.equal(state[k], again[k]) for k in state)


RACE = """
import os
import time

import torch

from nst_lib import vgg
from nst_lib.weights import save_weights

torch.manual_seed(0)
state = vgg._features().state_dict()  # the same in both processes
plain = save_weights(state, vgg.cache_dir() / f"plain_{os.getpid()}.pth", "caffe")
vgg.caffe_weights = lambda: plain
vgg.calibration_images = lambda: [torch.rand(1, 3, 32, 32)]
normalize = vgg.normalize_weights


def slow_normalize(*args, **kwargs):
    with open(os.environ["NORMALIZE_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.5)
    return normalize(*args, **kwargs)


vgg.normalize_weights = slow_normalize
start_together()
state, _ = vgg._state_dict("caffe-normalized", "avg")
print(float(state["0.bias"].sum()))
"""


def test_two_processes_compute_the_normalized_weights_once(tmp_path, two_processes):
    log = tmp_path / "normalize.log"
    (tmp_path / "cache").mkdir()
    results = two_processes(RACE, NST_CACHE=str(tmp_path / "cache"), NORMALIZE_LOG=str(log))
    for code, _, err in results:
        assert code == 0, err
    assert len(log.read_text().splitlines()) == 1  # computed once, read by the other process
    assert results[0][1] == results[1][1]  # the same weights
    assert len(list((tmp_path / "cache").glob("vgg19_caffe_normalized_avg_*.pth"))) == 1


def test_other_calibration_images_give_other_weights_and_other_cache_keys(
        random_model, calibration, tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    plain = save_weights(random_model.features.state_dict(), tmp_path / "plain.pth", "caffe")
    monkeypatch.setattr(vgg, "caffe_weights", lambda: plain)
    keys, states = [], []
    for images in (calibration, calibration[:1]):
        monkeypatch.setattr(vgg, "calibration_images", lambda images=images: images)
        states.append(vgg._state_dict("caffe-normalized", "avg")[0])
        keys.append(cache.key(calibration[0], calibration[0],
                              nst.Config(weights="caffe-normalized")))
    assert len(list(tmp_path.glob("vgg19_caffe_normalized_avg_*.pth"))) == 2
    assert not torch.equal(states[0]["0.weight"], states[1]["0.weight"])
    assert keys[0] != keys[1]


@pytest.mark.slow
def test_the_normalized_caffe_network_has_mean_response_one():
    model = nst.vgg19("caffe-normalized", pooling="avg", device="cpu")
    images = [nst.load_image(p, 256) for p in vgg.calibration_images()]
    means = _means(model, images, size=256)
    for name in nst.STYLE_LAYERS + nst.CONTENT_LAYERS:
        alive = means[name] > 0
        assert torch.allclose(means[name][alive], torch.ones(int(alive.sum())), rtol=1e-3)
