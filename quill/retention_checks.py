"""When the language server checks how much of an accepted suggestion is still in the file.

Both sides read this: the language server validates its `retentionChecksS` setting against it,
and serving labels `quill_suggestion_chars_retained_total{after}` only with these delays, so a
client cannot grow the number of series by reporting made-up ones.
"""

from __future__ import annotations

# Seconds after the first acceptance at which a check may run (the short ones serve tests).
CHECK_DELAYS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
# Copilot's published checks are at 15 s to 10 min; these three cover typing on, the next
# edit pass, and the end of the task.
DEFAULT_CHECKS_S = (30, 120, 600)
MAX_CHECKS = 5


def after_label(seconds: int) -> str:
    """The `after` label value of a check: "30s", "600s"."""
    return f"{seconds}s"


def check_problem(checks: list[int]) -> str | None:
    """Why `checks` is not a usable list of check delays, or None when it is ([] turns the
    checks off)."""
    if len(checks) > MAX_CHECKS:
        return f"at most {MAX_CHECKS} checks"
    unknown = [c for c in checks if c not in CHECK_DELAYS_S]
    if unknown:
        allowed = ", ".join(map(str, CHECK_DELAYS_S))
        return f"{unknown} are not check delays; use some of {allowed}"
    if checks != sorted(set(checks)):
        return "the delays must be distinct and ascending"
    return None
