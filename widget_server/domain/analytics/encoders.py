"""Encoders of export rows: JSON lines, spreadsheet-safe CSV, Parquet. Each turns a page of rows into bytes.

One schema per kind of row (its name, column order and types) serves every format: JSONL writes each row as the
API shows it; CSV writes the same values as text (objects as JSON, `true`/`false`, empty for null); Parquet keeps
the types (timestamps in UTC, objects as JSON text) and names the schema in its metadata.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from widget_server.backends.storage.export_rows import FORMULA_STARTS
from widget_server.backends.storage.rows import Row

ROW_GROUP = 10_000  # Parquet rows buffered before a row group is written: the bound on an export's memory


@dataclass(frozen=True)
class Schema:
    name: str
    columns: tuple[str, ...]
    to_json: Callable[[Row], dict[str, Any]]
    types: Mapping[str, str]  # string | json | timestamp | int16 | int64 | float64 | bool


class Encoder(Protocol):
    def start(self) -> bytes: ...

    def encode(self, rows: Sequence[Row]) -> bytes: ...

    def finish(self) -> bytes: ...


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class JsonlEncoder:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def start(self) -> bytes:
        return b""

    def encode(self, rows: Sequence[Row]) -> bytes:
        return "".join(_json(self.schema.to_json(row)) + "\n" for row in rows).encode()

    def finish(self) -> bytes:
        return b""


def csv_cell(value: Any) -> Any:
    """A value as CSV text that a spreadsheet shows and never evaluates: a leading `'` neutralises a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = _json(value)
    if isinstance(value, str) and value.lstrip(" ").startswith(FORMULA_STARTS):
        return "'" + value
    return value


class RenderedJsonlEncoder(JsonlEncoder):
    """Lines the database wrote already (`ExportReader.lines`)."""

    end = "\n"

    def encode(self, rows: Sequence[Any]) -> bytes:
        return (self.end.join(rows) + self.end).encode() if rows else b""


class CsvEncoder:
    """RFC 4180 (CRLF, quotes doubled), so commas, quotes and newlines inside a cell read back unchanged."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def _lines(self, rows: Sequence[Sequence[Any]]) -> bytes:
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        return out.getvalue().encode()

    def start(self) -> bytes:
        return self._lines([self.schema.columns])

    def encode(self, rows: Sequence[Row]) -> bytes:
        columns = self.schema.columns
        return self._lines([[csv_cell(v[c]) for c in columns] for v in map(self.schema.to_json, rows)])

    def finish(self) -> bytes:
        return b""


class RenderedCsvEncoder(CsvEncoder):
    """Cells the database wrote already as text, neutralised there as `csv_cell` does (`ExportReader.cells`)."""

    def encode(self, rows: Sequence[Any]) -> bytes:
        return self._lines(rows)


class _Sink(io.RawIOBase):
    """Where the Parquet writer writes: the bytes are taken out after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class ParquetEncoder:
    """Rows are buffered up to `ROW_GROUP`, then written as one row group and handed on at once."""

    def __init__(self, schema: Schema) -> None:
        pa: Any = importlib.import_module("pyarrow")  # an optional extra, and without type information
        self.pa, self.pq = pa, importlib.import_module("pyarrow.parquet")
        self.schema = schema
        types = {"string": pa.string(), "json": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"),
                 "int16": pa.int16(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
        self.arrow = pa.schema([(c, types[schema.types[c]]) for c in schema.columns],
                               metadata={"widget_server.schema": schema.name})
        self.json_columns = [c for c in schema.columns if schema.types[c] == "json"]
        self.buffer: list[Row] = []
        self.sink = _Sink()
        self.writer: Any = None

    def start(self) -> bytes:
        self.writer = self.pq.ParquetWriter(self.sink, self.arrow, compression="zstd")
        return self.sink.take()

    def encode(self, rows: Sequence[Row]) -> bytes:
        self.buffer.extend(rows)
        if len(self.buffer) < ROW_GROUP:
            return b""
        return self._flush()

    def _flush(self) -> bytes:
        if self.buffer:
            columns = {c: [row[c] for row in self.buffer] for c in self.schema.columns}
            for c in self.json_columns:
                columns[c] = [None if v is None else _json(v) for v in columns[c]]
            self.writer.write_table(self.pa.table(columns, schema=self.arrow), row_group_size=len(self.buffer))
            self.buffer = []
        return self.sink.take()

    def finish(self) -> bytes:
        tail = self._flush()
        self.writer.close()
        return tail + self.sink.take()


ENCODERS: dict[str, Callable[[Schema], Encoder]] = {
    "jsonl": JsonlEncoder, "csv": CsvEncoder, "parquet": ParquetEncoder}
