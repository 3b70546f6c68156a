"""Answers the probes (`/healthz`, `/readyz`, `/metrics`) before any other middleware runs.

A load balancer or Prometheus asks by address (``10.0.0.5:8000``), not by an allowed host name, and often over
plain HTTP inside the network: host validation (`ALLOWED_HOSTS`) and the HTTPS redirect would turn every probe
into a 400 or a 301. The probes read nothing from the request but the path and, for `/metrics`, the bearer
token, and say nothing about any ticket, so they are answered here, first. They make no trace spans either:
they are asked every few seconds. The views are in `triage.probes`.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from triage.probes import PROBES


class ProbesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path)
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return probe(request)
