"""Where a sweep's files go: a local experiment dir (atomic temp-name + rename) or a URI (s3://, gs://) through
pyarrow's filesystems, the ones Ray Tune itself writes trials with (an S3-compatible server such as MinIO:
$AWS_ENDPOINT_URL). A remote object is written in one request or one multipart upload, which the store makes
visible whole or not at all: the remote twin of the temp-name + rename."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from makd.errors import UsageError
from makd.files import atomic_write_bytes

CHECKPOINT_PREFIX = "checkpoint_"  # Ray's checkpoint folders: weights and optimizer state, not needed for tables


def is_remote_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


def _filesystem(root: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(root)


def write_bytes(root: str, name: str, data: bytes) -> str:
    """Write root/name atomically (local) or in one upload (s3://, gs:// via pyarrow.fs)."""
    if is_remote_uri(root):
        filesystem, base = _filesystem(root)
        parent = f"{base}/{name}".rsplit("/", 1)[0]
        filesystem.create_dir(parent, recursive=True)
        with filesystem.open_output_stream(f"{base}/{name}") as out:
            out.write(data)
        return f"{root}/{name}"
    path = Path(root) / name
    atomic_write_bytes(path, data)
    return str(path)


def read_bytes(root: str, name: str) -> bytes | None:
    """root/name's bytes, local or remote; None when it does not exist."""
    if not exists(root, name):
        return None
    if not is_remote_uri(root):
        return (Path(root) / name).read_bytes()
    filesystem, base = _filesystem(root)
    with filesystem.open_input_stream(f"{base}/{name}") as stream:
        return stream.read()


def exists(root: str, name: str) -> bool:
    """Whether root/name exists (a file or a folder), local or remote."""
    if not is_remote_uri(root):
        return (Path(root) / name).exists()
    from pyarrow import fs

    filesystem, base = _filesystem(root)
    return filesystem.get_file_info(f"{base}/{name}").type != fs.FileType.NotFound


def check_writable(root: str) -> None:
    """Refuse, in one line and before Ray starts, a remote storage the sweep could not write its results to: a
    missing bucket, no credentials, a server that does not answer."""
    if not is_remote_uri(root):
        return
    probe = ".makd-write-probe"
    try:
        write_bytes(root, probe, b"makd")
        filesystem, base = _filesystem(root)
        filesystem.delete_file(f"{base}/{probe}")
    except Exception as err:  # pyarrow raises OSError/ValueError/ArrowInvalid with the store's own message
        problem = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UsageError("storage", f"cannot write to {root} ({problem}); check the URI, the credentials "
                                    "(AWS_* or GOOGLE_APPLICATION_CREDENTIALS) and, for an S3-compatible server, "
                                    "AWS_ENDPOINT_URL") from None


def download(root: str, dest: Path, *, keep=lambda relative: CHECKPOINT_PREFIX not in relative) -> Path:
    """Copy a remote experiment dir's files whose path relative to it passes `keep` (default: everything but
    Ray's checkpoint folders) into `dest`; UsageError when there is nothing there."""
    from pyarrow import fs

    filesystem, base = _filesystem(root)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    except (FileNotFoundError, OSError) as err:
        raise UsageError(root, f"cannot read it ({(str(err).splitlines() or [''])[0]})") from None
    files = [i for i in infos if i.type == fs.FileType.File and keep(i.path[len(base) + 1:])]
    if not files:
        raise UsageError(root, "no such experiment (nothing stored under it)")
    for info in files:
        target = dest / info.path[len(base) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        with filesystem.open_input_stream(info.path) as stream:
            target.write_bytes(stream.read())
    return dest


@contextlib.contextmanager
def local_view(path: str) -> Iterator[str]:
    """The path itself when local; for a URI, a temporary local copy of it without checkpoints (what the
    leaderboard, the report and export read), removed afterwards."""
    if not is_remote_uri(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="makd-remote-") as tmp:
        local = Path(tmp) / path.rstrip("/").rsplit("/", 1)[-1]
        yield str(download(path, local))


@contextlib.contextmanager
def local_views(paths: list[str]) -> Iterator[list[str]]:
    """`local_view` of every input path (local paths pass through unchanged)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(local_view(p)) for p in paths]
