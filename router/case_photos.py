"""Photos of cases: which files a case's photo references name, read safely, and new ones kept.

A case's `photos` (a JSON list in its hash) holds references of four kinds:

| reference                    | what it is                                 | file under data_dir |
|------------------------------|--------------------------------------------|---------------------|
| `<ix id>/<name>`             | the web form's photo (channels/webform)    | uploads/...         |
| `case-<case id>/<name>`      | a photo a unit member added to the case    | uploads/...         |
| `attachments/<ix id>/<name>` | an image attached to the resident's e-mail | attachments/...     |
| `http(s)://...`              | an Open311 client's `media_url`: a link    | none: never fetched |

A reference is resolved only to a regular file exactly two levels below one of the two roots:
each segment must look like a name we write (letters, digits, `.`, `_`, `-`, not starting with
a dot: no `..`, no absolute path, no separators), and the file is opened relative to the root's
directory descriptor with O_NOFOLLOW on every step, so neither a crafted reference nor a symlink
planted under the data directory reaches a file outside it.

What a file is comes from its first bytes, never from its name or what a sender declared: JPEG,
PNG, WebP and GIF are photos; anything else (a PDF, an HTML page renamed .jpg) is not and is never
served as one. The same sniffing decides which e-mail attachments become a case's photos, and
which web-form uploads are accepted (channels/webform/validation.py calls `sniff`).

`media_url` is kept as a link and never fetched by the server: fetching URLs that outsiders
choose would let any Open311 client make the city's server request internal addresses (SSRF:
the Redis port, cloud metadata, intranet pages) and store whatever came back as "photos". Staff
open the link in their own browser instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

UPLOADS = "uploads"
ATTACHMENTS = "attachments"
# The prefix of an e-mail attachment's reference (`attachments/<ix id>/<name>`).
ATTACHMENT_PREFIX = ATTACHMENTS + "/"

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}
# The longest signature below (WebP: "RIFF" size "WEBP") is 12 bytes.
HEAD_BYTES = 16
# Never read more than this into memory for one answer, whatever the file on disk says.
MAX_SERVED_BYTES = 50 * 1024 * 1024
# What the server writes and reads: a name, not a path (no "/", no "..", no leading dot).
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_URL = re.compile(r"^https?://[^\s/]+[^\s]*$")
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class PhotoMissing(Exception):
    """No photo file for the reference: not a file reference, unsafe, gone, or not an image."""


def sniff(head: bytes) -> str | None:
    """The content type of an image from its first bytes; None for anything else."""
    if head[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def is_link(ref: str) -> bool:
    """An external reference (an Open311 media_url): shown as a link, never fetched."""
    return bool(_URL.match(ref))


def split_ref(ref: str) -> tuple[str, str, str] | None:
    """(root, directory, name) of a file reference; None for a link or anything unsafe."""
    if not isinstance(ref, str) or is_link(ref):
        return None
    root = UPLOADS
    if ref.startswith(ATTACHMENT_PREFIX):
        root, ref = ATTACHMENTS, ref[len(ATTACHMENT_PREFIX):]
    parts = ref.split("/")
    if len(parts) != 2 or not all(_SEGMENT.fullmatch(p) and ".." not in p for p in parts):
        return None
    return root, parts[0], parts[1]


@dataclass(frozen=True)
class Photo:
    data: bytes
    content_type: str


def _open_below(data_dir: Path, root: str, directory: str, name: str | None = None) -> int:
    """A descriptor of data_dir/root/directory[/name], no symlink followed below data_dir/root.
    The caller closes it. OSError when anything is missing or a symlink."""
    root_fd = os.open(Path(data_dir) / root, _OPEN_DIR)
    try:
        dir_fd = os.open(directory, _OPEN_DIR, dir_fd=root_fd)
    finally:
        os.close(root_fd)
    if name is None:
        return dir_fd
    try:
        return os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def read_photo(data_dir: Path, ref: str, max_bytes: int = MAX_SERVED_BYTES) -> Photo:
    """The bytes and sniffed content type of the photo `ref` names (blocking: run it in a
    thread). PhotoMissing for a link, an unsafe reference, a missing file, a file that is not
    a regular file, larger than `max_bytes`, or not an image."""
    parts = split_ref(ref)
    if parts is None:
        raise PhotoMissing(f"{ref!r} is not a file reference")
    try:
        fd = _open_below(data_dir, *parts)
    except OSError as exc:
        raise PhotoMissing(f"{ref}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PhotoMissing(f"{ref} is not a regular file")
        if st.st_size > max_bytes:
            raise PhotoMissing(f"{ref} is larger than {max_bytes} bytes")
        data = f.read(max_bytes + 1)
    kind = sniff(data[:HEAD_BYTES])
    if kind is None or len(data) > max_bytes:
        raise PhotoMissing(f"{ref} is not a JPEG, PNG, WebP or GIF image")
    return Photo(data, kind)


def image_attachments(data_dir: Path, ix_id: str) -> list[str]:
    """References of the e-mail attachments of interaction `ix_id` that are images (by their
    bytes), in the order they were saved (blocking: run it in a thread). The adapter keeps them
    in data_dir/attachments/<ix id>/, the first message's and the replies' alike."""
    if not _SEGMENT.fullmatch(ix_id or ""):
        return []
    try:
        dir_fd = _open_below(data_dir, ATTACHMENTS, ix_id)
    except OSError:
        return []  # no attachments kept
    found: list[tuple[int, str]] = []
    try:
        for name in os.listdir(dir_fd):
            if not _SEGMENT.fullmatch(name):
                continue
            try:
                fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
            except OSError:
                continue  # a symlink, or gone meanwhile
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if stat.S_ISREG(st.st_mode) and sniff(f.read(HEAD_BYTES)):
                    found.append((st.st_mtime_ns, name))
    finally:
        os.close(dir_fd)
    return [f"{ATTACHMENT_PREFIX}{ix_id}/{name}" for _t, name in sorted(found)]


def save_upload(data_dir: Path, case_id: str, data: bytes, content_type: str) -> str:
    """Write an added photo to data_dir/uploads/case-<case id>/photo-<random>.<ext> and return
    its reference (blocking: run it in a thread). Written to a temporary name and renamed, so a
    reader never sees half a file."""
    directory = f"case-{case_id}"
    if content_type not in EXTENSIONS or not _SEGMENT.fullmatch(directory):
        raise ValueError(f"cannot store a {content_type} photo for case {case_id!r}")
    target = Path(data_dir) / UPLOADS / directory
    target.mkdir(parents=True, exist_ok=True)
    name = f"photo-{secrets.token_hex(12)}.{EXTENSIONS[content_type]}"
    tmp = target / f".{name}.part"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target / name)
    return f"{directory}/{name}"


def remove_upload(data_dir: Path, ref: str) -> None:
    """Remove an added photo that was not recorded on its case (the script refused)."""
    parts = split_ref(ref)
    if parts is None or parts[0] != UPLOADS:
        return
    with contextlib.suppress(OSError):
        (Path(data_dir) / UPLOADS / parts[1] / parts[2]).unlink()
