"""The approval inbox: a page of pending items, and the decisions staff take on them.

One page template (`approvals/inbox.html`) with named partials; an htmx request renders only the
partial it swaps. Every link and form is a real GET link or POST form, so all of it works without
JavaScript as well: a decision then answers with a redirect back to the inbox (or an error page).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from approvals.forms import DecisionForm, InboxFilterForm
from approvals.models import ApprovalRequest, Decision
from approvals.selectors import (
    AGES,
    SORTS,
    InboxItem,
    approval_inbox_ids,
    approval_rows,
    inbox_counts,
    inbox_item_get,
    inbox_items,
    pending_count,
)
from approvals.services import AlreadyDecided, DecisionError, MoneyPermissionRequired, approval_decide
from triage.models import Category
from triage.views import staff_required

PAGE_SIZE = 20


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class CountedPaginator(Paginator):
    """A paginator told its count: the inbox counts already found it, so it is not queried again."""

    def __init__(self, object_list: object, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)  # type: ignore[arg-type]  # any sliceable, as Paginator accepts
        self.__dict__["count"] = count  # Paginator.count is a cached_property


def _partial_request(request: HtmxHttpRequest) -> bool:
    """An htmx swap (not a history restore, which needs the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


@require_GET
@staff_required("approvals.view_approvalrequest")
def inbox(request: HtmxHttpRequest) -> HttpResponse:
    form = InboxFilterForm(request.GET)
    filters = form.filters()
    now = timezone.now()
    categories = list(Category.objects.only("id", "label", "name").order_by("label"))
    counts = inbox_counts(filters=filters, now=now, categories=categories)
    paginator = CountedPaginator(approval_inbox_ids(filters=filters, now=now), PAGE_SIZE, count=counts.matching)
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "filters": filters,
        "counts": counts,
        "page": page,
        "items": inbox_items(approvals=approval_rows(ids=list(page.object_list))),
        "categories": categories,
        "ages": AGES,
        "sorts": SORTS,
        "query": _query(request, drop=("page",)),
        "pending_total": counts.pending_total,
        "next": request.get_full_path(),
        "nav": "inbox",
        **_permissions(request),
    }
    template = "approvals/inbox.html#inbox-main" if _partial_request(request) else "approvals/inbox.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_GET
@staff_required("approvals.view_approvalrequest")
def approval_detail(request: HtmxHttpRequest, approval_id: int) -> HttpResponse:
    item = _item_or_404(approval_id)
    context = {
        "item": item,
        "categories": _categories(),
        "next": request.GET.get("next", ""),
        "pending_total": pending_count(),
        **_permissions(request),
    }
    template = "approvals/inbox.html#card" if _partial_request(request) else "approvals/approval.html"
    return render(request, template, context)


@require_POST
@staff_required("approvals.view_approvalrequest", "approvals.add_decision")
def decide(request: HtmxHttpRequest, approval_id: int) -> HttpResponse:
    """Approve, edit-then-approve or reject. Refusals change nothing and say why:

    403 without the money permission (also for a reply that promises money), 409 when someone else
    decided first, 422 for invalid input or a reply that fails its checks (personal data, a money
    promise on a decision that moves no money).
    """
    if not ApprovalRequest.objects.filter(pk=approval_id).exists():
        raise Http404("No such approval request.")
    categories = _categories()
    form = DecisionForm(request.POST, categories=categories)
    next_url = _safe_next(request, request.POST.get("next", ""))
    if not form.is_valid():
        problems = " ".join(str(e) for errors in form.errors.values() for e in errors)
        return _refused(request, approval_id, problems, status=422, next_url=next_url)
    data = form.cleaned_data
    edit = data["verdict"] == Decision.Verdict.EDIT
    reply = data["reply"] if edit and "reply" in request.POST else None
    # A refused edit is shown again as the person wrote it, so fixing it does not mean retyping it.
    kept = {"edited_reply": reply}
    try:
        decision = approval_decide(
            approval_id=approval_id,
            actor=request.user,
            verdict=data["verdict"],
            reason=data["reason"],
            category=(data["category"] or None) if edit else None,
            reply=reply,
        )
    except MoneyPermissionRequired as exc:
        return _refused(request, approval_id, exc.reason, status=403, next_url=next_url, **kept)
    except AlreadyDecided as exc:
        return _refused(request, approval_id, exc.reason, status=409, next_url=next_url)
    except DecisionError as exc:
        return _refused(request, approval_id, _sentence(exc.reason), status=422, next_url=next_url, **kept)
    done = {"approve": "Approved", "edit": "Edited and approved", "reject": "Rejected"}[decision.verdict]
    message = f"{done}: ticket #{decision.approval.ticket_id}. The run carries it out now."
    if _partial_request(request):
        context = {
            "item": inbox_item_get(approval_id=approval_id),
            "categories": categories,
            "notice": message,
            "next": next_url,
            "pending_total": pending_count(),
            "oob_count": True,
            **_permissions(request),
        }
        return render(request, "approvals/inbox.html#decided", context)
    messages.success(request, message)
    return redirect(next_url)


def _refused(
    request: HtmxHttpRequest,
    approval_id: int,
    reason: str,
    *,
    status: int,
    next_url: str,
    edited_reply: str | None = None,
) -> HttpResponse:
    context = {
        "item": inbox_item_get(approval_id=approval_id),
        "categories": _categories(),
        "error": reason,
        "next": next_url,
        "status": status,
        "pending_total": pending_count(),
        "edited_reply": edited_reply,
        **_permissions(request),
    }
    template = "approvals/inbox.html#card" if _partial_request(request) else "approvals/decision_refused.html"
    return render(request, template, context, status=status)


def _item_or_404(approval_id: int) -> InboxItem:
    try:
        return inbox_item_get(approval_id=approval_id)
    except ApprovalRequest.DoesNotExist:
        raise Http404("No such approval request.") from None


def _categories() -> list[Category]:
    return list(Category.objects.only("id", "label", "name").order_by("label"))


def _permissions(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    return {
        "can_decide": user.has_perm("approvals.add_decision"),
        "can_approve_money": user.has_perm("approvals.approve_money"),
    }


def _query(request: HttpRequest, *, drop: tuple[str, ...]) -> str:
    params = request.GET.copy()
    for key in drop:
        params.pop(key, None)
    return params.urlencode()


def _safe_next(request: HttpRequest, candidate: str) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("approvals:inbox")


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text
