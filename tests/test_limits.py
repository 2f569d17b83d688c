import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import nst_lib as nst
from nst_lib import limits

ROOT = Path(__file__).resolve().parent.parent


def test_seconds_per_evaluation_is_the_median_gap_after_the_first_evaluation():
    history = [{"seconds": s} for s in (0.5, 1.0, 1.2, 1.7, 2.0)]  # gaps 0.5 0.2 0.5 0.3
    assert limits.seconds_per_evaluation(history) == pytest.approx(0.4)
    history = [{"seconds": s} for s in (3.0, 3.1, 3.4, 3.6)]  # gaps 0.1 0.3 0.2
    assert limits.seconds_per_evaluation(history) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at least 2"):
        limits.seconds_per_evaluation([{"seconds": 1.0}])


def test_linear_fit_by_hand():
    assert limits.linear_fit([1, 2, 3, 4], [5, 8, 11, 14]) == pytest.approx((3.0, 2.0))
    # x = 0, 1, 2 and y = 0, 1, 3: slope = sum(dx dy) / sum(dx^2) = 3 / 2, intercept 4/3 - 3/2
    assert limits.linear_fit([0, 1, 2], [0, 1, 3]) == pytest.approx((1.5, -1 / 6))
    with pytest.raises(ValueError):
        limits.linear_fit([1], [2])


def test_peak_rss_grows_by_what_a_process_allocates():
    # run from this (large) process: the child's peak must be its own, not inherited
    grown = b"y" * (400 * 2**20)  # noqa: F841 (kept alive while the child starts)
    script = ("import nst_lib.limits as l; before = l.peak_rss_mb(); "
              "block = b'x' * (300 * 2**20); print(before, l.peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    before, after = map(float, out.split())
    # the peak is at least the block (in MiB, not KiB or bytes), and it has grown
    assert 300 < after < before + 400 and after - before > 200


def test_reset_peak_rss_forgets_a_block_that_was_freed():
    script = ("import nst_lib.limits as l; block = b'x' * (500 * 2**20); del block; "
              "before = l.peak_rss_mb(); print(before, l.reset_peak_rss(), l.peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    before, reset, after = out.split()
    if sys.platform.startswith("linux"):  # /proc/self/clear_refs
        assert reset == "True" and float(after) < float(before) - 350
    else:
        assert reset == "False"


def test_peak_rss_is_nan_without_proc_or_the_resource_module(monkeypatch, tmp_path):
    monkeypatch.setattr(limits, "STATUS", str(tmp_path / "no_proc"))  # not Linux
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: import fails
    assert math.isnan(limits.peak_rss_mb())


def test_high_frequency_of_a_flat_image_and_a_checkerboard():
    assert limits.high_frequency(torch.full((1, 3, 8, 8), 0.3)) == pytest.approx(0, abs=1e-6)
    rows, cols = torch.meshgrid(torch.arange(10), torch.arange(12), indexing="ij")
    board = ((rows + cols) % 2).float().expand(3, 10, 12)  # (3, H, W) is accepted too
    # each inner pixel differs from its 3x3 mean (5 like it, 4 unlike) by 4/9
    assert limits.high_frequency(board) == pytest.approx(4 / 9)
    ramp = torch.linspace(0, 1, 16).expand(1, 3, 16, 16)  # a smooth gradient: no detail
    assert limits.high_frequency(ramp) == pytest.approx(0, abs=1e-6)


def test_flattest_window_finds_the_one_smooth_square():
    image = torch.rand(1, 3, 40, 50, generator=torch.Generator().manual_seed(0))
    image[..., 12:28, 30:46] = 0.5  # 16 x 16, flat
    assert limits.flattest_window(image, 16) == (12, 30)
    with pytest.raises(ValueError):
        limits.flattest_window(image, 41)


def test_zoom_repeats_each_pixel_of_the_crop():
    image = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(1, 2, 5, 6)
    zoomed = limits.zoom(image, 1, 2, 3, factor=4)
    assert zoomed.shape == (1, 2, 12, 12)
    for i in range(3):
        for j in range(3):
            block = zoomed[..., 4 * i:4 * i + 4, 4 * j:4 * j + 4]
            assert torch.equal(block, image[..., 1 + i, 2 + j, None, None].expand(1, 2, 4, 4))


def test_adain_gives_the_style_statistics_and_keeps_the_content_layout():
    g = torch.Generator().manual_seed(1)
    content = torch.rand(1, 4, 6, 7, generator=g)
    style = 3 * torch.rand(1, 4, 5, 5, generator=g) + 2
    mean, std = limits.channel_stats(style)
    out = limits.adain(content, mean, std)
    out_mean, out_std = limits.channel_stats(out)
    assert torch.allclose(out_mean, mean, atol=1e-5)
    assert torch.allclose(out_std, std, atol=1e-3)
    # the content's own statistics give the content back; a positive affine change of the
    # content's channels changes nothing
    assert torch.allclose(limits.adain(content, *limits.channel_stats(content)), content,
                          atol=1e-3)
    assert torch.allclose(limits.adain(5 * content + 1, mean, std), out, atol=1e-3)


def test_channel_stats_by_hand():
    x = torch.tensor([[1.0, 3.0], [1.0, 3.0]]).reshape(1, 1, 2, 2)  # mean 2, variance 1
    mean, std = limits.channel_stats(x, eps=0)
    assert mean.shape == std.shape == (1, 1, 1, 1)
    assert mean.item() == 2 and std.item() == 1


@pytest.mark.slow
def test_adain_transfer_moves_the_features_towards_the_style_statistics(caffe_model, tiny):
    content, style = tiny
    model = caffe_model
    result = limits.adain_transfer(content, style, model=model, size=32, steps=8)
    assert result.image.shape[-1] == 32 and len(result.history) == 8
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    with torch.no_grad():
        style_stats = limits.channel_stats(model(nst.resize(style, 32), ["conv4_1"])["conv4_1"])
        before, after = (limits.channel_stats(model(x, ["conv4_1"])["conv4_1"])
                         for x in (nst.resize(content, 32), result.image))

    def gap(stats):
        return sum((a - b).abs().mean() for a, b in zip(stats, style_stats))

    assert gap(after) < gap(before)


def test_measure_cost_runs_each_size_in_its_own_process():
    rows = limits.measure_cost(nst.example("chelsea.png"), nst.example("starry_night.jpg"),
                               (32, 48), steps=3, weights="random")
    assert [row["size"] for row in rows] == [32, 48]
    assert [row["pixels"] for row in rows] == [32 * 21, 48 * 32]  # chelsea is 451 x 300
    for row in rows:
        assert row["seconds"] > 0 and row["estimated_seconds"] > 0
        assert 100 < row["peak_mb"] < 10_000 and row["estimated_mb"] > 100
    fig = limits.plot_cost(rows)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax in fig.axes:
        assert [len(line.get_xdata()) for line in ax.get_lines()] == [2, 2]
