import subprocess
import sys
import warnings

import pytest
import torch

import nst_lib as nst
from nst_lib.__main__ import main


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nst_lib", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["missing.jpg", "data/starry_night.jpg"], "missing.jpg: no such file"),
    (["data", "data/starry_night.jpg"], "is a directory"),
    (["data/README.md", "data/starry_night.jpg"], "not a readable image"),
    (["data/chelsea.png", "data/starry_night.jpg", "--style-layers", "conv1_1,conv6_1"],
     "Unknown layer name conv6_1; valid names are"),
    (["data/chelsea.png", "data/starry_night.jpg", "--steps", "0"], "steps must be at least 1"),
    (["data/chelsea.png", "data/starry_night.jpg", "-o", "no/such/dir/out.png"], "does not exist"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(args, message):
    done = _cli(*args, "--weights", "random")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_run_writes_the_png(tmp_path, capsys):
    out = tmp_path / "out.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["data/chelsea.png", "data/starry_night.jpg", "-o", str(out), "--size", "48",
                     "--steps", "3", "--weights", "random", "--quiet", "--device", "cpu"])
    assert code == 0 and f"Wrote {out}" in capsys.readouterr().out
    assert nst.load_image(out).shape == (1, 3, 32, 48)


def test_ctrl_c_still_writes_the_image_so_far(tmp_path, monkeypatch, capsys):
    import nst_lib.optimize as opt

    real = opt.Targets.losses

    def interrupted_after_two(self, *args, _calls=[]):
        _calls.append(1)
        if len(_calls) > 2:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(opt.Targets, "losses", interrupted_after_two)
    out = tmp_path / "out.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["data/chelsea.png", "data/starry_night.jpg", "-o", str(out), "--size", "48",
                     "--steps", "50", "--weights", "random", "--quiet", "--device", "cpu"])
    assert code == 130 and "Interrupted after 2 evaluations" in capsys.readouterr().out
    assert out.is_file() and nst.load_image(out).std() > 0.01


@pytest.mark.slow
def test_caffe_stylisation_from_the_command_line(tmp_path):
    out = tmp_path / "cat.png"
    done = _cli("data/chelsea.png", "data/starry_night.jpg", "-o", str(out), "--size", "96",
                "--steps", "30", "--quiet")
    assert done.returncode == 0, done.stderr
    result = nst.load_image(out)
    content = nst.load_image("data/chelsea.png", 96)
    assert result.shape == content.shape and not torch.allclose(result, content, atol=0.05)
