"""Local listing (``StorageLocation.glob`` on a folder): one ``os.scandir`` walk that stats each
matching file once, giving exactly what ``glob.glob(pattern, recursive=True)`` plus ``os.stat``
gave — the same files, in the same order, with the same size, times and version."""

import datetime as dt
import glob
import os
from pathlib import Path
from stat import S_ISREG
from typing import Any

import pytest

from coolie_core.storage import StorageLocation

PATTERNS = [
    "drop/*.csv",
    "drop/a?.csv",
    "drop/[ab]*.csv",
    "drop/*",
    "drop/*/*.csv",
    "drop/**/*.csv",
    "drop/**",
    "**/*.csv",
    "drop/**/deep/*.csv",
    "drop/.*",
    "drop/.hidden/*.csv",
    "drop/a1.csv",
    "drop/sub",
    "drop/missing.csv",
    "missing/*.csv",
    "drop/a1.csv/*",
]


def tree(root: Path) -> None:
    files = [
        "drop/a1.csv",
        "drop/a2.csv",
        "drop/b10.csv",
        "drop/c.json",
        "drop/.dot.csv",
        "drop/sub/x.csv",
        "drop/sub/deep/y.csv",
        "drop/sub/deep/z.txt",
        "drop/.hidden/h.csv",
        "other/o.csv",
    ]
    for number, name in enumerate(files):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("id\n" + "1\n" * number)
        os.utime(path, ns=(1_700_000_000_123_456_789 + number, 1_700_000_000_123_456_789 + number))
    (root / "drop" / "dir.csv").mkdir()  # a folder matching a file glob is not listed
    (root / "drop" / "link.csv").symlink_to(root / "other" / "o.csv")  # followed
    (root / "drop" / "broken.csv").symlink_to(root / "nowhere.csv")  # dangling: left out
    (root / "drop" / "linked").symlink_to(root / "drop" / "sub" / "deep")  # a linked folder


def reference(pattern: str) -> list[tuple[Any, ...]]:
    """What the listing gave before (``glob.glob`` and one ``os.stat`` per name)."""
    found = []
    for name in sorted(glob.glob(pattern, recursive=True)):
        try:
            stat = os.stat(name)
        except FileNotFoundError:
            continue
        if not S_ISREG(stat.st_mode):
            continue
        modified = dt.datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=dt.UTC)
        etag = f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"
        found.append((name, stat.st_size, modified, etag, stat.st_mtime_ns))
    return found


@pytest.mark.parametrize("pattern", PATTERNS)
def test_local_glob_lists_what_glob_and_stat_did(tmp_path: Path, pattern: str) -> None:
    tree(tmp_path)
    listed = StorageLocation.parse(str(tmp_path)).join(pattern).glob()
    got = [(i.uri, i.size, i.last_modified, i.etag, i.modified_ns) for i in listed]
    assert got == reference(str(tmp_path / pattern))
    if pattern == "drop/*.csv":  # the tree is what the test means it to be
        names = [Path(uri).name for uri, *_ in got]
        assert names == ["a1.csv", "a2.csv", "b10.csv", "link.csv"]
        assert {i.fingerprint for i in listed} == {i.fingerprint for i in listed[::-1]}
