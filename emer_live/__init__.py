"""emer_live: an eye tracker + webcam emotion-recognition instrument built on the EMER study.

Stages live in one sub-package each (devices, recording, features, model, live, session, ui);
everything but ``ui`` imports without PyQt6, and hardware SDKs are imported lazily inside their
adapters.
"""

__version__ = "0.1.0"
