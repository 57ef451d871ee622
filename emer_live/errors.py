"""The project's error hierarchy.

``EmerError`` subclasses are *user-facing* problems (bad input, a missing device, a corrupt
file): the CLI prints them as one line and exits non-zero. Anything else is a programming error
and keeps its traceback.
"""


class EmerError(Exception):
    """A problem the user can fix; its message says what, where and what to do."""

    exit_code = 2


class ConfigError(EmerError, ValueError):
    """An option or configuration value is invalid."""


class SessionFormatError(EmerError):
    """A session folder is missing, not a session, or damaged beyond what was asked."""


class SessionExistsError(EmerError):
    """Refusing to write into a folder that already holds a recording."""


class DeviceUnavailable(EmerError):
    """A device cannot be opened (SDK missing, hardware absent, wrong Python, ...)."""

    exit_code = 3


class StimulusError(EmerError):
    """A stimulus library or manifest is invalid."""


class CheckpointError(EmerError):
    """A model checkpoint is foreign, corrupt or incompatible."""


class DiskFullError(EmerError):
    """The recording disk ran out of space; what was written is kept."""

    exit_code = 4


class SessionLockedError(EmerError):
    """A session folder is in use: a writer holds its lock file (docs/recording-format.md)."""

    exit_code = 6
