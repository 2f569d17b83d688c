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


# ------------------------------------------------ the style images: their size and number

@pytest.fixture
def nothing_decoded(eight_gb, monkeypatch):
    """eight_gb, and no image file may be decoded (the check reads headers only)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("an image was decoded before the refusal")

    monkeypatch.setattr(nst.image, "_read", forbidden)


def _named(message: str, option: str) -> int:
    """The number a refusal names for ``option`` ("style_size" or "size")."""
    return int(message.split(f" {option}=")[1].split(" ")[0])


def test_a_style_image_too_large_is_refused_naming_the_style_size_that_fits(nothing_decoded):
    photo, painting = nst.example("chelsea.png"), nst.example("starry_night.jpg")
    with pytest.raises(ValueError, match=r"^A 64x43 px run with a 60000x\d+ px style image "
                       r"needs about .* GB .* 8\.0 GB is free; use style_size=\d+ "
                       r"\(--style-size \d+\) or less") as refused:
        nst.transfer(photo, painting, size=64, style_size=60000)
    fits = _named(str(refused.value), "style_size")
    assert 1000 < fits < 60000 and "\n" not in str(refused.value)
    nst.check_cost(photo, painting, nst.Config(size=64, style_size=fits))  # it does fit
    with pytest.raises(ValueError, match="use style_size="):
        nst.check_cost(photo, painting, nst.Config(size=64, style_size=2 * fits))


def test_the_number_of_style_images_blended_counts(nothing_decoded):
    photo, painting = nst.example("chelsea.png"), nst.example("starry_night.jpg")
    config = nst.Config(size=64, style_size=2000)
    nst.check_cost(photo, [painting] * 2, config)
    with pytest.raises(ValueError, match=r"with 200 style images of up to 2000x\d+ px needs "
                       r".* use style_size=\d+"):
        nst.transfer(photo, [painting] * 200, config)
    with pytest.raises(ValueError, match=r"with 1000 style images .* use size=\d+"):
        nst.transfer(photo, [painting] * 1000, size=1024)  # styles at size: size is named


def test_a_large_style_tensor_counts_at_its_style_size(eight_gb):
    photo = torch.rand(1, 3, 32, 48)
    huge = torch.zeros(1, 3, 1, 1).expand(1, 3, 12000, 16000)  # a view: no memory
    nst.check_cost(photo, huge, nst.Config(size=64))  # resized to 64 px: fits
    with pytest.raises(ValueError, match=r"16000x12000 px style image .* use style_size="):
        nst.transfer(photo, huge, size=64, style_size=16000)


def test_both_sizes_are_named_when_both_are_too_large(nothing_decoded):
    photo, painting = nst.example("chelsea.png"), nst.example("starry_night.jpg")
    with pytest.raises(ValueError, match=r"use size=\d+ \(--size \d+\) and style_size=\d+ "
                       r"\(--style-size \d+\) or less") as refused:
        nst.transfer(photo, painting, size=20000, style_size=60000)
    size, style_size = _named(str(refused.value), "size"), _named(str(refused.value), "style_size")
    nst.check_cost(photo, painting, nst.Config(size=size, style_size=style_size))


def test_the_file_decoded_counts_not_only_the_run(monkeypatch, tmp_path):
    """A file is decoded at its own size before it is resized: on a machine with little
    free memory, a photo of many megapixels is refused before it is opened in full."""
    big = tmp_path / "big.png"
    from PIL import Image

    Image.new("RGB", (4000, 3000)).save(big)
    config = nst.Config(size=64)
    base = nst.check_cost(big, None, config).memory_mb
    small = tmp_path / "small.png"
    Image.new("RGB", (400, 300)).save(small)
    assert base - nst.check_cost(small, None, config).memory_mb > 12e6 * 17 / 2**20


def test_the_explorer_refuses_a_style_too_large_in_its_status_line(monkeypatch, random_model):
    from nst_lib import widgets

    monkeypatch.setattr(cost, "available_mb", lambda device="cpu": 8192.0)
    monkeypatch.setattr(widgets.Explorer, "_transfer", lambda *a, **k: pytest.fail("ran"))
    explorer = widgets.Explorer(torch.rand(1, 3, 32, 48), torch.rand(1, 3, 1000, 1000),
                                config=nst.Config(style_size=60000), model=random_model,
                                size=64, steps=2)
    explorer.run()
    assert explorer.thread is None and isinstance(explorer.error, ValueError)
    assert "use style_size=" in str(explorer.error) and "60000x60000 px style" in str(explorer.error)
    assert "use style_size=" in explorer.status.value and "use style_size=" in explorer.cost.value


# ------------------------------------------------ a container's memory limit

def test_a_cgroup_limit_is_the_memory_free(tmp_path, monkeypatch):
    (tmp_path / "memory.max").write_text(f"{2 * 2**30}\n")
    (tmp_path / "memory.current").write_text(f"{2**29}\n")
    assert cost._cgroup_free_mb(str(tmp_path)) == 1536
    (tmp_path / "memory.max").write_text("max\n")
    assert cost._cgroup_free_mb(str(tmp_path)) is None
    monkeypatch.setattr(cost, "_cgroup_free_mb", lambda: 1536.0)
    monkeypatch.setattr(cost, "_meminfo_available_mb", lambda: 64000.0)
    assert cost.available_mb() == 1536.0
    with pytest.raises(ValueError, match=r"1\.5 GB is free; use size="):
        nst.check_cost(nst.example("chelsea.png"), nst.example("starry_night.jpg"),
                       nst.Config(size=1024))


@pytest.mark.parametrize("style, config, option, least", [
    ((1, 3, 60, 80), dict(size=64, style_size=8), "style_size", 21),
    ((1, 3, 3, 300), dict(size=64, style_size=64), "style_size", 1550),
])
def test_a_style_image_too_small_names_its_own_option(style, config, option, least):
    """The style image's size is its own option: too small, the message names it, and the
    smallest value that works."""
    with pytest.raises(nst.ImageError, match=rf"The style image would be .* pixels at {option}="
                       rf".* use {option}={least} \(--{option.replace('_', '-')} {least}\) or more"):
        nst.check_cost(torch.rand(1, 3, 64, 64), torch.rand(*style), nst.Config(**config))
    nst.check_cost(torch.rand(1, 3, 64, 64), torch.rand(*style), nst.Config(**{**config, option: least}))
