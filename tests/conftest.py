import io
import os
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nst_lib as nst
import nst_lib.cost as cost
import nst_lib.optimize as optimize_module
from nst_lib.__main__ import main


@pytest.fixture(scope="session")
def random_model():
    """An untrained VGG19 (seeded): fast tests that do not need real features."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "untrained VGG19": tested in test_vgg.py
        return nst.vgg19("random", pooling="avg", device="cpu")


@pytest.fixture(scope="session")
def caffe_model():
    """The paper's VGG19 (fetched and cached on first use)."""
    return nst.vgg19("caffe", pooling="avg", device="cpu")


@pytest.fixture
def tiny():
    """A content and a style image of different sizes, (1, 3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(12345)  # not the noise init's seed
    return torch.rand(1, 3, 32, 48, generator=g), torch.rand(1, 3, 40, 40, generator=g)


START_TOGETHER = '''
import sys
import time
from pathlib import Path


def start_together():
    """Wait until the other process is ready too, so that both go on at the same moment."""
    Path(sys.argv[1]).touch()
    while not Path(sys.argv[2]).exists():
        time.sleep(0.01)
'''


@pytest.fixture
def two_processes(tmp_path):
    """``run(script, **env)`` runs a Python script in two processes at once and returns
    (exit code, stdout, stderr) of each. The script calls ``start_together()`` right before
    the part the two should race on; ``env`` is added to the environment."""
    root = Path(__file__).resolve().parent.parent

    def run(script: str, **env) -> list[tuple[int, str, str]]:
        path = tmp_path / "race.py"
        path.write_text(START_TOGETHER + textwrap.dedent(script))
        go, ready = tmp_path / "go", [tmp_path / f"ready{i}" for i in range(2)]
        environ = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", **env}
        procs = [subprocess.Popen([sys.executable, str(path), str(r), str(go)], env=environ,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in ready]
        deadline = time.monotonic() + 300
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):  # one failed early: see its stderr
                break
            time.sleep(0.05)
        go.touch()
        outputs = [p.communicate(timeout=300) for p in procs]
        return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]

    return run


# ---------------------------------------------------------------------------- image files


def _png(path, width, height, *, depth=8, colour=2, rows=b""):
    """A PNG written by hand: any header (even 100000 x 100000) for the cost of a few bytes."""
    def chunk(kind, data):
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def _photo(width=48, height=32):
    """A picture with a gradient and a few edges (JPEG-friendly, not a flat colour)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / width, 255 * y / height, 128 + 100 * ((x // 8 + y // 8) % 2)], -1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


def _truncated(path, fmt):
    """The first half of a 64x48 picture's file: the header is whole, the pixels are not."""
    buffer = io.BytesIO()
    _photo(64, 48).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.fixture
def png():
    """``png(path, width, height, depth=8, colour=2, rows=b"")`` writes a PNG by hand."""
    return _png


@pytest.fixture
def photo():
    """``photo(width, height)``: a PIL picture with a gradient and edges."""
    return _photo


@pytest.fixture
def truncated():
    """``truncated(path, "JPEG" or "PNG")`` writes half of a picture's file."""
    return _truncated


BAD_IMAGE_FILES = {  # name: (make the file in a folder, what the error says)
    "missing": (lambda d: d / "missing.jpg", "no such file; check the path"),
    "directory": (lambda d: d, "is a directory; give the path of an image file"),
    "not an image": (lambda d: (d / "notes.jpg").write_text("hello") and d / "notes.jpg",
                     "is not a readable image (not a format PIL knows); use a JPEG, PNG or "
                     "WebP file"),
    "truncated JPEG": (lambda d: _truncated(d / "half.jpg", "JPEG"), "is damaged or incomplete"),
    "truncated PNG": (lambda d: _truncated(d / "half.png", "PNG"), "is damaged or incomplete"),
    "empty": (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png",
              "is empty (0 bytes)"),
    "100000 x 100000 header": (lambda d: _png(d / "bomb.png", 100_000, 100_000),
                               "more pixels than PIL's safety limit of 178,956,970"),
}


@pytest.fixture(params=BAD_IMAGE_FILES)
def bad_image_file(request, tmp_path):
    """Each kind of file that is not a usable image, in tmp_path: (path, what the error says)."""
    make, message = BAD_IMAGE_FILES[request.param]
    return make(tmp_path), message


@pytest.fixture
def pics(tmp_path):
    """A content and a style file of different sizes and aspect ratios."""
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    _photo(48, 32).save(content)
    _photo(30, 44).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(style)
    return content, style


# ---------------------------------------------------------------------------- the command line


@pytest.fixture
def cli(capsys):
    """Run the command line in this process, quickly: (exit code, stdout, stderr).

    Untrained weights on the CPU, 32 px, 2 evaluations, one scale; the arguments given come
    after these, so they win. No traceback may reach stderr."""
    def run(*args):
        fast = ["--weights", "random", "--device", "cpu", "--quiet", "--size", "32",
                "--steps", "2", "--scales", "1"]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="weights='random'")
            try:
                code = main([*fast, *map(str, args)])
            except SystemExit as exit:  # argparse's errors end the program there
                code = exit.code
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err
    return run


def _one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def one_error_line():
    """``one_error_line(stderr)``: its only line, which must start with ``error: ``."""
    return _one_error_line


@pytest.fixture
def eight_gb(monkeypatch):
    """A machine with 8 GB free, on which nothing may be loaded or built."""
    monkeypatch.setattr(cost, "available_mb", lambda device="cpu": 8192.0)

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    monkeypatch.setattr(optimize_module, "vgg19", forbidden)
    monkeypatch.setattr(optimize_module.img, "load_image", forbidden)
    monkeypatch.setattr(optimize_module.img, "resize", forbidden)


# ---------------------------------------------------------------------------- weights files


class _Payload:
    """A pickle that runs code when loaded: it creates a folder."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture
def pickle_with_code(tmp_path):
    """A weights file whose pickle runs code when loaded unsafely: (path, the folder that
    code would create)."""
    marker, path = tmp_path / "the code ran", tmp_path / "weights.pth"
    torch.save({"state_dict": {"0.weight": _Payload(marker)}, "preprocessing": "caffe"}, path)
    return path, marker
