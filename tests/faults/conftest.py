"""The fault-injection suite (issue 17): each test injects one fault, checks that it is detected
and that what is lost stays within its bound, and adds a row to the table printed at the end:
fault, injected, detected, data lost (s), bound."""

from __future__ import annotations

import pytest

_ROWS = []


class FaultTable:
    """Rows for the end-of-run table; a test adds its row before asserting its bound, so a
    failing row is shown too."""

    def add(self, fault: str, injected: str, detected: str, lost_s=None, bound: str = "") -> None:
        _ROWS.append((fault, injected, detected, "-" if lost_s is None else f"{lost_s:.3f}", bound))


@pytest.fixture
def fault_table():
    return FaultTable()


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    head = ("fault", "injected", "detected", "data lost (s)", "bound")
    widths = [min(110, max(len(str(r[i])) for r in _ROWS + [head])) for i in range(5)]
    line = lambda r: "  ".join(str(c)[:widths[i]].ljust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    terminalreporter.section("fault injection")
    terminalreporter.write_line(line(head))
    terminalreporter.write_line("  ".join("-" * w for w in widths))
    for r in _ROWS:
        terminalreporter.write_line(line(r))
