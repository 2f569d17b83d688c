import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


# ------------------------------------------------ a cache folder that cannot be written

def test_a_cache_folder_that_is_a_file_is_said_and_the_result_kept_elsewhere(tmp_path,
                                                                              monkeypatch, tiny):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "a-file"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    content, style = tiny
    run = Runner()
    with pytest.warns(UserWarning, match=r"Results are stored in .*home.* not in .*a-file/results:"
                      r" .*a-file is a file, not a folder; set NST_CACHE to a folder"):
        cache.cached_transfer(content, style, runner=run)
    assert cache.lookup(content, style) is not None and run.calls == 1
    assert cache.directory() == tmp_path / "home" / ".cache" / "nst_lib" / "results"


def test_a_full_disk_keeps_the_result_and_says_so(monkeypatch, tiny, cache_in_tmp):
    from PIL import Image

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    content, style = tiny
    with pytest.warns(UserWarning, match=r"The result was not stored: Cannot write .*: the disk "
                      r"is full \(No space left on device\); free some space on it"):
        result = cache.cached_transfer(content, style, runner=Runner())
    assert result.stop_reason == "steps" and result.image.shape == (1, 3, 16, 20)
    assert not list(cache_in_tmp.rglob("*.png")) and not list(cache_in_tmp.rglob("*.part"))


def test_with_no_folder_to_write_the_result_is_returned_with_a_warning(monkeypatch, tiny):
    monkeypatch.setattr(cache, "_writable", lambda folder: PermissionError(
        errno.EACCES, "Permission denied"))
    content, style = tiny
    with pytest.warns(UserWarning, match="Results cannot be stored: .* is not writable for you"):
        result = cache.cached_transfer(content, style, runner=Runner())
    assert result.stop_reason == "steps"


def test_a_tilde_in_nst_cache_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NST_CACHE", "~/shared")
    assert cache.directory() == tmp_path / "home" / "shared" / "results"


STUDENT = """
import json, os, sys, warnings
import torch
import nst_lib as nst
from nst_lib import cache

shared = os.environ["NST_CACHE"]
try:  # the test proves nothing unless this user truly cannot write the shared folder
    open(os.path.join(shared, "results", "probe"), "w")
    sys.exit("the shared folder is writable for this user")
except PermissionError:
    pass
g = torch.Generator().manual_seed(0)
content, style = torch.rand(1, 3, 32, 48, generator=g), torch.rand(1, 3, 40, 40, generator=g)
calls = []
def runner(content, style, config=None, **kwargs):
    calls.append(config.steps)
    return nst.Result(image=torch.full((1, 3, 16, 16), 0.5), history=[], stop_reason="steps",
                      seconds=0.1, config=config)
with warnings.catch_warnings():
    warnings.simplefilter("error")  # a warning fails the run, as a traceback would
    for steps in (2, 3, 3):  # 2: the instructor's; 3: new, then read back
        cache.cached_transfer(content, style, size=32, steps=steps, weights="random", runner=runner)
    print(json.dumps({"calls": calls, "directory": str(cache.directory()),
                      "stored": sorted(os.listdir(cache.directory())), "cleared": cache.clear()}))
"""
NOBODY = 65534


def _as_nobody(code: str, env: dict) -> dict:
    """Run ``code`` as the user nobody (setpriv); its JSON output."""
    root = str(Path(nst.__file__).resolve().parents[1])
    done = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": root, "OMP_NUM_THREADS": "1",
             "MPLCONFIGDIR": env["TMPDIR"], **env},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run the student as another user (root "
                           "itself writes into any folder, whatever its permission bits)")
@pytest.mark.parametrize("home", ["own", "none"])
def test_a_class_reads_the_shared_cache_and_writes_its_own(tiny, monkeypatch, home):
    """The instructor (root here) fills a shared cache; the student (nobody) reads it, and
    stores its new run in its own folder (its home, or without one the temporary folder),
    with no setting, no warning and no traceback."""
    base = Path(tempfile.mkdtemp(prefix="nst-class-"))  # /tmp: nobody can reach it
    try:
        base.chmod(0o755)
        shared, own, tmp = base / "shared", base / "home", base / "tmp"
        for folder in (own, tmp):
            folder.mkdir()
            os.chown(folder, NOBODY, NOBODY)
        monkeypatch.setenv("NST_CACHE", str(shared))
        g = torch.Generator().manual_seed(0)  # the student's images, as in STUDENT
        content, style = torch.rand(1, 3, 32, 48, generator=g), torch.rand(1, 3, 40, 40, generator=g)
        cache.cached_transfer(content, style, size=32, steps=2, weights="random", runner=Runner())
        entries = sorted(p.name for p in (shared / "results").iterdir())
        env = {"NST_CACHE": str(shared), "TMPDIR": str(tmp),
               "HOME": str(own) if home == "own" else "/nonexistent"}
        report = _as_nobody(STUDENT, env)
        assert report["calls"] == [3]  # the shared result read, the new one computed once
        expected = (own / ".cache/nst_lib/results" if home == "own"
                    else tmp / f"nst_lib-{NOBODY}" / "results")
        assert report["directory"] == str(expected) and len(report["stored"]) == 2
        assert report["cleared"] == 1  # its own; the shared ones stay
        assert sorted(p.name for p in (shared / "results").iterdir()) == entries
    finally:
        shutil.rmtree(base)
