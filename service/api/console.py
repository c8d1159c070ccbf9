"""The regulators' console under `/console/` (INTERFACE §7.8, docs/console.md): HTML pages
for auditor and agency accounts signed in with password and TOTP.

Every page but the sign-in page needs a live session (cookie `jz_console`: HttpOnly,
SameSite=Strict, Secure outside development); without one a GET is redirected (303) to
`/console/login`. Every POST carries the session's CSRF token (the sign-in form: a token
in its own cookie), else 403. Unmasked views and downloads are written to the access log.
The account's region bounds every page, count, row and download.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from service.api.deps import StateDep
from service.clock import utc_now
from service.domain.bundle import BundlePending, bundle_stream, plan_bundle
from service.domain.certificate import certificate_facts, issue_certificate
from service.domain.codes import canonical_or_none
from service.domain.console import auth, exports, ledger
from service.domain.console.pages import render
from service.domain.console.stats import (
    CONCLUSIONS,
    SORT_KEYS,
    STATUSES,
    ReportFact,
    SearchQuery,
    StatsQuery,
    flat_fields,
    overview,
    raw_bodies,
    report_facts,
    search,
)
from service.domain.public import views as public_views
from service.domain.signing import latest_signed_pdf, read_verified_blob
from service.errors import JianzhengError
from service.state import ServiceState

router = APIRouter(include_in_schema=False)

COOKIE = "jz_console"
LOGIN_COOKIE = "jz_console_login"
STATIC = Path(__file__).resolve().parent.parent / "pages" / "console"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8"}
#: Same-origin only: no inline script, no framing, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

def _ip(request: Request) -> str:
    return request.client.host if request.client else "-"


def _secure(state: ServiceState) -> bool:
    return state.settings.env != "development"


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _message(user: auth.ConsoleUser | None, title: str, text: str, status: int) -> HTMLResponse:
    return _html(render("message.html", user=user, title=title, text=text, nav=""), status)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse("/console/login?next=" + quote(target, safe=""), status_code=303,
                            headers={"Cache-Control": "no-store"})


def _user(request: Request, session: Session, state: ServiceState) -> auth.ConsoleUser | None:
    user = auth.current_user(session, state.settings, request.cookies.get(COOKIE))
    session.commit()  # the last use (or the idle expiry) is kept
    return user


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/console/") and "//" not in value and "\\" not in value:
        return value
    return "/console/"


# --------------------------------------------------------------------------- sign-in


@router.get("/console")
def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=308)


@router.get("/console/login")
def login_page(request: Request, state: StateDep, next: str | None = None) -> Response:
    return _login_form(state, next, None, "", 200)


def _login_form(state: ServiceState, next: str | None, error: str | None, login: str,
                status: int) -> HTMLResponse:
    """The sign-in page with a new CSRF token, also set in its own cookie (double submit)."""
    token = auth.new_form_token()
    page = _html(render("login.html", user=None, csrf=token, next=_safe_next(next),
                        error=error, login=login, nav=""), status)
    page.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                    secure=_secure(state), path="/console/login", max_age=1800)
    return page


@router.post("/console/login")
def login_submit(
    request: Request,
    state: StateDep,
    login: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    totp: Annotated[str, Form(max_length=16)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console/",
) -> Response:
    if not auth.same_token(request.cookies.get(LOGIN_COOKIE), csrf):
        return _message(None, "请求无效",
                        "表单已过期或来源不明（CSRF 校验失败），请重新打开登录页。", 403)
    with state.sessions() as session:
        try:
            signed = auth.sign_in(session, state.settings, login=login, password=password,
                                  code=totp, ip=_ip(request))
        except auth.SigninRefused as refused:
            session.commit()
            if refused.reason == "throttled":
                minutes = max(1, -(-refused.retry_after_s // 60))
                error = f"登录失败次数过多，请 {minutes} 分钟后再试。"
                status = 429
            else:
                error = "用户名、密码或动态验证码不正确。"
                status = 401
            page = _login_form(state, next, error, login[:64], status)
            if status == 429:
                page.headers["Retry-After"] = str(refused.retry_after_s)
            return page
        session.commit()
    response = RedirectResponse(_safe_next(next), status_code=303,
                                headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE, signed.token, httponly=True, samesite="strict",
                        secure=_secure(state), path="/console",
                        max_age=state.settings.console.max_session_s)
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/console/logout")
def logout(request: Request, state: StateDep,
           csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    with state.sessions() as session:
        user = _user(request, session, state)
        if user is None:
            return _to_login(request)
        if not auth.csrf_ok(user, csrf):
            return _message(user, "请求无效", "CSRF 校验失败，未退出登录。", 403)
        auth.sign_out(session, request.cookies.get(COOKIE))
        session.commit()
    response = RedirectResponse("/console/login", status_code=303,
                                headers={"Cache-Control": "no-store"})
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict",
                           secure=_secure(state))
    return response


# --------------------------------------------------------------------------- pages


@router.get("/console/")
def overview_page(request: Request, state: StateDep) -> Response:
    with state.sessions() as session:
        user = _user(request, session, state)
        if user is None:
            return _to_login(request)
        p = request.query_params
        filters = StatsQuery(date_from=_date(p.get("from")), date_to=_date(p.get("to")),
                             institution=p.get("institution", "")[:18] or None,
                             test_item=p.get("test_item", "")[:200] or None)
        if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
            filters = StatsQuery(date_from=filters.date_to, date_to=filters.date_from,
                                 institution=filters.institution, test_item=filters.test_item)
        data = overview(session, state.settings, user.scope, filters=filters)
    return _html(render("overview.html", user=user, d=data, nav="overview"))


def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _search_query(request: Request, per_page: int = 20) -> SearchQuery:
    p = request.query_params
    sort = p.get("sort", "issued_on")
    try:
        page = max(1, int(p.get("page", "1") or "1"))
        per_page = min(200, max(1, int(p.get("per_page", str(per_page)) or per_page)))
    except ValueError:
        page = 1
    return SearchQuery(
        code=p.get("code", "")[:64], report_no=p.get("report_no", "")[:64],
        project=p.get("project", "")[:100], institution=p.get("institution", "")[:100],
        test_item=p.get("test_item", "")[:100],
        conclusion=p.get("conclusion", "") if p.get("conclusion") in CONCLUSIONS else "",
        status=p.get("status", "") if p.get("status") in STATUSES else "",
        date_from=_date(p.get("from")), date_to=_date(p.get("to")),
        sort=sort if sort in SORT_KEYS else "issued_on", desc=p.get("order", "desc") != "asc",
        page=min(page, 10**6), per_page=per_page,
    )


def _filters(q: SearchQuery) -> dict[str, str]:
    out = {"code": q.code, "report_no": q.report_no, "project": q.project,
           "institution": q.institution, "test_item": q.test_item,
           "conclusion": q.conclusion, "status": q.status,
           "from": q.date_from.isoformat() if q.date_from else "",
           "to": q.date_to.isoformat() if q.date_to else ""}
    return {k: v for k, v in out.items() if v}


def _searched(request: Request, state: ServiceState, *, every: bool = False
              ) -> Response | tuple[auth.ConsoleUser, SearchQuery, dict[str, Any]]:
    """The signed-in user, the query of the request's filters and its result (or the
    sign-in redirect): one search for the page and its export."""
    with state.sessions() as session:
        user = _user(request, session, state)
        if user is None:
            return _to_login(request)
        q = _search_query(request)
        return user, q, search(session, user.scope, q, every=every)


@router.get("/console/reports")
def reports_page(request: Request, state: StateDep) -> Response:
    searched = _searched(request, state)
    if isinstance(searched, Response):
        return searched
    user, q, result = searched
    filters = _filters(q)

    def link(**changes: Any) -> str:
        params = {**filters, "sort": q.sort, "order": "desc" if q.desc else "asc",
                  "page": str(q.page), "per_page": str(q.per_page),
                  **{k: str(v) for k, v in changes.items()}}
        return "/console/reports?" + urlencode(params)

    def sort_link(key: str) -> str:
        order = "asc" if q.sort == key and q.desc else "desc"
        return link(sort=key, order=order, page=1)

    return _html(render("reports.html", user=user, q=q, r=result, link=link,
                        sort_link=sort_link, export=urlencode(filters), nav="reports",
                        statuses=STATUSES))


#: Export formats: (media type, file name, chunk writer).
EXPORTS = {
    "csv": ("text/csv; charset=utf-8", "jianzheng-reports.csv", exports.csv_chunks),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             "jianzheng-reports.xlsx", exports.xlsx_chunks),
}


@router.get("/console/reports.{fmt}")
def reports_export(fmt: str, request: Request, state: StateDep) -> Response:
    """Every row of the search (not one page), as CSV or XLSX, streamed."""
    if fmt not in EXPORTS:
        return Response(status_code=404)
    searched = _searched(request, state, every=True)
    if isinstance(searched, Response):
        return searched
    media, name, writer = EXPORTS[fmt]
    return StreamingResponse(writer(searched[2]["all"]), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def _open_report(request: Request, session: Session, state: ServiceState, code_text: str
                 ) -> Response | tuple[auth.ConsoleUser, str, ReportFact]:
    """The signed-in user and the report of their region, or the answer instead: the
    sign-in redirect, or 404 for a code of another region or none at all (the same)."""
    user = _user(request, session, state)
    if user is None:
        return _to_login(request)
    code = canonical_or_none(code_text)
    facts = report_facts(session, user.scope, code=code) if code else []
    if code is None or not facts:
        return _message(user, "未找到", "本辖区没有该标识码的报告。", 404)
    return user, code, facts[0]


@router.get("/console/reports/{code}")
def report_page(code: str, request: Request, state: StateDep) -> Response:
    with state.sessions() as session:
        opened = _open_report(request, session, state, code)
        if isinstance(opened, Response):
            return opened
        user, canonical, fact = opened
        session.commit()  # the view is built in sessions of its own (SQLite: one writer)
        view = public_views.report_view(state.views.get(), state.sessions, canonical)
        data = view.data if view is not None else {}
        steps = data.get("chain", [])
        bodies = raw_bodies(session, [s["record_id"] for s in steps])
        auth.log_access(session, user, action=auth.ACTION_VIEW, report_code=canonical,
                        institution=fact.institution, ip=_ip(request))
        session.commit()
        numbering = [f.row() for f in report_facts(session, user.scope,
                                                   institution=fact.institution,
                                                   year=fact.year)]
        ledger_view = ledger.view_of(session, fact.institution, canonical)
    numbering.sort(key=lambda r: r["report_no"])
    at = next((i for i, r in enumerate(numbering) if r["code"] == canonical), 0)
    context = numbering[max(0, at - 3): at + 4]
    return _html(render("report.html", user=user, f=fact.row(), v=data, steps=steps,
                        fields={rid: flat_fields(b) for rid, b in bodies.items()},
                        context=context, ledger=ledger_view, nav="reports"))


@router.post("/console/reports/{code}/ledger-actions")
def ledger_action(
    code: str, request: Request, state: StateDep,
    action: Annotated[str, Form(max_length=24)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """An agency's handling step on the report's nonconforming-ledger entry."""
    with state.sessions() as session:
        opened = _open_report(request, session, state, code)
        if isinstance(opened, Response):
            return opened
        user, canonical, fact = opened
        if not auth.csrf_ok(user, csrf):
            return _message(user, "请求无效", "CSRF 校验失败，未记录处置。", 403)
        try:
            ledger.record_action(session, user, institution=fact.institution, code=canonical,
                                 action=action, note=note)
        except JianzhengError as exc:
            return _message(user, "未记录", f"{exc.code}: {exc.detail}", exc_status(exc))
        session.commit()
    return RedirectResponse(f"/console/reports/{canonical}#ledger", status_code=303)


def _download(request: Request, state: StateDep, code: str, action: str) -> Response:
    with state.sessions() as session:
        opened = _open_report(request, session, state, code)
        if isinstance(opened, Response):
            return opened
        user, canonical, fact = opened
        try:
            if action == auth.ACTION_PDF:
                sha = latest_signed_pdf(session, canonical)
                if sha is None:
                    return _message(user, "暂无签章报告", "该报告尚未上传签章 PDF。", 404)
                payload: Any = read_verified_blob(state.blobs, sha)
                media, name = "application/pdf", f"{canonical}.pdf"
            elif action == auth.ACTION_CERTIFICATE:
                facts = certificate_facts(session, canonical, state.chain)
                payload = issue_certificate(state.signer.get(), facts,
                                            state.settings.public.base_url, utc_now())
                media, name = "application/pdf", f"jianzheng-certificate-{canonical}.pdf"
            else:
                plan = plan_bundle(session, canonical, state.chain)
                payload = plan
                media, name = "application/zip", f"jianzheng-bundle-{canonical}.zip"
        except BundlePending:
            return _message(user, "证据尚未全部上链",
                            "该报告仍有记录等待区块链存证确认，请稍后再下载。", 202)
        except JianzhengError as exc:
            return _message(user, "无法下载", f"{exc.code}: {exc.detail}", exc_status(exc))
        auth.log_access(session, user, action=action, report_code=canonical,
                        institution=fact.institution, ip=_ip(request))
        session.commit()
    headers = {"Content-Disposition": f'attachment; filename="{name}"',
               "Cache-Control": "no-store"}
    if action == auth.ACTION_BUNDLE:
        chunks, length = bundle_stream(payload, state.blobs)
        headers["Content-Length"] = str(length)
        return StreamingResponse(chunks, media_type=media, headers=headers)
    return Response(payload, media_type=media, headers=headers)


def exc_status(exc: JianzhengError) -> int:
    from service.api.problems import STATUS_BY_CODE

    return STATUS_BY_CODE.get(exc.code, 400)


@router.get("/console/reports/{code}/bundle")
def report_bundle(code: str, request: Request, state: StateDep) -> Response:
    return _download(request, state, code, auth.ACTION_BUNDLE)


@router.get("/console/reports/{code}/pdf")
def report_pdf(code: str, request: Request, state: StateDep) -> Response:
    return _download(request, state, code, auth.ACTION_PDF)


@router.get("/console/reports/{code}/certificate")
def report_certificate(code: str, request: Request, state: StateDep) -> Response:
    return _download(request, state, code, auth.ACTION_CERTIFICATE)


@router.get("/console/access-log")
def access_log_page(request: Request, state: StateDep) -> Response:
    with state.sessions() as session:
        user = _user(request, session, state)
        if user is None:
            return _to_login(request)
        rows = auth.access_log(session, user)
    return _html(render("access_log.html", user=user, rows=rows, nav="access"))


@router.get("/console/static/{name:path}")
def static_file(name: str) -> Response:
    path = (STATIC / name).resolve()
    if STATIC.resolve() not in path.parents or not path.is_file():
        return Response(status_code=404)
    media = STATIC_TYPES.get(path.suffix, "application/octet-stream")
    return Response(path.read_bytes(), media_type=media,
                    headers={"Cache-Control": "public, max-age=3600",
                             "X-Content-Type-Options": "nosniff"})
