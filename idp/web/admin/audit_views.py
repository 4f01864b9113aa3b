"""Admin console: the audit trail of admin changes (CLI and console), newest first, with before/after."""

from __future__ import annotations

from flask import render_template, request

from idp.services.admin_queries import PAGE_SIZE, audit_page
from idp.web.admin import bp, page_number


@bp.get("/audit")
def audit() -> str:
    target = (request.args.get("target") or "").strip()[:300]
    page = page_number()
    rows, more = audit_page(target, offset=(page - 1) * PAGE_SIZE)
    return render_template("admin/audit.html", section="audit", rows=rows, target=target, page=page, more=more)
