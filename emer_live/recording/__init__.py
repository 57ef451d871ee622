"""Recording stage: the crash-safe session writer, the reader, repair and replay (FORMAT v2).

The format is specified in ``docs/recording-format.md``.
"""

from .format import FORMAT_NAME, FORMAT_VERSION
from .reader import SessionReader, Segment, is_session_dir
from .writer import Recorder

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Recorder", "SessionReader", "Segment", "is_session_dir"]
