"""Consent metadata for ``session.json``: which consent form the participant signed, and when.

The run layer calls :func:`consent_meta` and merges the result into the recorder's ``meta``
(``session.json/consent = {"version": ..., "date": "YYYY-MM-DD"}``), so a lab can answer "under
which consent was this recorded" from the folder alone, and `forget` requests can be checked
against it. The version is the lab's own label of its form ("2026-03", "v2.1", "ethics-123-v4").
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Optional, Union

from ..errors import ConfigError
from .ids import looks_identifying

__all__ = ["consent_meta", "validate_consent_version", "CONSENT_VERSION_RULE"]

CONSENT_VERSION_RULE = ("a consent version is the lab's label of its consent form: 1-40 characters from "
                        "letters, digits and . _ - / +, with at least one digit - its version or date "
                        "(e.g. 2026-03, v2.1, ethics-123-v4)")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,39}", re.ASCII)


def _as_words(label: str) -> str:
    """``Anna_Schmidt-v2`` / ``AnnaSchmidt`` -> ``Anna Schmidt v 2``: the label read as text, so
    the identifying-text check sees the words a name would be made of."""
    text = re.sub(r"[._/+-]+", " ", label)
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)           # camel case
    return re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)


def validate_consent_version(version: object) -> str:
    """Return ``version`` when it is a plausible consent-form label, else raise :class:`ConfigError`.

    A label holds a number (the form's version or date): a person's name never passes - the
    field would put the participant's (or the experimenter's) name into session.json."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ConfigError(f"--consent-version {version!r}: {CONSENT_VERSION_RULE}")
    words = _as_words(version)
    # " x" keeps a name at the label's start from counting as a sentence's first words
    why = looks_identifying(version) or looks_identifying("x " + words)
    if why or not any(c.isdigit() for c in version):
        reason = f"looks like personal data ({why})" if why else "holds no version number or date"
        raise ConfigError(f"--consent-version {version!r}: {reason}; give the consent form's label, "
                          f"e.g. 2026-03 or v2.1 - never a person's name")
    return version


def _as_date(date: Union[None, str, _dt.date], today: _dt.date) -> _dt.date:
    if date is None:
        return today
    if isinstance(date, _dt.datetime):
        return date.date()
    if isinstance(date, _dt.date):
        return date
    if isinstance(date, str):
        try:
            return _dt.date.fromisoformat(date.strip())
        except ValueError:
            pass
    raise ConfigError(f"--consent-date {date!r}: not a date; write it as YYYY-MM-DD (the day consent was given)")


def consent_meta(version: str, date: Union[None, str, _dt.date] = None, *,
                 today: Optional[_dt.date] = None) -> dict:
    """The ``session.json`` fields for consent: ``{"consent": {"version": V, "date": "YYYY-MM-DD"}}``.

    Parameters
    ----------
    version : str
        The consent form's label (:data:`CONSENT_VERSION_RULE`).
    date : str | datetime.date, optional
        The day consent was given (ISO ``YYYY-MM-DD``); default today (UTC).
    today : datetime.date, optional
        For tests: what "today" is.

    Raises
    ------
    ConfigError
        A malformed version, a date that is not a date, a date in the future or before 2000.
    """
    validate_consent_version(version)
    today = today or _dt.datetime.now(_dt.timezone.utc).date()
    d = _as_date(date, today)
    if d > today:
        raise ConfigError(f"--consent-date {d.isoformat()}: in the future (today is {today.isoformat()}); "
                          "give the day the participant signed")
    if d.year < 2000:
        raise ConfigError(f"--consent-date {d.isoformat()}: before 2000; give the day the participant signed")
    return {"consent": {"version": version, "date": d.isoformat()}}
