"""Write a folder of parquet files (append / overwrite), exactly once per batch.

Files are named ``part-<batch>-<run id>-<n>.parquet``. The batch is committed in the watermark
store only after the files are written; files of a batch that never committed (a crash between
writing and committing) are removed before the next write, so a rerun neither loses nor
duplicates rows. Readers of the folder may briefly see an uncommitted batch; use Delta where
readers need atomic visibility. The folder may be local or an object-store prefix (a PUT is
atomic there: no temporary file is needed).
"""

import re
import shutil

import polars as pl

from coolie_core.errors import TransientError
from coolie_core.models import DestinationSpec
from coolie_core.storage import StorageLocation, library_options

__all__ = ["STAGING_PREFIX", "discard_uncommitted", "write_parquet_folder"]

_PART = re.compile(r"^part-(\d{10})-")
STAGING_PREFIX = "_coolie_staging-"
"""Folders Spark tasks write a batch into before the driver names its files
(:mod:`coolie_core.engines.spark.folder`); readers of ``part-*.parquet`` never see them."""


def _parts(folder: StorageLocation) -> list[StorageLocation]:
    found = folder.join("part-*.parquet").glob()
    return [StorageLocation.parse(info.uri, storage_options=dict(folder.options)) for info in found]


def discard_uncommitted(folder: StorageLocation, *, committed_batch: int) -> list[str]:
    """Remove files of batches after ``committed_batch`` and staging folders a killed Spark run
    left; returns what was removed (URIs)."""
    removed = []
    if folder.is_local and folder.path.is_dir():
        for staging in folder.path.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging.as_uri())
    for file in _parts(folder):
        match = _PART.match(file.name)
        if match and int(match.group(1)) > committed_batch:
            file.delete()
            removed.append(file.uri)
    return removed


def write_parquet_folder(
    folder: StorageLocation, frame: pl.DataFrame, *, destination: DestinationSpec, batch: int, run_id: str
) -> int:
    """Write ``frame`` as one file of ``batch``; overwrite removes the older batches' files."""
    try:
        folder.make_dirs()
        target = folder.join(f"part-{batch:010d}-{run_id}-0.parquet")
        if folder.is_local:
            tmp = target.path.with_suffix(".tmp")
            frame.write_parquet(tmp)
            tmp.replace(target.path)
        else:
            frame.write_parquet(target.uri, storage_options=library_options(folder))
        if destination.load == "overwrite":
            for file in _parts(folder):
                if file.uri != target.uri:
                    file.delete()
    except OSError as exc:  # storage errors (coolie's own) keep their meaning
        raise TransientError(f"writing parquet files in {folder} failed: {exc}") from exc
    return frame.height
