"""Writing a file so that it is either complete or not there, and saying in words why a
folder could not be written: one helper each for every writer."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; when the block ends without an
    error, rename it to ``path`` (replacing any older file), else delete it.

    A failed or interrupted write never leaves a half-written file under ``path``, and an
    older file of that name stays intact until the new one is complete. The file is made
    readable by everyone (0644), as a file in a shared cache must be.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp makes files private (0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_problem(folder: str | os.PathLike, err: OSError, other: str) -> str:
    """Why writing in ``folder`` failed with ``err``, and what to do, in words that fit
    the cause: a full disk needs space, a read-only folder another folder, a file where a
    folder should be another path. ``other`` says how to name another folder ("set
    NST_CACHE to", "choose"); e.g. "the disk is full (No space left on device); free some
    space on it, or set NST_CACHE to a folder on another disk"."""
    folder, code, reason = Path(folder), err.errno, err.strerror or str(err)
    if code == errno.ENOSPC:
        return (f"the disk is full ({reason}); free some space on it, or {other} a folder "
                "on another disk")
    if code == errno.EDQUOT:
        return (f"your disk quota is used up ({reason}); delete files you do not need, or "
                f"{other} a folder on another disk")
    if code == errno.EROFS:
        return f"{folder} is on a read-only disk ({reason}); {other} a folder you can write"
    if code in (errno.EACCES, errno.EPERM):
        return f"{folder} is not writable for you ({reason}); {other} a folder you can write"
    if code in (errno.EEXIST, errno.ENOTDIR):
        file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
                    folder)
        return f"{file} is a file, not a folder; {other} a folder (or move the file away)"
    if code == errno.ENOENT:
        return f"{folder} does not exist; create it, or {other} a folder that exists"
    if code == errno.ENAMETOOLONG:
        return f"a name in the path is too long ({reason}); use a shorter one"
    return f"{reason}; {other} another folder"
