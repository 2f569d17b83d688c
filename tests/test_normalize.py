import pytest
import torch
import torchvision

import nst_lib as nst
from nst_lib import cache, normalize, vgg
from nst_lib.weights import save_weights


@pytest.fixture(scope="module")
def calibration():
    g = torch.Generator().manual_seed(99)
    return [torch.rand(1, 3, 40, 48, generator=g), torch.rand(1, 3, 48, 36, generator=g) ** 2]


def _model(state, pooling="avg", preprocessing="torchvision"):
    features = torchvision.models.vgg19().features
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
    original = nst.VGG19(torchvision.models.vgg19().features, random_model.preprocessing, pooling)
    original.load_state_dict(random_model.state_dict())
    state = normalize.normalize_weights(original, calibration, size=48)
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
    state = normalize.normalize_weights(random_model, calibration, size=48)
    normalized = _model(state)
    other = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))  # not seen
    before, after = random_model(other, nst.CONV_LAYERS), normalized(other, nst.CONV_LAYERS)
    means = _means(random_model, calibration)
    for name in ("conv1_1", "conv3_1", "conv5_4"):
        s = torch.where(means[name] > 0, means[name], torch.ones_like(means[name]))
        expected = before[name] / s.view(1, -1, 1, 1)
        assert torch.allclose(after[name], expected, rtol=1e-3, atol=1e-5 * expected.max()), name


def test_the_model_normalised_is_left_as_it_was(random_model, calibration):
    before = random_model.features[0].weight.clone()
    state = normalize.normalize_weights(random_model, calibration, size=48)
    assert torch.equal(random_model.features[0].weight, before)
    assert not torch.equal(state["0.weight"], before)


def test_the_default_calibration_images_are_the_bundled_ones():
    names = [p.name for p in normalize.calibration_images()]
    assert "chelsea.png" in names and "starry_night.jpg" in names
    assert not any(n.endswith(".md") for n in names)


def test_caffe_normalized_is_computed_once_and_kept_in_the_cache(
        random_model, calibration, tmp_path, monkeypatch):
    """The weight option, with random weights standing in for Caffe's."""
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    plain = save_weights(random_model.features.state_dict(), tmp_path / "plain.pth", "caffe")
    monkeypatch.setattr(vgg, "caffe_weights", lambda: plain)
    monkeypatch.setattr(normalize, "calibration_images", lambda: calibration)
    state = vgg.WEIGHTS["caffe-normalized"].load("max")
    assert vgg.WEIGHTS["caffe-normalized"].preprocessing == vgg.CAFFE
    assert (tmp_path / f"vgg19_caffe_normalized_max_{normalize.calibration_id()}.pth").is_file()
    monkeypatch.setattr(vgg, "normalize_weights", None)  # a second call must not recompute
    again = vgg.WEIGHTS["caffe-normalized"].load("max")
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_a_damaged_normalized_file_is_computed_again(random_model, calibration, tmp_path,
                                                    monkeypatch):
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    plain = save_weights(random_model.features.state_dict(), tmp_path / "plain.pth", "caffe")
    monkeypatch.setattr(vgg, "caffe_weights", lambda: plain)
    monkeypatch.setattr(normalize, "calibration_images", lambda: calibration)
    path = tmp_path / f"vgg19_caffe_normalized_avg_{normalize.calibration_id()}.pth"
    path.write_bytes(b"half a file")  # e.g. a copy that was cut short
    state = vgg.WEIGHTS["caffe-normalized"].load("avg")
    assert nst.weights.readable(path)
    assert torch.equal(state["0.bias"], nst.weights.load_weights(path)[0]["0.bias"])


RACE = """
import os
import time

import torch
import torchvision

from nst_lib import normalize, vgg
from nst_lib.weights import save_weights

torch.manual_seed(0)
state = torchvision.models.vgg19().features.state_dict()  # the same in both processes
plain = save_weights(state, vgg.cache_dir() / f"plain_{os.getpid()}.pth", "caffe")
vgg.caffe_weights = lambda: plain
normalize.calibration_images = lambda: [torch.rand(1, 3, 32, 32)]
normalize = vgg.normalize_weights


def slow_normalize(*args, **kwargs):
    with open(os.environ["NORMALIZE_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.5)
    return normalize(*args, **kwargs)


vgg.normalize_weights = slow_normalize
start_together()
state = vgg.WEIGHTS["caffe-normalized"].load("avg")
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
        monkeypatch.setattr(normalize, "calibration_images", lambda images=images: images)
        states.append(vgg.WEIGHTS["caffe-normalized"].load("avg"))
        keys.append(cache.key(calibration[0], calibration[0],
                              nst.Config(weights="caffe-normalized")))
    assert len(list(tmp_path.glob("vgg19_caffe_normalized_avg_*.pth"))) == 2
    assert not torch.equal(states[0]["0.weight"], states[1]["0.weight"])
    assert keys[0] != keys[1]


@pytest.mark.slow
def test_the_normalized_caffe_network_has_mean_response_one():
    model = nst.vgg19("caffe-normalized", pooling="avg", device="cpu")
    images = [nst.load_image(p, 256) for p in normalize.calibration_images()]
    means = _means(model, images, size=256)
    for name in nst.STYLE_LAYERS + nst.CONTENT_LAYERS:
        alive = means[name] > 0
        assert torch.allclose(means[name][alive], torch.ones(int(alive.sum())), rtol=1e-3)


def test_mean_responses_average_over_positions_then_images():
    class Doubling(torch.nn.Module):  # layer i responds (i + 1) x the image's first 2 channels
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, layers):
            return {name: x[:, :2] * (i + 1) for i, name in enumerate(layers)}

    images = [torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 2, 2)]
    images[1][..., 0, 0] = 4.0  # mean 1 over the positions
    out = normalize.mean_responses(Doubling(), images, ("conv1_1", "conv2_1"), size=None)
    assert torch.allclose(out["conv1_1"], torch.tensor([1.0, 1.0]))
    assert torch.allclose(out["conv2_1"], torch.tensor([2.0, 2.0]))
