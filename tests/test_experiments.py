import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

import nst_lib as nst
from nst_lib import experiments


class Runner:
    """Stands in for the cached transfer: records each config, returns a grey picture."""

    def __init__(self):
        self.configs = []

    def __call__(self, content, style, config=None, **kwargs):
        self.configs.append(config)
        h, w = nst.image.target_shape(*content.shape[-2:], config.size)
        return nst.Result(image=torch.full((1, 3, h, w), 0.5), history=[{"step": 1}],
                          seconds=1.5, config=config)


def test_tradeoff_grid_has_rows_times_cols_axes(tiny):
    content, style = tiny
    run = Runner()
    fig = experiments.tradeoff_grid(content, style, nst.Config(size=32), runner=run)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 5 * 4 and len(run.configs) == 20
    assert fig.axes[0].get_title() == "α/β = 1e-05" and fig.axes[0].get_ylabel() == "conv1_1"
    assert fig.axes[-4].get_ylabel() == "conv1_1 … conv5_1"
    assert {c.style_layers for c in run.configs} == set(experiments.LAYER_SETS)


def test_tradeoff_grid_other_shapes(tiny):
    content, style = tiny
    fig = experiments.tradeoff_grid(content, style, nst.Config(size=32), runner=Runner(),
                                    ratios=(1e-3,), layer_sets=[("conv1_1",), ("conv2_1",)])
    assert len(fig.axes) == 2


def test_ratios_act_per_position_of_the_content_layer(tiny):
    content, style = tiny  # 32 x 48 at size 48: conv4_2 is 4 x 6
    config = nst.Config(size=48)
    assert experiments.positions("conv4_2", (32, 48)) == 24
    assert experiments.positions("conv1_1", (32, 48)) == 32 * 48
    assert experiments.alpha_per_position(1e-3, content, config) == pytest.approx(1e-3 / 24)
    run = Runner()
    experiments.tradeoff_runs(content, style, config, ratios=(1e-2,), layer_sets=[("conv1_1",)],
                              runner=run)
    experiments.tradeoff_runs(content, style, config, ratios=(1e-2,), layer_sets=[("conv1_1",)],
                              per_position=False, runner=run)
    (a, b) = run.configs
    assert a.ratio == pytest.approx(1e-2 / 24) and b.ratio == pytest.approx(1e-2)


def test_normalisation_grid_compares_the_networks(tiny):
    run = Runner()
    fig = experiments.normalisation_grid(*tiny, nst.Config(size=32), runner=run)
    assert len(fig.axes) == 3 * 4
    assert [c.weights for c in run.configs[::4]] == ["caffe", "caffe-normalized",
                                                      "caffe-normalized"]


def test_the_rows_vary_one_thing_each(tiny):
    content, style = tiny
    config = nst.Config(size=32, steps=2)
    run = Runner()
    inits = experiments.initialisations(content, style, config, runner=run)
    assert len(inits) == 6 and all(c.scales == 1 and c.steps == 4 for c in run.configs)
    assert [c.init for c in run.configs] == ["content", "style"] + ["noise"] * 4
    assert len({c.seed for c in run.configs[2:]}) == 4
    run.configs.clear()
    experiments.poolings(content, style, config, runner=run)
    assert [c.pooling for c in run.configs] == ["avg", "max"]
    run.configs.clear()
    res = experiments.resolutions(content, style, config, size=64, seconds=3, runner=run)
    assert [(c.scales, c.size, c.time_limit) for c in run.configs] == [(3, 64, 3), (1, 64, 3)]
    assert len(res) == 2
    run.configs.clear()
    experiments.blends(content, [style, style.flip(-1)], config, runner=run)
    assert [c.style_blend for c in run.configs] == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    run.configs.clear()
    out = experiments.colors(content, style, config, runner=run)
    assert list(out) == ["plain transfer", "luminance only", "histogram matching"]


def test_row_shows_results_with_their_timings(tiny):
    result = nst.Result(image=tiny[0], history=[{}] * 7, seconds=12.3)
    fig = experiments.row({"a": result, "b": tiny[1]}, timings=True)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "a" and fig.axes[0].get_xlabel() == "12 s, 7 evaluations"


def test_a_real_grid_with_random_weights(random_model, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    content, style = tiny
    config = nst.Config(size=32, steps=2, scales=1, weights="random")

    def run(c, s, cfg, **kw):
        return nst.cache.cached_transfer(c, s, cfg, model=random_model, **kw)

    fig = experiments.tradeoff_grid(content, style, config, ratios=(1e-4, 1e-2),
                                    layer_sets=[("conv1_1",), ("conv1_1", "conv2_1")], runner=run)
    assert len(fig.axes) == 4
    assert len(list(nst.cache.directory().glob("*.png"))) == 4


def test_settings_are_small_in_quick_mode(monkeypatch):
    quick, full = experiments.settings(quick=True), experiments.settings(quick=False)
    assert quick.size < full.size and quick.steps < full.steps and quick.large < full.large
    monkeypatch.setenv("NST_QUICK", "1")
    assert experiments.settings() == quick
    assert full.config.init == "noise" and full.config.weights == "caffe-normalized"
    assert replace(full, size=64).config.size == 64


def test_magnitudes_with_random_weights(random_model, tiny, monkeypatch):
    monkeypatch.setattr(experiments, "vgg19", lambda *a, **k: random_model)
    out = experiments.magnitudes(*tiny, weights="random", size=32)
    assert list(out) == ["content (noise)", *nst.STYLE_LAYERS]
    assert all(v >= 0 for v in out.values())


def test_the_package_does_not_import_experiments():
    code = "import sys, nst_lib; print('nst_lib.experiments' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_command_needs_precompute():
    assert experiments.main([]) == 2


def test_the_command_stops_at_an_interrupt_and_says_so(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "precompute", interrupted)
    assert experiments.main(["--precompute", "--quick"]) == 130
    assert "run the same command again" in capsys.readouterr().err
