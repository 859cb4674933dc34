"""Reading stage tables back from the store: stream some columns part by part and row group by row group,
read them whole, read the shards a writer holds so far, count values.

Generic over tables: the schemas are in `swirl/tables.py`, where a table lives is `swirl/store.py`'s business.
A stage reads its inputs with these and holds only the columns it needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from swirl.store import ShardedWriter, StageRef, Store
from swirl.tables import SchemaError, schema


def iter_batches(
    store: Store, ref: StageRef, columns: Sequence[str], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Stream some columns of a complete stage table, part by part and row group by row group."""
    m = store.ref(ref.stage, ref.version)  # raises IncompleteOutput when not complete
    manifest = store.manifest(ref.stage, ref.version) or {}
    base = store.path(m.stage, m.version)
    for part in manifest.get("parts", []):
        with store.fs.open(f"{base}/{part['name']}", "rb") as f:
            pf = pq.ParquetFile(f)
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise SchemaError(
                    f"{base}/{part['name']}: columns {missing} missing (table {manifest.get('table')!r}); "
                    "the output predates the current schema: delete it and re-run that stage"
                )
            yield from pf.iter_batches(batch_size=batch_rows, columns=list(columns))


def read_columns(store: Store, refs: Sequence[StageRef], columns: Sequence[str]) -> pa.Table:
    """Some columns of one or more complete stage tables, concatenated (empty tables keep their column
    types)."""
    batches = [b for r in refs for b in iter_batches(store, r, columns, 1 << 16)]
    if batches:
        return pa.Table.from_batches(batches)
    return schema(refs[0].table).empty_table().select(list(columns))


def shard_columns(writer: ShardedWriter, columns: Sequence[str]) -> pa.Table | None:
    """Some columns of every shard a ShardedWriter holds so far (this run's and recovered ones), for
    summaries."""
    fs = writer.fs
    files = sorted(
        p
        for p in fs.ls(writer.dir, detail=False)
        if p.rsplit("/", 1)[-1].startswith("shard-") and p.endswith(".parquet")
    )
    parts = []
    for p in files:
        with fs.open(p, "rb") as f:
            parts.append(pq.read_table(f, columns=list(columns)))
    return pa.concat_tables(parts) if parts else None


def value_counts(arr: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    """How often each value occurs (values as strings)."""
    vc = pc.value_counts(arr)
    return {str(v["values"]): int(v["counts"]) for v in vc.to_pylist()}
