"""Participant IDs are pseudonyms: safe folder names, never names."""

from __future__ import annotations

import pytest

from emer_live.errors import ConfigError
from emer_live.session.ids import PARTICIPANT_ID_RULE, is_valid_participant_id, \
    validate_participant_id

RULE_START = "participant IDs are pseudonyms like P01, never names:"


@pytest.mark.parametrize("pid", ["P01", "p1", "S-012_b", "0042", "A" * 32, "x"])
def test_valid_ids(pid):
    assert validate_participant_id(pid) == pid and is_valid_participant_id(pid)


@pytest.mark.parametrize("pid, reason", [
    ("Jane Doe", "contains whitespace"),
    ("P 01", "contains whitespace"),
    (" P01", "contains whitespace"),
    ("P01\n", "contains whitespace"),
    ("P01\t", "contains whitespace"),
    ("lab/P01", "path separator '/'"),
    ("lab\\P01", "path separator '\\\\'"),
    ("../P01", "contains '.'"),
    ("J\u00f6rg", "non-ASCII character '\u00f6'"),
    ("Jos\u00e9", "non-ASCII character '\u00e9'"),
    ("\u0414\u0438\u043c\u0430", "non-ASCII character"),
    ("P\uff10\uff11", "non-ASCII character"),          # full-width digits
    ("A" * 33, "it has 33 characters"),
    ("", "it is empty"),
    ("-P01", "starts with '-'"),
    ("_P01", "starts with '_'"),
    ("P01.json", "contains '.'"),
    ("con", "reserved device name on Windows"),
    ("COM1", "reserved device name on Windows"),
])
def test_refused_ids_state_the_rule(pid, reason):
    with pytest.raises(ConfigError) as info:
        validate_participant_id(pid)
    msg = str(info.value)
    assert msg.startswith(RULE_START) and PARTICIPANT_ID_RULE in msg
    assert reason in msg, msg
    assert not is_valid_participant_id(pid)


@pytest.mark.parametrize("pid", [None, 1, b"P01"])
def test_non_string_ids(pid):
    with pytest.raises(ConfigError, match="not a string"):
        validate_participant_id(pid)
