"""What `invoke doctor` found *: each check's result (ok, failed, not applicable), what was
seen or what is wrong, and for a failure the fix (a command where one exists); as a table
for people, as data for scripts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, FAILED, NOT_APPLICABLE = "ok", "failed", "n/a"
SYMBOLS = {OK: "✓", FAILED: "✗", NOT_APPLICABLE: "–"}
PLAIN = {OK: "ok", FAILED: "FAIL", NOT_APPLICABLE: "-"}  # for a terminal that cannot show the symbols


@dataclass(frozen=True)
class Check:
    where: str  # "host", or a VM's name
    name: str  # what was checked
    status: str  # OK, FAILED or NOT_APPLICABLE
    detail: str = ""  # what was seen; for a failure, its cause in one line
    fix: str = ""  # for a failure: what to do, a command where one exists


def ok(where: str, name: str, detail: str = "") -> Check:
    return Check(where, name, OK, detail)


def failed(where: str, name: str, cause: str, fix: str) -> Check:
    return Check(where, name, FAILED, cause, fix)


def not_applicable(where: str, name: str, why: str) -> Check:
    return Check(where, name, NOT_APPLICABLE, why)


def table_rows(checks: list[Check], symbols: dict[str, str] = SYMBOLS) -> list[dict]:
    """A row per check: where, what, the result's symbol, and what was seen (with the fix of a failure)."""
    return [
        {"where": check.where, "check": check.name, "result": symbols[check.status], "detail": check.detail + (f"; fix: {check.fix}" if check.fix else "")}
        for check in checks
    ]


def as_data(checks: list[Check]) -> list[dict]:
    return [asdict(check) for check in checks]


def any_failed(checks: list[Check]) -> bool:
    return any(check.status == FAILED for check in checks)


def summary(checks: list[Check], seconds: float) -> str:
    counts = {status: sum(check.status == status for check in checks) for status in (OK, FAILED, NOT_APPLICABLE)}
    return (
        f"kubenet: doctor: {counts[OK]} ok, {counts[FAILED]} failed, {counts[NOT_APPLICABLE]} not applicable, in {seconds:.1f} s"
        + ("" if counts[FAILED] else "; all is well")
    )
