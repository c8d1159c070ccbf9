"""The public view of a report: its standing, its masked summary and its checked history.

A view checks the report's evidence (`service.domain.ancestry.walk`: its ancestry, plus
the seal and witness records of its samples) against its anchored batches:

1. the stored canonical bytes hash to the record's leaf (and parse back to the same id/type);
2. every file the record names is in the blob store with that SHA-256;
3. the record's `parents` are the leaf hashes of the rows its parent links lead to;
4. the leaf sits in its batch: the audit path built from the stored batch leaves leads to
   the batch root, and `anchorOf(root)` on the chain and the `Anchored` event of the
   batch transaction agree with the batch (verifier.proof, the same checks an auditor runs);
   a record is *pending* only while its leaf waits in the outbox or its batch is on its way
   to the chain: one in neither, or whose batch row is gone, lost its anchoring evidence and
   fails (数据异常 naming the step), and so does a waiting record when the chain's
   `batchCount` is beyond the last batch the database knows (anchored batches dropped);
5. the sealed PDF's signature (verifier.pdf), under the rule of `SignatureVerdicts`.

The checks are real on every view; what is cached, and what every view still reads, is
described in `views` (whole views, under the evidence change stamp) and `checks` (single
records, under everything their check read).

Modules, each a seam:

- `queries`: what a view reads from the database (the SQL is `service.storage.public_sql`);
- `chain`: `ChainReader`, the cached chain reads (anchors, receipts, revocations);
- `checks`: `Checker`, steps 1-4 per record, cached;
- `verdicts`: step 5, `SignatureChecker` and the stored `SignatureVerdicts`;
- `presentation`: the status and JSON built from the checks (labels, masked details);
- `page`: the HTML page rendered from that JSON;
- `views`: `ReportViews` (the per-process cache), `build_report_views`, `report_view`;
- `verify`: checking an uploaded PDF or photo (`POST /api/v1/public/verify`);
- `images`: the key images as the page serves them.
"""

from service.domain.public.page import render_page
from service.domain.public.presentation import (
    STATUS_LABELS,
    TIME_FIELDS,
    display_code,
    public_fields,
)
from service.domain.public.verdicts import SignatureChecker
from service.domain.public.views import (
    ReportView,
    ReportViews,
    UnknownCode,
    build_report_views,
    prime_verdict,
    report_view,
)

__all__ = [
    "STATUS_LABELS",
    "TIME_FIELDS",
    "ReportView",
    "ReportViews",
    "SignatureChecker",
    "UnknownCode",
    "build_report_views",
    "display_code",
    "prime_verdict",
    "public_fields",
    "render_page",
    "report_view",
]
