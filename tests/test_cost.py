"""The cost of a run, known before it starts (nst_lib.cost)."""

import pytest
import torch

import nst_lib as nst
import nst_lib.cost as cost
import nst_lib.optimize as optimize_module
from nst_lib.__main__ import main


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


def test_largest_size_is_the_edge_of_the_limit():
    config = nst.Config()
    fits = cost.largest_size((300, 451), config, "cpu", torch.float32, 4000)
    shape = nst.image.target_shape(300, 451, fits)
    assert cost.estimate(shape, config).memory_mb <= 4000
    assert cost.estimate(nst.image.target_shape(300, 451, fits + 1), config).memory_mb > 4000


@pytest.fixture
def eight_gb(monkeypatch):
    """A machine with 8 GB free, on which nothing may be loaded or built."""
    monkeypatch.setattr(cost, "available_mb", lambda device="cpu": 8192.0)

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    monkeypatch.setattr(optimize_module, "vgg19", forbidden)
    monkeypatch.setattr(optimize_module.img, "load_image", forbidden)
    monkeypatch.setattr(optimize_module.img, "resize", forbidden)


def test_a_run_too_large_is_refused_before_any_work(eight_gb):
    with pytest.raises(ValueError, match=r"needs about .* GB .* 8\.0 GB is free; use size=\d+"):
        nst.transfer(nst.example("chelsea.png"), nst.example("starry_night.jpg"), size=20000)
    huge = torch.zeros(1, 3, 1, 1).expand(1, 3, 12000, 16000)  # a view: no memory
    with pytest.raises(ValueError, match="use size="):
        nst.transfer(huge, nst.example("starry_night.jpg"), size=None)


def test_the_command_line_refuses_it_in_one_line(eight_gb, capsys, tmp_path):
    code = main([str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
                 "-o", str(tmp_path / "out.png"), "--size", "20000"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    fits = int(err.split("--size ")[1].split(")")[0])
    assert 1000 < fits < 20000 and not (tmp_path / "out.png").exists()


def test_the_estimate_is_shown_before_the_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(optimize_module, "transfer", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    main([str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
          "-o", str(tmp_path / "out.png"), "--weights", "random"])
    assert "This run needs about" in capsys.readouterr().out
