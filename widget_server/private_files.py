"""Files of the data dir are private to the server's user: the database, the signing secret, the demo's keys and
spilled events hold tenants' data and secrets (the default umask would make them world-readable)."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """The directory, made (with its parents) readable by this user only when it does not exist yet."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """The file, created empty with mode 0600 when missing, and made 0600 when it exists with more."""
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    os.close(fd)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path
