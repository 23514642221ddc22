"""Batch state of a parquet-folder destination kept with its data, in ``<folder>/_coolie/``.

An object-store lake must be continuable from any machine, so the state cannot live only in a
local file. Each committed batch is one small JSON object ``_coolie/batch-<n>.json``, created
with a conditional write (S3 ``If-None-Match``, Azure ``If-None-Match: *``, exclusive create on
disk): two runs that both try to commit batch ``n`` cannot both succeed; the loser gets a
:class:`~coolie_core.errors.StorageConflictError` (transient: its retry reads the new state and
discards its uncommitted files). The newest claim is the state; older ones are pruned.
"""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from coolie_core.errors import WatermarkError
from coolie_core.storage import StorageLocation
from coolie_core.watermarks import StoredWatermark, decode_watermark, encode_watermark

__all__ = ["FolderStateStore"]

_PREFIX = "batch-"


class FolderStateStore:
    """The watermark store of one parquet-folder destination, inside that folder.

    Same interface as :class:`~coolie_core.watermarks.SqliteWatermarkStore`.
    """

    def __init__(self, folder: StorageLocation) -> None:
        self.folder = folder
        self.state = folder.join("_coolie")

    def _claims(self) -> list[tuple[int, StorageLocation]]:
        found = []
        for info in self.state.join(f"{_PREFIX}*.json").glob():
            number = info.uri.rpartition("/")[2].removeprefix(_PREFIX).removesuffix(".json")
            if number.isdigit():
                found.append((int(number), self.state.join(f"{_PREFIX}{number}.json")))
        return sorted(found, key=lambda claim: claim[0])

    def read(self, dataflow: str, *, require_watermark: bool = False) -> StoredWatermark:
        """The last committed batch of ``dataflow`` (batch 0 when none)."""
        claims = self._claims()
        if not claims:
            return StoredWatermark(None, 0)
        batch, where = claims[-1]
        store = f"batch state {where.uri}"
        try:
            record = json.loads(where.read_bytes())
        except ValueError:
            raise WatermarkError(f"dataflow {dataflow}: {store} is not valid JSON") from None
        if record.get("dataflow") != dataflow:
            raise WatermarkError(
                f"dataflow {dataflow}: {store} belongs to dataflow {record.get('dataflow')!r}; "
                "two dataflows cannot write one folder"
            )
        text = record.get("watermark")
        if text is None and require_watermark:
            raise WatermarkError(
                f"dataflow {dataflow}: {store} records batch {batch} without a watermark, so the stored "
                "watermark is corrupt. Restore or reset it explicitly."
            )
        value = None if text is None else decode_watermark(str(text), dataflow=dataflow, store=store)
        accounts = record.get("accounts")
        return StoredWatermark(
            value,
            batch,
            source=record.get("source"),
            listed_at=record.get("listed_at"),
            run_id=record.get("run_id"),
            accounts=None if accounts is None else {str(k): int(v) for k, v in accounts.items()},
            files=record.get("files"),
        )

    def commit(
        self,
        dataflow: str,
        *,
        batch: int,
        watermark: Mapping[str, Any] | None,
        source: str | None = None,
        listed_at: int | None = None,
        run_id: str | None = None,
        accounts: Mapping[str, int] | None = None,
        files: str | None = None,
    ) -> None:
        """Record ``batch`` as committed (atomic; batches only move forward).

        Raises:
            WatermarkError: ``batch`` is not after the stored one.
            StorageConflictError: another run committed ``batch`` meanwhile (transient).
        """
        claims = self._claims()
        if claims and claims[-1][0] >= batch:
            raise WatermarkError(
                f"dataflow {dataflow}: batch {batch} is not after the stored batch {claims[-1][0]} "
                f"in {self.state.uri}"
            )
        record = {
            "dataflow": dataflow,
            "batch": batch,
            "watermark": None if watermark is None else encode_watermark(watermark),
            "source": source,
            "listed_at": listed_at,
            "run_id": run_id,
            "accounts": None if accounts is None else dict(accounts),
            "files": files,
            "committed_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        self.state.make_dirs()
        claim = self.state.join(f"{_PREFIX}{batch:010d}.json")
        claim.write_bytes(json.dumps(record, sort_keys=True).encode(), if_absent=True)
        for _, older in claims:  # the new claim is the state now
            older.delete()
