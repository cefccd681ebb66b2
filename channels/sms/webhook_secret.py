"""The generic webhooks' shared secret when no environment variable gives one.

Generated once (`secrets.token_urlsafe(32)`) into `<data_dir>/sms-webhook-secret`, mode 0600
from the moment the file exists, and read again on every later start, so the gateway is set up
once with the file's content. Several processes starting at once agree on one secret: the file
is written under a temporary name and hard-linked into place, which fails for all but the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

SECRET_FILE = "sms-webhook-secret"


def _write_new(path: Path, secret: str) -> Path:
    """`secret` in a new 0600 file next to `path`; returns the temporary file's path."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, f"{secret}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("sms: %s was readable by others (mode %o); made 0600", path, mode)
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def load_or_create(data_dir: Path) -> tuple[str, Path]:
    """The secret kept in `data_dir` (created now if there is none) and the file's path."""
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        secret = _read(path)
        if secret:
            return secret, path
        logger.warning("sms: %s is empty; a new secret is written to it", path)
    fresh = secrets.token_urlsafe(32)
    tmp = _write_new(path, fresh)
    try:
        if path.exists():  # the empty one seen above
            os.replace(tmp, path)
            return fresh, path
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process was first: use its secret
            return _read(path), path
        return fresh, path
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
