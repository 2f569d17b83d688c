"""Writing a file so that it is either complete or not there: one helper for every writer."""

from __future__ import annotations

import contextlib
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
