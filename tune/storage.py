"""Where a sweep's files go: a local experiment dir (atomic temp-name + rename) or a URI (s3://, gs://)."""

from __future__ import annotations

from pathlib import Path

from makd.files import atomic_write_bytes


def is_remote_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


def write_bytes(root: str, name: str, data: bytes) -> str:
    """Write root/name atomically (local) or in one stream (s3://, gs:// via pyarrow.fs)."""
    if is_remote_uri(root):
        from pyarrow import fs

        filesystem, base = fs.FileSystem.from_uri(root)
        filesystem.create_dir(base, recursive=True)
        with filesystem.open_output_stream(f"{base}/{name}") as out:
            out.write(data)
        return f"{root}/{name}"
    path = Path(root) / name
    atomic_write_bytes(path, data)
    return str(path)
