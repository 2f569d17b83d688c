"""The cost of a run, known before it starts (nst_lib.cost)."""

import subprocess
import sys

import pytest
import torch

import nst_lib as nst
import nst_lib.cost as cost


def test_feature_elements_counts_each_conv_relu_and_pool_by_hand():
    # 16x16: conv1_1 and its ReLU are 64 x 256 values each
    assert cost.feature_elements((16, 16), "conv1_1") == 2 * 64 * 256
    # + conv1_2 and its ReLU, + pool1 (64 x 8 x 8)
    assert cost.feature_elements((16, 16), "pool1") == 4 * 64 * 256 + 64 * 64
    # + conv2_1 (128 x 8 x 8, twice)
    assert cost.feature_elements((16, 16), "conv2_1") == 4 * 64 * 256 + 64 * 64 + 2 * 128 * 64


def test_the_estimate_grows_with_the_pixels_and_the_deepest_layer():
    config = nst.Config()
    small = cost.estimate((170, 256), config).memory_mb
    large = cost.estimate((340, 512), config).memory_mb
    shallow = cost.estimate((340, 512), nst.Config(style_layers=("conv1_1",),
                                                   content_layers=("conv1_2",))).memory_mb
    base = cost.BASE_MB["cpu"]
    assert 3.5 < (large - base) / (small - base) < 4.5  # four times the pixels
    assert shallow < large
    assert cost.estimate((340, 512), config, dtype=torch.bfloat16).memory_mb < large


def test_the_time_is_per_evaluation_with_a_part_that_does_not_shrink_with_the_image(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the fitted machine's
    shallow = dict(scales=1, style_layers=("conv1_1",), content_layers=("conv1_1",))
    tiny = cost.estimate((32, 32), nst.Config(steps=100, **shallow)).seconds
    assert 1 <= tiny / (100 * cost.SECONDS_PER_EVALUATION) < 1.25  # nearly all fixed
    assert cost.estimate((32, 32), nst.Config(steps=200, **shallow)).seconds == pytest.approx(2 * tiny)
    three = cost.estimate((341, 512), nst.Config(steps=(100, 40, 15)), dtype=torch.bfloat16)
    full = cost.estimate((341, 512), nst.Config(scales=1, steps=155), dtype=torch.bfloat16)
    assert three.seconds < 0.3 * full.seconds  # the coarse scales are cheap


def test_largest_size_is_the_edge_of_the_limit():
    config = nst.Config()
    fits = cost.largest_size((300, 451), config, "cpu", torch.float32, 4000)
    shape = nst.image.target_shape(300, 451, fits)
    assert cost.estimate(shape, config).memory_mb <= 4000
    assert cost.estimate(nst.image.target_shape(300, 451, fits + 1), config).memory_mb > 4000


def test_a_run_too_large_is_refused_before_any_work(eight_gb):
    with pytest.raises(ValueError, match=r"needs about .* GB .* 8\.0 GB is free; use size=\d+"):
        nst.transfer(nst.example("chelsea.png"), nst.example("starry_night.jpg"), size=20000)
    huge = torch.zeros(1, 3, 1, 1).expand(1, 3, 12000, 16000)  # a view: no memory
    with pytest.raises(ValueError, match="use size="):
        nst.transfer(huge, nst.example("starry_night.jpg"), size=None)


@pytest.mark.skipif(cost._libc() is None, reason="glibc's malloc only (Linux)")
def test_freed_memory_is_kept_for_reuse_and_given_back_when_asked():
    code = """
import torch
import nst_lib.cost as cost
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
cost.keep_freed_memory()
before = rss()
blocks = [torch.ones(2**20) for _ in range(100)]  # 100 blocks of 4 MB, freed below
del blocks
kept = rss()
cost.return_freed_memory()
print(kept - before, rss() - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kept, returned = map(float, out.stdout.split())
    assert kept > 300 and returned < 50  # MB


def test_a_run_gives_its_memory_back_however_it_ends(monkeypatch, random_model):
    import nst_lib.optimize as optimize

    calls = []
    monkeypatch.setattr(optimize, "return_freed_memory", lambda: calls.append(1))

    def interrupt(step):
        raise KeyboardInterrupt

    x = torch.rand(1, 3, 32, 32)
    result = nst.transfer(x, x, model=random_model, steps=3, scales=1, progress=False,
                          weights="random", callback=interrupt)
    assert result.stop_reason == "interrupted" and calls == [1]
    with pytest.raises(ValueError):
        nst.transfer(x, x, model=random_model, steps=3, scales=1, progress=False,
                     weights="random", style_blend=(0.5, 0.5))  # fails at the first scale
    assert calls == [1, 1]
