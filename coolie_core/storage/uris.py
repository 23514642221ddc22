"""Parsing storage URIs and matching object keys against globs.

A location is a scheme, an authority (bucket, container, ``container@account.host``; empty for
local paths) and a key (the prefix inside it, ``/``-separated, no leading or trailing ``/``).
"""

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

from coolie_core.errors import StorageConfigError
from coolie_core.locations import check_path_text

__all__ = ["CLOUD_SCHEMES", "ParsedUri", "has_glob", "is_uri", "match_glob", "parse_uri"]

CLOUD_SCHEMES = frozenset({"s3", "az", "abfss", "gs"})
"""Object stores coolie reads and writes (polars, delta-rs and obstore all speak them)."""

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
# ``s3:/raw`` (one slash) is a typo for a URI, not a relative folder named ``s3:``.
_HALF_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ABFSS_AUTHORITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*@[A-Za-z0-9][A-Za-z0-9.-]*$")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class ParsedUri:
    """The parts of a storage URI (local paths have scheme ``file`` and no authority)."""

    scheme: str
    authority: str
    key: str


def _key_parts(text: str, *, uri: str) -> list[str]:
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StorageConfigError(f"storage URI {uri!r}: '..' is not allowed in a connection URI")
    return parts


def parse_uri(text: str, *, base_dir: Path | None = None) -> ParsedUri:
    """Split a URI or local path; relative local paths resolve against ``base_dir`` (or cwd).

    Raises:
        StorageConfigError: unsupported scheme, no bucket/container, or an unusable path.

    >>> parse_uri("s3://raw/orders/")
    ParsedUri(scheme='s3', authority='raw', key='orders')
    >>> parse_uri("hdfs://nn/x")
    Traceback (most recent call last):
    coolie_core.errors.StorageConfigError: unsupported storage scheme 'hdfs://' in 'hdfs://nn/x'; use s3://, az://, abfss://, gs:// or a local path
    """
    try:
        check_path_text(text)
    except ValueError as exc:
        raise StorageConfigError(str(exc)) from None
    match = _URI.match(text)
    if match is None:
        if _HALF_URI.match(text):
            raise StorageConfigError(f"storage URI {text!r} is malformed: write scheme://bucket/prefix")
        path = Path(text)
        if not path.is_absolute():
            path = (base_dir if base_dir is not None else Path.cwd()) / path
        return ParsedUri("file", "", "/".join(_key_parts(os.path.normpath(path), uri=text)))
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "file":
        if not rest.startswith("/"):
            raise StorageConfigError(f"storage URI {text!r}: file:// URIs must be absolute (file:///path)")
        return ParsedUri("file", "", "/".join(_key_parts(rest, uri=text)))
    if scheme not in CLOUD_SCHEMES:
        raise StorageConfigError(
            f"unsupported storage scheme '{scheme}://' in {text!r}; "
            "use s3://, az://, abfss://, gs:// or a local path"
        )
    authority, _, prefix = rest.partition("/")
    pattern = _ABFSS_AUTHORITY if scheme == "abfss" else _NAME
    if not pattern.match(authority):
        shape = (
            "container@account.dfs.core.windows.net" if scheme == "abfss" else "a bucket or container name"
        )
        raise StorageConfigError(f"storage URI {text!r}: expected {scheme}://{shape}/prefix")
    return ParsedUri(scheme, authority, "/".join(_key_parts(prefix, uri=text)))


def is_uri(text: str) -> bool:
    """Whether ``text`` is written as a URI (``scheme://...``, supported or not), not a plain path.

    >>> is_uri("s3://raw/x"), is_uri("hdfs://nn/x"), is_uri("data/raw"), is_uri("C:/data")
    (True, True, False, False)
    """
    return _URI.match(text) is not None


def has_glob(key: str) -> bool:
    """Whether a key holds glob characters (``*``, ``?``, ``[``)."""
    return _GLOB_CHARS.search(key) is not None


def _match_segment(pattern: str, name: str) -> bool:
    # Like glob.glob: wildcards do not match hidden names unless the pattern starts with a dot.
    if name.startswith(".") and not pattern.startswith(".") and has_glob(pattern):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def match_glob(pattern: list[str], names: list[str]) -> bool:
    """Whether key segments ``names`` match glob segments ``pattern`` (``**`` = any depth).

    Segments match like ``glob.glob(..., recursive=True)``: ``*`` stays within one segment.

    >>> match_glob(["raw", "**", "*.csv"], ["raw", "a", "b", "x.csv"])
    True
    >>> match_glob(["raw", "*.csv"], ["raw", "a", "x.csv"])
    False
    """
    if not pattern:
        return not names
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for depth in range(len(names) + 1):
            if depth and names[depth - 1].startswith("."):
                return False
            if match_glob(rest, names[depth:]):
                return True
        return False
    return bool(names) and _match_segment(head, names[0]) and match_glob(rest, names[1:])
