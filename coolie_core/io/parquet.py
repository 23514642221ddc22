"""Write a folder of parquet files (append / overwrite), exactly once per batch.

Files are named ``part-<batch>-<run id>-<n>.parquet``. The batch is committed in the watermark
store only after the files are written; files of a batch that never committed (a crash between
writing and committing) are removed before the next write, so a rerun neither loses nor
duplicates rows. Readers of the folder may briefly see an uncommitted batch; use Delta where
readers need atomic visibility.
"""

import re
from pathlib import Path

import polars as pl

from coolie_core.errors import TransientError
from coolie_core.models import DestinationSpec

__all__ = ["discard_uncommitted", "write_parquet_folder"]

_PART = re.compile(r"^part-(\d{10})-")


def discard_uncommitted(folder: Path, *, committed_batch: int) -> list[Path]:
    """Remove files of batches after ``committed_batch``; returns what was removed."""
    removed = []
    if folder.is_dir():
        for file in folder.glob("part-*.parquet"):
            match = _PART.match(file.name)
            if match and int(match.group(1)) > committed_batch:
                file.unlink()
                removed.append(file)
    return removed


def write_parquet_folder(
    folder: Path, frame: pl.DataFrame, *, destination: DestinationSpec, batch: int, run_id: str
) -> int:
    """Write ``frame`` as one file of ``batch``; overwrite removes the older batches' files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"part-{batch:010d}-{run_id}-0.parquet"
        tmp = target.with_suffix(".tmp")
        frame.write_parquet(tmp)
        tmp.replace(target)
        if destination.load == "overwrite":
            for file in folder.glob("part-*.parquet"):
                if file != target:
                    file.unlink()
    except OSError as exc:
        raise TransientError(f"writing parquet files in {folder} failed: {exc}") from exc
    return frame.height
