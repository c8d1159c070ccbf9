"""`/metrics` beyond anchoring (R16, R20): undelivered agency notifications, open
uploads and the data volume's free space, by value."""

from __future__ import annotations

import shutil

from fastapi.testclient import TestClient
from sqlalchemy import update

from service.domain.nonconforming import record_nonconforming
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Notification
from tests.anchoring_support import prometheus_values
from tests.labkit import add_lab, client_for, make_app, seed_report
from tests.recordkit import start_upload


def test_housekeeping_metrics(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 95)
    assert lab.institution
    with client_for(app, lab) as c:
        start_upload(c, 1000)
        start_upload(c, 2000)
    for code in ("JZ-M1", "JZ-M2"):
        report = seed_report(app_state, lab.institution, code)
        with session_scope(app_state.sessions) as s:
            record_nonconforming(s, report, lab.institution, code, {"conclusion": "fail"})
    with session_scope(app_state.sessions) as s:
        s.execute(
            update(Notification)
            .where(Notification.id == s.query(Notification.id).limit(1).scalar_subquery())
            .values(status="failed")
        )

    with TestClient(app) as http:  # no webhook configured: nothing is delivered
        values = prometheus_values(http.get("/metrics").text)
    assert values["jianzheng_notifications_pending"] == 1
    assert values["jianzheng_notifications_failed"] == 1
    assert values["jianzheng_uploads_open"] == 2
    usage = shutil.disk_usage(app_state.settings.data_dir)
    assert values["jianzheng_data_total_bytes"] == usage.total
    assert 0 < values["jianzheng_data_free_bytes"] <= usage.total
