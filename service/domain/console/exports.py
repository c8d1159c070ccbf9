"""The console's exports of a search: CSV (UTF-8 with BOM, so that spreadsheet programs
read the Chinese) and XLSX (openpyxl's write-only mode, spooled to a temporary file), each
streamed in chunks with the filters applied."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from openpyxl import Workbook

from service.domain.console.stats import ReportFact

#: Column -> header a person reads.
COLUMNS = {
    "code": "报告标识码", "report_no": "报告编号", "institution": "检测机构代码",
    "institution_name": "检测机构", "project": "工程项目", "test_items": "检测项目",
    "conclusion": "检测结论", "status": "状态", "issued_on": "签发日期", "sealed": "已签章",
}
CHUNK = 64 * 1024
_SPOOL_MAX_MEMORY = 4 * 1024 * 1024


def _cells(fact: ReportFact) -> list[Any]:
    row = fact.row()
    return ["；".join(row[c]) if c == "test_items" else row[c] for c in COLUMNS]


def csv_chunks(facts: Sequence[ReportFact]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(COLUMNS.values()))
    yield ("\ufeff" + buf.getvalue()).encode("utf-8")
    for fact in facts:
        buf.seek(0)
        buf.truncate()
        writer.writerow(_cells(fact))
        yield buf.getvalue().encode("utf-8")


def xlsx_chunks(facts: Sequence[ReportFact]) -> Iterator[bytes]:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("报告")
    sheet.append(list(COLUMNS.values()))
    for fact in facts:
        sheet.append(_cells(fact))
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_MEMORY) as tmp:
        book.save(tmp)
        tmp.seek(0)
        while chunk := tmp.read(CHUNK):
            yield chunk
