"""Clip storage shared by several machines: an object store (S3 and the like) or any fsspec URL.

With `STUDIO_STORAGE_URL` set (e.g. `s3://bucket/studio`, `gs://...`, `file:///mnt/shared/studio`), the
files every front end must see (a clip's mp4, thumbnail and sidecar, and the inputs jobs read) live there,
under the same relative paths as in the data dir (`clips/<id>.mp4`, `inputs/ab/<sha>.png`). Each data dir
keeps a local copy of what it wrote or read: the store is the truth, the data dir a cache.

The write-then-commit rule holds across machines: a clip's objects are uploaded before its gallery row is
committed, so a row never names an object that is not there. Each object is written whole or not at all (an
object store's PUT replaces an object atomically; on a file system the upload goes to a temporary name that
is then renamed). A crash between upload and commit leaves objects without a row, which start-up clean-up
removes once they are older than its grace period (another front end may be about to commit them).

fsspec is imported only when a store is configured; an S3 URL needs `s3fs` (`pip install s3fs`), and its
credentials come from the usual places (environment, `~/.aws`, the instance's role). Options for the file
system (an endpoint, say) go in `STUDIO_STORAGE_OPTIONS` as JSON.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


class StorageUnavailable(RuntimeError):
    """The storage URL cannot be used: an unknown protocol, a missing package, or out of reach."""


class ObjectStore:
    """The shared copy of the data dir's clips and inputs, at an fsspec URL."""

    def __init__(self, url: str, options: dict[str, Any] | None = None):
        self.url = url
        try:
            from fsspec.core import url_to_fs

            self.fs, root = url_to_fs(url, **(options or {}))
        except ImportError as e:
            raise StorageUnavailable(f"STUDIO_STORAGE_URL={url!r} needs a package that is not installed: "
                                     f"{e.name or e} (an s3:// URL needs `pip install s3fs`)") from None
        except (ValueError, TypeError) as e:
            raise StorageUnavailable(f"STUDIO_STORAGE_URL={url!r} cannot be used: {e}") from None
        self.root = root.rstrip("/")
        protocol = self.fs.protocol
        self._local = "file" in (protocol if isinstance(protocol, (tuple, list)) else (protocol,))

    @classmethod
    def from_settings(cls, url: str | None, options: str | dict | None = None) -> "ObjectStore | None":
        if not url:
            return None
        if isinstance(options, str):
            try:
                options = json.loads(options) if options.strip() else {}
            except ValueError as e:
                raise StorageUnavailable(f"STUDIO_STORAGE_OPTIONS is not JSON: {e}") from None
        return cls(url, options)

    def check(self) -> None:
        """Reach the store now (at start-up), so that a wrong URL or missing credentials say so at once."""
        probe = self.key(f"{TMP_MARK}probe-{uuid.uuid4().hex[:12]}")
        try:
            if self._local:
                self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"the studio checks that it may write here\n")  # credentials and rights
            self.fs.rm_file(probe)
        except Exception as e:
            raise StorageUnavailable(f"cannot use the clip storage at {self.url}: "
                                     f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from None

    def key(self, rel: str) -> str:
        return posixpath.join(self.root, rel)

    # ---- objects --------------------------------------------------------------------------------
    def put(self, local: Path, rel: str) -> None:
        """Upload a file, whole or not at all."""
        key = self.key(rel)
        if self._local:  # a mounted file system: a temporary name, then a rename (atomic on one file system)
            parent = posixpath.dirname(key)
            self.fs.makedirs(parent, exist_ok=True)
            tmp = posixpath.join(parent, f"{TMP_MARK}{uuid.uuid4().hex[:12]}-{posixpath.basename(key)}")
            try:
                self.fs.put_file(str(local), tmp)
                os.replace(tmp, key)
            except BaseException:
                try:
                    self.fs.rm_file(tmp)
                except (FileNotFoundError, OSError):
                    pass
                raise
        else:
            self.fs.put_file(str(local), key)

    def get(self, rel: str, local: Path) -> bool:
        """Download an object to `local` (through a temporary name); False when the store has no such object."""
        key = self.key(rel)
        self._fresh(key)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f"{TMP_MARK}{uuid.uuid4().hex[:12]}-{local.name}")
        try:
            self.fs.get_file(key, str(tmp))
            os.replace(tmp, local)
            return True
        except FileNotFoundError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _fresh(self, key: str) -> None:
        """Forget what the file system cached of `key`'s folder (s3fs caches listings): other machines write
        there too."""
        self.fs.invalidate_cache(posixpath.dirname(key))

    def exists(self, rel: str) -> bool:
        key = self.key(rel)
        self._fresh(key)
        return bool(self.fs.exists(key))

    def remove(self, rel: str) -> None:
        try:
            self.fs.rm_file(self.key(rel))
        except FileNotFoundError:
            pass

    def age_s(self, rel: str) -> float:
        """Seconds since the object was written (inf when the store cannot say)."""
        try:
            modified = self.fs.modified(self.key(rel))
        except (FileNotFoundError, NotImplementedError, OSError):
            return float("inf")
        if modified.tzinfo is None:
            return time.time() - modified.timestamp() if isinstance(modified, datetime) else float("inf")
        return time.time() - modified.timestamp()

    def listing(self, folder: str) -> set[str]:
        """Relative paths of the finished objects directly in `folder` ("clips"): one listing call, where
        asking for each file would be a request per file."""
        try:
            self._fresh(self.key(f"{folder}/x"))
            names = self.fs.ls(self.key(folder), detail=False)
        except FileNotFoundError:
            return set()
        bases = (posixpath.basename(str(name).rstrip("/")) for name in names)
        return {f"{folder}/{b}" for b in bases if not b.startswith(TMP_MARK)}
