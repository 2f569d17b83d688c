import json

import pytest
import torch

import nst_lib as nst
from nst_lib import cache


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    return tmp_path


class Runner:
    """Stands in for nst.transfer: counts its calls, returns a fixed picture and history."""

    def __init__(self, stop_reason="steps"):
        self.calls, self.stop_reason = 0, stop_reason

    def __call__(self, content, style, config=None, **kwargs):
        self.calls += 1
        image = torch.linspace(0, 1, 3 * 16 * 20).reshape(1, 3, 16, 20)
        history = [{"step": 1, "loss": 2.5, "content": 1.0, "style": 1.5e-3,
                    "layers": {"conv4_2": 1.0, "conv1_1": 0.0015}, "seconds": 0.1, "scale": 0}]
        return nst.Result(image=image, history=history, stop_reason=self.stop_reason,
                          seconds=0.25, config=config)


def test_the_folder_is_under_the_cache_dir(cache_in_tmp):
    assert cache.directory() == cache_in_tmp / "results"


def test_same_settings_hit_without_running(tiny):
    content, style = tiny
    run = Runner()
    first = cache.cached_transfer(content, style, size=32, steps=2, runner=run)
    again = cache.cached_transfer(content.clone(), style.clone(), nst.Config(size=32, steps=2),
                                  runner=run)
    assert run.calls == 1
    assert torch.allclose(again.image, first.image, atol=0.5 / 255)  # stored as 8-bit PNG
    assert again.history == first.history and again.seconds == 0.25
    assert again.stop_reason == "steps" and again.config == nst.Config(size=32, steps=2)


@pytest.mark.parametrize("change", [dict(alpha=2.0), dict(steps=3), dict(weights="random"),
                                    dict(style_layers=("conv1_1",)), dict(init="noise"),
                                    dict(pooling="max"), dict(seed=1)])
def test_a_changed_setting_misses(tiny, change):
    content, style = tiny
    run = Runner()
    cache.cached_transfer(content, style, size=32, steps=2, runner=run)
    cache.cached_transfer(content, style, **{"size": 32, "steps": 2, **change}, runner=run)
    assert run.calls == 2


def test_runs_with_other_loss_functions_are_never_stored(tiny, cache_in_tmp):
    content, style = tiny
    run = Runner()
    doubled = nst.LossFunctions(content_loss=lambda f, p: 2 * nst.content_loss(f, p))
    for functions in (doubled, doubled):
        cache.cached_transfer(content, style, size=32, steps=2, runner=run, functions=functions)
    assert run.calls == 2 and not list(cache_in_tmp.rglob("*.json"))
    for functions in (None, nst.LossFunctions()):  # the library's own are cached
        kwargs = {} if functions is None else {"functions": functions}
        cache.cached_transfer(content, style, size=32, steps=2, runner=run, **kwargs)
    assert run.calls == 3


def test_a_changed_image_misses(tiny):
    content, style = tiny
    run = Runner()
    cache.cached_transfer(content, style, runner=run)
    changed = content.clone()
    changed[0, 0, 0, 0] += 0.01
    cache.cached_transfer(changed, style, runner=run)
    cache.cached_transfer(content, [style, content], runner=run)  # another style image
    assert run.calls == 3
    cache.cached_transfer(content, [style], runner=run)  # one style, in a list or not
    assert run.calls == 3


def test_files_are_hashed_by_their_pixels(tmp_path, tiny):
    content, style = tiny
    path = nst.save_image(content, tmp_path / "c.png")
    assert cache.image_hash(path) == cache.image_hash(nst.load_image(path))
    assert cache.image_hash(path) != cache.image_hash(style)


def test_every_setting_is_part_of_the_key(tiny):
    content, style = tiny
    base = cache.key(content, style, nst.Config())
    for change in (dict(init="style"), dict(seed=1), dict(steps=(100, 40, 16)),
                   dict(per_position=False), dict(precision="float32")):
        assert cache.key(content, style, nst.Config(**change)) != base, change
    assert cache.key(content, style, nst.Config()) == base


def test_history_round_trips_through_json(tiny):
    content, style = tiny
    run = Runner()
    stored = cache.cached_transfer(content, style, runner=run)
    loaded = cache.lookup(content, style)
    assert loaded is not None and loaded.history == stored.history
    files = sorted(p.suffix for p in cache.directory().iterdir())
    assert files == [".json", ".png"]
    assert json.loads(next(cache.directory().glob("*.json")).read_text())["stop_reason"] == "steps"


@pytest.mark.parametrize("reason", ["stopped", "diverged"])
def test_incomplete_runs_are_not_stored(tiny, reason):
    content, style = tiny
    run = Runner(stop_reason=reason)
    assert cache.cached_transfer(content, style, runner=run).stop_reason == reason
    cache.cached_transfer(content, style, runner=run)
    assert run.calls == 2 and cache.lookup(content, style) is None


def test_an_interrupt_ends_a_loop_of_runs_and_keeps_the_finished_ones(tiny):
    content, style = tiny
    done, interrupted = Runner(), Runner(stop_reason="interrupted")
    cache.cached_transfer(content, style, steps=1, runner=done)
    with pytest.raises(KeyboardInterrupt):
        for steps in (1, 2, 3):  # the second run is interrupted: the third never starts
            cache.cached_transfer(content, style, steps=steps,
                                  runner=done if steps == 1 else interrupted)
    assert interrupted.calls == 1
    assert cache.lookup(content, style, steps=1) is not None
    assert cache.lookup(content, style, steps=2) is None


def test_refresh_and_clear(tiny):
    content, style = tiny
    run = Runner()
    cache.cached_transfer(content, style, runner=run)
    cache.cached_transfer(content, style, runner=run, refresh=True)
    assert run.calls == 2
    assert cache.clear() == 1 and cache.lookup(content, style) is None


def test_a_damaged_entry_is_computed_again(tiny):
    content, style = tiny
    run = Runner()
    cache.cached_transfer(content, style, runner=run)
    next(cache.directory().glob("*.json")).write_text("{not json")
    cache.cached_transfer(content, style, runner=run)
    assert run.calls == 2


def test_a_real_run_is_cached(random_model, tiny):
    content, style = tiny
    kw = dict(size=32, steps=2, scales=1, weights="random", progress=False, model=random_model)
    first = cache.cached_transfer(content, style, **kw)
    assert len(first.history) == 2 and len(list(cache.directory().glob("*.png"))) == 1
    again = cache.cached_transfer(content, style, **kw)
    assert again.history == first.history
    assert torch.allclose(again.image, first.image, atol=0.5 / 255 + 1e-6)
