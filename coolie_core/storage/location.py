"""The storage location: where a connection, a table or a file lives, on disk or in a bucket."""

import contextlib
import glob
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import obstore
from obstore.store import LocalStore, from_url

from coolie_core.errors import StorageConfigError
from coolie_core.locations import expand_env, resolve_within
from coolie_core.storage.failures import translate
from coolie_core.storage.options import check_option_values, obstore_config
from coolie_core.storage.uris import has_glob, is_uri, match_glob, parse_uri

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ObjectStore

__all__ = ["ObjectInfo", "StorageLocation"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object (a file) as listed.

    Attributes:
        uri: where it is: ``s3://bucket/key`` or an absolute local path.
        size: bytes.
        last_modified: when it was last written (UTC).
        etag: the store's version tag (local files: inode, mtime and size), None if unknown.
    """

    uri: str
    size: int
    last_modified: datetime
    etag: str | None
    modified_ns: int | None = None
    """Local files: the modification time in ns (finer than ``last_modified``)."""

    @property
    def fingerprint(self) -> str:
        """Changes whenever the object is rewritten: name, size, ETag and modification time."""
        return f"{self.uri}\0{self.size}\0{self.etag or ''}\0{self.last_modified.isoformat()}"


def _local_files(pattern: str) -> list[ObjectInfo]:
    found = []
    for name in sorted(glob.glob(pattern, recursive=True)):
        try:
            stat = os.stat(name)
        except FileNotFoundError:
            continue  # removed since it was listed
        if not S_ISREG(stat.st_mode):
            continue
        modified = datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=UTC)
        etag = f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"
        found.append(ObjectInfo(name, stat.st_size, modified, etag, stat.st_mtime_ns))
    return found


@dataclass(frozen=True, slots=True, repr=False)
class StorageLocation:
    """An immutable place in storage: a URI plus the options to reach it.

    Build one with :meth:`parse`. Options are kept as written (``${ENV}`` references unexpanded),
    so a location can be logged, compared and pickled without revealing a credential.
    """

    scheme: str
    authority: str
    key: str
    options: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        base_dir: Path | None = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> Self:
        """A location from a URI (``s3://``, ``az://``, ``abfss://``, ``gs://``, ``file://``) or path.

        Args:
            text: the URI or path; relative paths resolve against ``base_dir`` (default: cwd).
            base_dir: folder of relative local paths (the catalog file's folder).
            storage_options: object_store keys; secret values must be ``${ENV}`` references.

        Raises:
            StorageConfigError: unsupported scheme, malformed URI, literal secret.
        """
        parsed = parse_uri(text, base_dir=base_dir)
        options = dict(storage_options or {})
        try:
            check_option_values(options)
        except ValueError as exc:
            raise StorageConfigError(f"{text}: {exc}") from None
        return cls(parsed.scheme, parsed.authority, parsed.key, tuple(sorted(options.items())))

    # What it is -------------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """Whether this is a local path (no object store)."""
        return self.scheme == "file"

    @property
    def uri(self) -> str:
        """What polars and delta-rs take: ``s3://bucket/key`` or an absolute local path."""
        if self.is_local:
            return "/" + self.key
        return (
            f"{self.scheme}://{self.authority}/{self.key}"
            if self.key
            else f"{self.scheme}://{self.authority}"
        )

    @property
    def path(self) -> Path:
        """The local path.

        Raises:
            StorageConfigError: the location is in an object store.
        """
        if not self.is_local:
            raise StorageConfigError(f"{self.uri} is in an object store, not a local path")
        return Path(self.uri)

    @property
    def name(self) -> str:
        """The last segment of the key (a file or table name)."""
        return self.key.rpartition("/")[2]

    @property
    def parents(self) -> tuple["StorageLocation", ...]:
        """The enclosing locations, nearest first, up to the bucket (or filesystem) root.

        Like ``Path.parents``: lineage looks a source up among the destinations above it.
        """
        parts = self.key.split("/") if self.key else []
        return tuple(
            StorageLocation(self.scheme, self.authority, "/".join(parts[:depth]), self.options)
            for depth in range(len(parts) - 1, -1, -1)
        )

    @property
    def has_glob(self) -> bool:
        """Whether the location is a glob pattern rather than one object or prefix."""
        return has_glob(self.key)

    @property
    def storage_options(self) -> dict[str, str]:
        """The options with ``${ENV}`` expanded: pass to polars and delta-rs ``storage_options=``.

        Empty when none are set: every library then reads the cloud's standard environment.

        Raises:
            StorageConfigError: an option references an unset variable (named; not its value).
        """
        expanded: dict[str, str] = {}
        for key, value in self.options:
            try:
                expanded[key] = expand_env(value)
            except KeyError as exc:
                raise StorageConfigError(f"{self.uri}: storage option {key}: {exc.args[0]}") from None
        return expanded

    def __repr__(self) -> str:
        keys = [key for key, _ in self.options]
        return f"StorageLocation({self.uri!r}, options={keys!r})"

    def __str__(self) -> str:
        return self.uri

    # Paths --------------------------------------------------------------------------------------

    def join(self, relative: str) -> "StorageLocation":
        """The location ``relative`` names inside this one (globs allowed).

        Same rules as :func:`coolie_core.locations.resolve_within`: no ``..`` out of this prefix,
        no other bucket or container, no ``..`` after a glob.

        Raises:
            ValueError: ``relative`` escapes this location or is itself a URI (the message names both).
        """
        if is_uri(relative):
            raise ValueError(
                f"path {relative!r} is a URI; give a path relative to its connection location {self.uri!r}"
            )
        root = "/" + "/".join(p for p in (self.authority, self.key) if p)
        try:
            joined = resolve_within(root, relative)
        except ValueError as exc:
            if "escapes" not in str(exc):
                raise
            raise ValueError(f"path {relative!r} escapes its connection location {self.uri!r}") from None
        parts = joined.as_posix().strip("/").split("/")
        key = "/".join(parts[1:] if self.authority else parts)
        return StorageLocation(self.scheme, self.authority, key, self.options)

    # Store access -------------------------------------------------------------------------------

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except BaseException as exc:
            # obstore reports a Rust panic (e.g. a malformed option) as pyo3's PanicException,
            # a BaseException; anything else outside Exception (Ctrl-C) passes through.
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise
            raise translate(exc, uri=self.uri, scheme=self.scheme, action=action) from None

    def _store(self) -> "ObjectStore":
        if self.is_local:
            return LocalStore()
        # Plain dicts: obstore's TypedDicts differ per cloud and the keys were checked by the user's
        # catalog, not by us; obstore itself rejects an unknown key.
        config: Any
        client: Any
        config, client = obstore_config(self.storage_options, scheme=self.scheme, environ=os.environ)
        root = f"{self.scheme}://{self.authority}"
        return self._call(
            "opening", lambda: from_url(root, config=config or None, client_options=client or None)
        )

    def _info(self, meta: "ObjectMeta") -> ObjectInfo:
        key = meta["path"]
        uri = "/" + key if self.is_local else f"{self.scheme}://{self.authority}/{key}"
        return ObjectInfo(uri, meta["size"], meta["last_modified"], meta.get("e_tag"))

    def _list_under(self, store: "ObjectStore", prefix: str) -> list[ObjectInfo]:
        def run() -> list[ObjectInfo]:
            found: list[ObjectInfo] = []
            for chunk in obstore.list(store, prefix=prefix or None):
                found += [self._info(meta) for meta in chunk]
            return found

        try:
            infos = self._call("listing", run)
        except FileNotFoundError:
            return []  # a local folder that does not exist holds nothing
        return sorted(infos, key=lambda info: info.uri)

    def list_objects(self) -> list[ObjectInfo]:
        """Every object under this location (as a prefix, recursively), sorted by URI."""
        return self._list_under(self._store(), self.key)

    def head(self) -> ObjectInfo:
        """The object at this location.

        Raises:
            FileNotFoundError: no object here (the message names the URI).
        """
        store = self._store()
        return self._info(self._call("reading", lambda: obstore.head(store, self.key)))

    def glob(self) -> list[ObjectInfo]:
        """Objects matching this location as a glob (``*``, ``?``, ``[...]``, ``**``), sorted.

        Without glob characters: the one object at this location, if there is one. Local
        locations list like ``glob.glob(pattern, recursive=True)`` (files only), stat'ed once.
        """
        if self.is_local:
            return _local_files(self.uri)
        if not self.has_glob:
            try:
                return [self.head()]
            except (FileNotFoundError, IsADirectoryError):
                return []
        pattern = self.key.split("/")
        first = next(i for i, part in enumerate(pattern) if has_glob(part))
        static = "/".join(pattern[:first])
        found = self._list_under(self._store(), static)
        cut = len(static.split("/")) if static else 0
        return [info for info in found if match_glob(pattern[first:], self._key_of(info).split("/")[cut:])]

    def _key_of(self, info: ObjectInfo) -> str:
        if self.is_local:
            return info.uri[1:]
        return info.uri[len(f"{self.scheme}://{self.authority}/") :]

    def exists(self) -> bool:
        """Whether an object is here, or any object under this location as a prefix."""
        if self.key:
            try:
                self.head()
            except (FileNotFoundError, IsADirectoryError):
                pass
            else:
                return True
        store = self._store()

        def any_object() -> bool:
            return any(chunk for chunk in obstore.list(store, prefix=self.key or None, chunk_size=1))

        try:
            return self._call("listing", any_object)
        except FileNotFoundError:
            return False

    def read_bytes(self) -> bytes:
        """The whole object (for small objects: batch state, markers).

        Raises:
            FileNotFoundError: no object here (the message names the URI).
        """
        store = self._store()
        return self._call("reading", lambda: bytes(obstore.get(store, self.key).bytes()))

    def write_bytes(self, data: bytes, *, if_absent: bool = False) -> None:
        """Write the whole object atomically (readers never see half of it).

        Args:
            data: the content.
            if_absent: only create it: if it already exists, write nothing and raise (S3
                ``If-None-Match``, Azure ``If-None-Match: *``, local exclusive create).

        Raises:
            StorageConflictError: ``if_absent`` and the object exists.
        """
        store = self._store()
        mode: Literal["create", "overwrite"] = "create" if if_absent else "overwrite"
        self._call("writing", lambda: obstore.put(store, self.key, data, mode=mode))

    def delete(self) -> None:
        """Delete the object here; a missing object is not an error."""
        store = self._store()
        with contextlib.suppress(FileNotFoundError):
            self._call("deleting", lambda: obstore.delete(store, self.key))

    def delete_prefix(self) -> int:
        """Delete every object under this location; returns how many there were."""
        store = self._store()
        found = self._list_under(store, self.key)
        keys = [self._key_of(info) for info in found]
        if found:
            self._call("deleting", lambda: obstore.delete(store, keys))
        if self.is_local and self.path.is_dir():
            # Object stores have no folders; on disk the emptied ones would stay behind.
            shutil.rmtree(self.path, ignore_errors=True)
        return len(found)

    def make_dirs(self) -> None:
        """Make this location usable as a folder before a library writes into it.

        Local: create the folder (polars does not); object stores have no folders: nothing.
        """
        if self.is_local:
            self.path.mkdir(parents=True, exist_ok=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (URI and option names only)."""
        return {"uri": self.uri, "storage_options": [key for key, _ in self.options]}
