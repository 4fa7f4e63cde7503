"""Per-tenant series, for operators who opt in (`quill serve --metrics-tenant-labels N`).

Off by default: tenants never become label values, so the number of series does not grow with
the number of users. Opted in, the first N tenants seen get their own label value and every
later one is "other", so the series stay bounded by N. The series are separate from the
fleet-wide ones (which keep no tenant label either way), so dashboards and rules are unaffected.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter

OTHER = "other"
MAX_LABELLED_TENANTS = 1000

TENANT_REQUESTS = Counter(
    "quill_tenant_requests",
    "Authenticated RPCs by tenant and method (only with --metrics-tenant-labels).",
    ["tenant", "method"],
)
TENANT_SUGGESTIONS_ACCEPTED = Counter(
    "quill_tenant_suggestions_accepted",
    "Suggestions accepted whole, by tenant (only with --metrics-tenant-labels).",
    ["tenant"],
)
TENANT_SUGGESTION_CHARS_ACCEPTED = Counter(
    "quill_tenant_suggestion_chars_accepted",
    "Characters of suggestions accepted, by tenant (only with --metrics-tenant-labels).",
    ["tenant"],
)


class TenantLabels:
    """The label value of each tenant: its name for the first `limit` tenants seen, "other"
    for the rest, and no series at all when `limit` is 0."""

    def __init__(self, limit: int = 0) -> None:
        self._limit = min(max(limit, 0), MAX_LABELLED_TENANTS)
        self._labelled: set[str] = set()
        self._lock = threading.Lock()

    def label(self, tenant: str) -> str | None:
        if not self._limit:
            return None
        with self._lock:
            if tenant in self._labelled:
                return tenant
            if len(self._labelled) < self._limit:
                self._labelled.add(tenant)
                return tenant
        return OTHER

    def count_request(self, tenant: str, method: str) -> None:
        label = self.label(tenant)
        if label is not None:
            TENANT_REQUESTS.labels(label, method).inc()

    def count_accepted(self, tenant: str, chars: int, whole: bool) -> None:
        label = self.label(tenant)
        if label is None:
            return
        TENANT_SUGGESTION_CHARS_ACCEPTED.labels(label).inc(chars)
        if whole:
            TENANT_SUGGESTIONS_ACCEPTED.labels(label).inc()
