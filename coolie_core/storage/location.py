"""The storage location: where a connection, a table or a file lives, on disk or in a bucket."""

import contextlib
import fnmatch
import functools
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import obstore
from obstore.store import LocalStore, from_url

from coolie_core.catalog_text import collector_paused
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


class ObjectInfo:
    """One stored object (a file) as listed.

    Attributes:
        uri: where it is: ``s3://bucket/key`` or an absolute local path.
        size: bytes.
        last_modified: when it was last written (UTC).
        etag: the store's version tag (local files: inode, mtime and size), None if unknown.
        modified_ns: local files: the modification time in ns (finer than ``last_modified``).
    """

    # A plain class with slots, not a dataclass: a local listing makes one per file (100,000s in
    # a landing zone), and a local file's datetime and ETag are only built when asked for.
    __slots__ = ("_etag", "_inode", "_last_modified", "modified_ns", "size", "uri")

    def __init__(
        self,
        uri: str,
        size: int,
        last_modified: datetime | None,
        etag: str | None,
        modified_ns: int | None = None,
        *,
        inode: int | None = None,
    ) -> None:
        """``last_modified`` may be None when ``modified_ns`` is given, ``etag`` when ``inode`` is
        (a local file: its ETag is inode, mtime and size)."""
        if last_modified is None and modified_ns is None:
            raise ValueError("ObjectInfo needs last_modified or modified_ns")
        self.uri = uri
        self.size = size
        self._last_modified = last_modified
        self._etag = etag
        self._inode = inode
        self.modified_ns = modified_ns

    @property
    def etag(self) -> str | None:
        """The store's version tag (local files: inode, mtime and size), None if unknown."""
        if self._etag is None and self._inode is not None:
            self._etag = f"{self._inode:x}-{self.modified_ns:x}-{self.size:x}"
        return self._etag

    @property
    def last_modified(self) -> datetime:
        """When it was last written (UTC)."""
        if self._last_modified is None:
            assert self.modified_ns is not None
            self._last_modified = datetime.fromtimestamp(self.modified_ns / 1e9, tz=UTC)
        return self._last_modified

    @property
    def fingerprint(self) -> str:
        """Changes whenever the object is rewritten: name, size, ETag and modification time."""
        return f"{self.uri}\0{self.size}\0{self.etag or ''}\0{self.last_modified.isoformat()}"

    def _key(self) -> tuple[str, int, datetime, str | None, int | None]:
        return (self.uri, self.size, self.last_modified, self.etag, self.modified_ns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectInfo) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"ObjectInfo(uri={self.uri!r}, size={self.size}, last_modified={self.last_modified!r}, "
            f"etag={self.etag!r}, modified_ns={self.modified_ns})"
        )


def _scan(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError:  # missing, not a folder, unreadable: matches nothing (as glob.glob)
        return []


@functools.lru_cache(maxsize=64)
def _segment_matcher(pattern: str) -> Callable[[str], bool]:
    """A name matcher for one glob segment, as :func:`coolie_core.storage.uris.match_glob`'s."""
    match = re.compile(fnmatch.translate(pattern)).match
    if pattern.startswith("."):
        return lambda name: match(name) is not None
    # Like glob.glob: wildcards do not match hidden names unless the pattern starts with a dot.
    return lambda name: not name.startswith(".") and match(name) is not None


def _walk(directory: str, segments: list[str], found: list[ObjectInfo]) -> None:
    """Collect the regular files under ``directory`` matching the glob ``segments``."""
    head, rest = segments[0], segments[1:]
    if head == "**":  # zero or more folders (not hidden ones)
        if rest:
            _walk(directory, rest, found)
        for entry in _scan(directory):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                _walk(entry.path, segments, found)
            elif not rest:
                _stat_into([entry.path], found)
        return
    if not has_glob(head):
        path = os.path.join(directory, head)
        if rest:
            _walk(path, rest, found)
        else:
            _stat_into([path], found)
        return
    matches = _segment_matcher(head)
    if rest:
        for entry in _scan(directory):
            if matches(entry.name) and entry.is_dir():
                _walk(entry.path, rest, found)
        return
    # Stat in inode order (known without a syscall): the inode table is then read in sequence,
    # not in the folder's hash order.
    picked = [entry for entry in _scan(directory) if matches(entry.name)]
    picked.sort(key=_inode)
    _stat_into([entry.path for entry in picked], found)


def _inode(entry: os.DirEntry[str]) -> int:
    return entry.inode()


def _stat_into(paths: list[str], found: list[ObjectInfo]) -> None:
    """The hot loop of a landing zone's listing: one stat per file, one object per regular file."""
    stat, regular, append = os.stat, S_ISREG, found.append
    for path in paths:
        try:
            info = stat(path)  # follows symlinks, as glob.glob does
        except OSError:
            continue  # removed since it was listed (or a dangling link)
        if regular(info.st_mode):
            append(ObjectInfo(path, info.st_size, None, None, info.st_mtime_ns, inode=info.st_ino))


def _local_files(pattern: str) -> list[ObjectInfo]:
    """The regular files matching a local glob, sorted by path (as ``glob.glob(pattern,
    recursive=True)`` lists them), each stat'ed once while its folder is scanned."""
    parts = pattern.split(os.sep)
    first = next((i for i, part in enumerate(parts) if has_glob(part)), len(parts) - 1)
    found: list[ObjectInfo] = []
    _walk(os.sep.join(parts[:first]) or os.sep, parts[first:], found)
    found.sort(key=attrgetter("uri"))
    if "**" in parts:  # two ``**`` can reach a file twice
        found = [info for i, info in enumerate(found) if i == 0 or info.uri != found[i - 1].uri]
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
            # 100,000s of small objects and no cycle among them: the collector's passes over the
            # growing list were a sixth of the listing's time.
            with collector_paused():
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
