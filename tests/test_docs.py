"""The CLI reference in docs/ is generated from --help and must be in step with it."""

from pathlib import Path

from emer_live._clidoc import render


def test_cli_reference_is_current():
    doc = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert doc.read_text(encoding="utf-8") == render(), \
        "docs/cli.md is stale: run `python -m emer_live._clidoc > docs/cli.md`"
