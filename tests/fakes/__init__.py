"""Test doubles for hardware SDKs (Tobii Pro SDK module surface, OpenCV ``VideoCapture``).

Written from the public API surface (names, constants, dict keys, call semantics), not from the
vendor's code. ``fake_tobii_research`` is checked against the real module on the Python 3.10 lane
(``tests/test_tobii_sdk.py``) so it cannot silently drift from the SDK.
"""


def wait_for(pred, timeout: float = 10.0) -> bool:
    """Poll ``pred`` every 20 ms until it is true (True) or ``timeout`` seconds pass (False)."""
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.02)
    return False
