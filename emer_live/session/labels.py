"""Moved to :mod:`emer_live.labels` (labels are shared by every stage, not a session concern);
this name stays importable for code written against the old path."""

from ..labels import *  # noqa: F401,F403
from ..labels import __all__  # noqa: F401
