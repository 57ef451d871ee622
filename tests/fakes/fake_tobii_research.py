"""A fake of the ``tobii_research`` module (Tobii Pro SDK 2.x) for tests on any Python.

It reproduces the surface the adapter uses, written from the SDK's documented API and observed
behaviour (not from its code): the same constant names and values, the same dictionary keys
(``subscribe_to(..., as_dictionary=True)``), the same exception classes, subscription rules
(a callback may be subscribed once per type; notifications share one internal stream), and
callbacks delivered from a foreign thread at the tracker's rate, with the SDK's lock held.

Test controls (not part of the SDK) start with ``fake_``:

* :func:`fake_reset` - forget every tracker, stop their threads, set the time base (``speed``
  > 1 runs the virtual clock faster than real time so 60 s of 250 Hz data take 3 s at 20x).
* :func:`fake_add_tracker` - plug a tracker described by :class:`FakeTrackerConfig` (model,
  frequencies, capabilities, and a scenario: a connection loss, a stream-buffer overflow,
  device-clock drift, blinks).
* :func:`fake_clock` - a session clock that reads the fake's ``get_system_time_stamp``.

Each tracker records what it delivered (``fake_delivered_gaze``: system time stamps handed to
gaze callbacks) so tests can check that nothing delivered was lost.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__version__ = "2.1.0.1-fake"

# --------------------------------------------------------------------------- constants
CAPABILITY_CAN_SET_DISPLAY_AREA = "capability_can_set_display_area"
CAPABILITY_HAS_EXTERNAL_SIGNAL = "capability_has_external_signal"
CAPABILITY_HAS_EYE_IMAGES = "capability_has_eye_images"
CAPABILITY_HAS_GAZE_DATA = "capability_has_gaze_data"
CAPABILITY_CAN_DO_SCREEN_BASED_CALIBRATION = "capability_can_do_screen_based_calibration"
CAPABILITY_CAN_DO_MONOCULAR_CALIBRATION = "capability_can_do_monocular_calibration"
CAPABILITY_HAS_EYE_OPENNESS_DATA = "capability_has_eye_openness_data"

EYETRACKER_EXTERNAL_SIGNAL = "eyetracker_external_signal"
EYETRACKER_EYE_IMAGES = "eyetracker_eye_images"
EYETRACKER_GAZE_DATA = "eyetracker_gaze_data"
EYETRACKER_USER_POSITION_GUIDE = "eyetracker_user_position_guide"
EYETRACKER_NOTIFICATION_CALIBRATION_MODE_ENTERED = "eyetracker_notification_calibration_mode_entered"
EYETRACKER_NOTIFICATION_CALIBRATION_MODE_LEFT = "eyetracker_notification_calibration_mode_left"
EYETRACKER_NOTIFICATION_CALIBRATION_CHANGED = "eyetracker_notification_calibration_changed"
EYETRACKER_NOTIFICATION_CONNECTION_LOST = "eyetracker_notification_connection_lost"
EYETRACKER_NOTIFICATION_CONNECTION_RESTORED = "eyetracker_notification_connection_restored"
EYETRACKER_NOTIFICATION_DISPLAY_AREA_CHANGED = "eyetracker_notification_display_area_changed"
EYETRACKER_NOTIFICATION_GAZE_OUTPUT_FREQUENCY_CHANGED = "eyetracker_notification_gaze_output_frequency_changed"
EYETRACKER_NOTIFICATION_EYE_TRACKING_MODE_CHANGED = "eyetracker_notification_eye_tracking_mode_changed"
EYETRACKER_NOTIFICATION_DEVICE_FAULTS = "eyetracker_notification_device_faults"
EYETRACKER_NOTIFICATION_DEVICE_WARNINGS = "eyetracker_notification_device_warnings"
EYETRACKER_NOTIFICATION_STREAM_BUFFER_OVERFLOW = "eyetracker_notification_stream_buffer_overflow"
EYETRACKER_STREAM_ERRORS = "eyetracker_stream_errors"
EYETRACKER_TIME_SYNCHRONIZATION_DATA = "eyetracker_time_synchronization_data"
EYETRACKER_EYE_OPENNESS_DATA = "eyetracker_eye_openness_data"

CALIBRATION_STATUS_FAILURE = "calibration_status_failure"
CALIBRATION_STATUS_SUCCESS = "calibration_status_success"
CALIBRATION_STATUS_SUCCESS_LEFT_EYE = "calibration_status_success_left_eye"
CALIBRATION_STATUS_SUCCESS_RIGHT_EYE = "calibration_status_success_right_eye"
VALIDITY_INVALID_AND_NOT_USED = "validity_invalid_and_not_used"
VALIDITY_VALID_BUT_NOT_USED = "validity_valid_but_not_used"
VALIDITY_VALID_AND_USED = "validity_valid_and_used"

STREAM_ERROR_SOURCE_USER = "stream_error_source_user"
STREAM_ERROR_SOURCE_STREAM_PUMP = "stream_error_source_stream_pump"
STREAM_ERROR_SOURCE_SUBSCRIPTION_GAZE_DATA = "stream_error_source_subscription_gaze_data"
STREAM_ERROR_CONNECTION_LOST = "stream_error_connection_lost"
STREAM_ERROR_NOT_SUPPORTED = "stream_error_not_supported"
STREAM_ERROR_INTERNAL_ERROR = "stream_error_internal_error"

_NOTIFICATIONS = (
    EYETRACKER_NOTIFICATION_CALIBRATION_MODE_ENTERED, EYETRACKER_NOTIFICATION_CALIBRATION_MODE_LEFT,
    EYETRACKER_NOTIFICATION_CALIBRATION_CHANGED, EYETRACKER_NOTIFICATION_CONNECTION_LOST,
    EYETRACKER_NOTIFICATION_CONNECTION_RESTORED, EYETRACKER_NOTIFICATION_DISPLAY_AREA_CHANGED,
    EYETRACKER_NOTIFICATION_GAZE_OUTPUT_FREQUENCY_CHANGED, EYETRACKER_NOTIFICATION_EYE_TRACKING_MODE_CHANGED,
    EYETRACKER_NOTIFICATION_DEVICE_FAULTS, EYETRACKER_NOTIFICATION_DEVICE_WARNINGS,
    EYETRACKER_NOTIFICATION_STREAM_BUFFER_OVERFLOW,
)
_STREAMS = (EYETRACKER_GAZE_DATA, EYETRACKER_EXTERNAL_SIGNAL, EYETRACKER_TIME_SYNCHRONIZATION_DATA,
            EYETRACKER_STREAM_ERRORS, EYETRACKER_EYE_IMAGES, EYETRACKER_USER_POSITION_GUIDE,
            EYETRACKER_EYE_OPENNESS_DATA)


# --------------------------------------------------------------------------- exceptions
class EyeTrackerConnectionFailedError(Exception):
    pass


class EyeTrackerFeatureNotSupportedError(Exception):
    pass


class EyeTrackerInternalError(Exception):
    pass


class EyeTrackerInvalidOperationError(Exception):
    pass


class EyeTrackerLicenseError(Exception):
    pass


class EyeTrackerOperationFailedError(Exception):
    pass


class EyeTrackerUnavailableError(Exception):
    pass


class EyeTrackerDisplayAreaNotValidError(Exception):
    pass


# --------------------------------------------------------------------------- time base
class _TimeBase:
    """Virtual microsecond clock: ``speed`` times real time, starting at the monotonic clock."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = float(speed)
        self._wall0 = time.monotonic_ns() // 1000
        self._t0 = self._wall0

    def now_us(self) -> int:
        return self._t0 + int((time.monotonic_ns() // 1000 - self._wall0) * self.speed)

    def wait_until(self, t_us: int, stop: threading.Event) -> bool:
        """Wait (real time) until the virtual clock reads ``t_us``; True if ``stop`` was set."""
        left = (t_us - self.now_us()) / self.speed / 1e6
        if left > 0:
            return stop.wait(left)
        return stop.is_set()


class FakeClock:
    """A session clock (``now_us``/``sleep_until``/``describe``) reading the fake SDK clock."""

    source = "fake tobii_research.get_system_time_stamp"

    def now_us(self) -> int:
        return get_system_time_stamp()

    def sleep_until(self, t_us: int) -> None:
        _state.time.wait_until(t_us, threading.Event())

    def describe(self) -> dict:
        return {"source": self.source, "unit": "us", "start_t_us": self.now_us()}


class _State:
    def __init__(self) -> None:
        self.time = _TimeBase()
        self.trackers: List["EyeTracker"] = []
        self.search_s = 0.0


_state = _State()


def get_system_time_stamp() -> int:
    """Microseconds on the (virtual) system clock, like the SDK's."""
    return _state.time.now_us()


# --------------------------------------------------------------------------- display area
class DisplayArea:
    """Corners of the active display area in the user coordinate system (mm)."""

    def __init__(self, display_area: dict) -> None:
        if (not isinstance(display_area, dict)
                or not all(isinstance(display_area.get(k), tuple) for k in ("bottom_left", "top_left", "top_right"))):
            raise ValueError("DisplayArea requires a dictionary with the coordinates of the display area "
                             "(top_left, top_right, bottom_left).")
        self._bl = tuple(float(v) for v in display_area["bottom_left"])
        self._tl = tuple(float(v) for v in display_area["top_left"])
        self._tr = tuple(float(v) for v in display_area["top_right"])

    bottom_left = property(lambda self: self._bl)
    top_left = property(lambda self: self._tl)
    top_right = property(lambda self: self._tr)

    @property
    def bottom_right(self):
        return tuple(a - b + c for a, b, c in zip(self._tr, self._tl, self._bl))

    @property
    def width(self) -> float:
        return math.dist(self._tl, self._tr)

    @property
    def height(self) -> float:
        return math.dist(self._tl, self._bl)


# --------------------------------------------------------------------------- configuration
@dataclass
class FakeTrackerConfig:
    """What the fake tracker is and what happens to it (times in virtual seconds after the
    first stream subscription)."""

    address: str = "tobii-prp://TPFC2-010202524041"
    device_name: str = "Tobii Pro Fusion"
    serial_number: str = "TPFC2-010202524041"
    model: str = "Tobii Pro Fusion"
    firmware_version: str = "2.4.3-fake"
    runtime_version: str = "1.10.0-fake"
    frequencies: Tuple[float, ...] = (60.0, 120.0, 250.0)
    frequency: float = 120.0
    eye_openness: bool = False          # the Pro Fusion does not offer eye openness
    can_calibrate: bool = True
    display_area: Dict[str, tuple] = field(default_factory=lambda: {
        "top_left": (-265.5, 314.0, 0.0), "top_right": (265.5, 314.0, 0.0), "bottom_left": (-265.5, 15.0, 0.0)})
    # scenario
    duration_s: Optional[float] = None          # stop producing after this long
    disconnect_at_s: Optional[float] = None
    disconnect_for_s: float = 1.0
    resume_after_restore: bool = True            # False: old subscriptions stay dead until re-subscribed
    overflow_at_s: Optional[float] = None
    overflow_samples: int = 10
    burst: int = 1                               # deliver this many samples back to back
    jitter_us: int = 30
    drift_ppm: float = 25.0                      # device clock vs system clock
    device_offset_us: int = 4_000_000_000
    time_sync_interval_s: float = 1.0
    blink_every_s: float = 3.0
    blink_s: float = 0.15
    gaze_noise: float = 0.002                    # SD of the gaze point, normalised display units
    head_sway_mm: float = 5.0
    look_at: Optional[Tuple[float, float]] = None   # set at run time: the participant fixates here
    look_bias: Tuple[float, float] = (0.0, 0.0)     # ... with this normalised offset
    calibration_collect_s: float = 0.0           # virtual time collect_data takes
    calibration_fail_points: Sequence[Tuple[float, float]] = ()   # collect_data fails once there
    calibration_bias: Tuple[float, float] = (0.004, -0.003)      # normalised offset of calibration samples
    seed: int = 1


# --------------------------------------------------------------------------- eye tracker
class EyeTracker:
    """A fake eye tracker; ``EyeTracker(address)`` finds a plugged fake by its address."""

    def __init__(self, address) -> None:
        if isinstance(address, str):
            for t in _state.trackers:
                if t.address == address and t._plugged:
                    # A second handle to the same device shares its state (subscriptions, pump).
                    self.__dict__ = t.__dict__
                    return
            raise EyeTrackerConnectionFailedError("The connection to the eye tracker failed. 'se_connection_failed'")
        if not isinstance(address, FakeTrackerConfig):
            raise ValueError("An EyeTracker must be initialized with a URI.")
        cfg = address
        self.config = cfg
        self._frequency = float(cfg.frequency)
        self._plugged = True
        self._lock = threading.RLock()
        self._subs: Dict[str, Dict[Callable, Tuple[bool, int]]] = {}
        self._notif_subs: Dict[str, Dict[Callable, bool]] = {}
        self._generation = 0
        self._pump_thread: Optional[threading.Thread] = None
        self._pump_stop = threading.Event()
        self._calibrating = False
        self._cal_points: Dict[Tuple[float, float], int] = {}
        self._cal_failed_once: set = set()
        self.fake_delivered_gaze: List[int] = []
        self.fake_done = False              # the scenario's duration_s has been produced
        self.fake_generated = 0
        self.fake_subscribe_calls: List[str] = []

    # -- properties
    address = property(lambda self: self.config.address)
    device_name = property(lambda self: self.config.device_name)
    serial_number = property(lambda self: self.config.serial_number)
    model = property(lambda self: self.config.model)
    firmware_version = property(lambda self: self.config.firmware_version)
    runtime_version = property(lambda self: self.config.runtime_version)

    @property
    def device_capabilities(self) -> tuple:
        caps = [CAPABILITY_HAS_GAZE_DATA, CAPABILITY_CAN_SET_DISPLAY_AREA, CAPABILITY_HAS_EXTERNAL_SIGNAL]
        if self.config.can_calibrate:
            caps += [CAPABILITY_CAN_DO_SCREEN_BASED_CALIBRATION, CAPABILITY_CAN_DO_MONOCULAR_CALIBRATION]
        if self.config.eye_openness:
            caps.append(CAPABILITY_HAS_EYE_OPENNESS_DATA)
        return tuple(caps)

    # -- settings
    def _check_connected(self) -> None:
        if not self._plugged:
            raise EyeTrackerConnectionFailedError("The connection to the eye tracker failed. 'se_connection_failed'")

    def get_all_gaze_output_frequencies(self) -> tuple:
        self._check_connected()
        return tuple(float(f) for f in self.config.frequencies)

    def get_gaze_output_frequency(self) -> float:
        self._check_connected()
        return self._frequency

    def set_gaze_output_frequency(self, gaze_output_frequency) -> None:
        self._check_connected()
        f = float(gaze_output_frequency)
        if not any(abs(f - g) < 1e-6 for g in self.config.frequencies):
            raise ValueError("The value is out of bounds. 'out_of_bounds'")
        changed = f != self._frequency
        self._frequency = f
        if changed:
            self._notify(EYETRACKER_NOTIFICATION_GAZE_OUTPUT_FREQUENCY_CHANGED, gaze_output_frequency=f)

    def get_display_area(self) -> DisplayArea:
        self._check_connected()
        return DisplayArea(dict(self.config.display_area))

    def get_all_eye_tracking_modes(self) -> tuple:
        return ("Default",)

    def get_eye_tracking_mode(self) -> str:
        return "Default"

    # -- subscriptions
    def subscribe_to(self, subscription_type, callback, as_dictionary=False) -> None:
        if not callable(callback):
            raise ValueError("An invalid parameter has been sent to the API. 'invalid_parameter'")
        if not as_dictionary:
            raise NotImplementedError("the fake delivers dictionaries only (as_dictionary=True)")
        self.fake_subscribe_calls.append(subscription_type)
        with self._lock:
            if subscription_type in _NOTIFICATIONS:
                subs = self._notif_subs.setdefault(subscription_type, {})
                if callback in subs:
                    raise EyeTrackerInvalidOperationError("The operation is invalid in this context. 'invalid_operation'")
                subs[callback] = True
                return
            if subscription_type not in _STREAMS:
                raise ValueError("An invalid parameter has been sent to the API. 'invalid_parameter'")
            subs = self._subs.setdefault(subscription_type, {})
            if callback in subs:
                raise EyeTrackerInvalidOperationError("The operation is invalid in this context. 'invalid_operation'")
            # Like the SDK, the callback is registered before the tracker is asked; a refusal
            # leaves it registered until unsubscribe_from.
            subs[callback] = (True, self._generation)
            if subscription_type == EYETRACKER_EYE_OPENNESS_DATA and not self.config.eye_openness:
                raise EyeTrackerFeatureNotSupportedError(
                    "The feature is not supported by the eye tracker. 'se_not_supported'")
            self._check_connected()
            if subscription_type in (EYETRACKER_GAZE_DATA, EYETRACKER_EYE_OPENNESS_DATA,
                                     EYETRACKER_TIME_SYNCHRONIZATION_DATA):
                self._ensure_pump()

    def unsubscribe_from(self, subscription_type, callback=None) -> None:
        with self._lock:
            table = self._notif_subs if subscription_type in _NOTIFICATIONS else self._subs
            if subscription_type not in _NOTIFICATIONS and subscription_type not in _STREAMS:
                raise ValueError("An invalid parameter has been sent to the API. 'invalid_parameter'")
            subs = table.get(subscription_type)
            if subs is None:
                return
            if callback in subs:
                del subs[callback]
            if callback is None or not subs:
                del table[subscription_type]

    def _active(self, subscription_type) -> List[Callable]:
        subs = self._subs.get(subscription_type)
        if not subs:
            return []
        return [cb for cb, (_, gen) in subs.items() if gen == self._generation]

    def _notify(self, notification_type: str, **extra) -> None:
        data = {"notification_type": notification_type, "system_time_stamp": get_system_time_stamp()}
        data.update(extra)
        with self._lock:
            for cb in list(self._notif_subs.get(notification_type, {})):
                cb(dict(data))

    def _deliver(self, subscription_type: str, data: dict) -> int:
        with self._lock:
            cbs = self._active(subscription_type)
            for cb in cbs:
                cb(dict(data))
            return len(cbs)

    # -- the stream pump (a foreign thread, like the SDK's)
    def _ensure_pump(self) -> None:
        if self._pump_thread is None or not self._pump_thread.is_alive():
            self._pump_stop.clear()
            self._pump_thread = threading.Thread(target=self._pump, name="fake-tobii-pump", daemon=True)
            self._pump_thread.start()

    def _any_stream_subscribed(self) -> bool:
        return any(self._subs.get(k) for k in (EYETRACKER_GAZE_DATA, EYETRACKER_EYE_OPENNESS_DATA,
                                                EYETRACKER_TIME_SYNCHRONIZATION_DATA))

    def _pump(self) -> None:
        cfg = self.config
        tb = _state.time
        rng = random.Random(cfg.seed)
        period = 1e6 / self._frequency
        t_start = tb.now_us()
        dc_start = None if cfg.disconnect_at_s is None else t_start + cfg.disconnect_at_s * 1e6
        dc_end = None if dc_start is None else dc_start + cfg.disconnect_for_s * 1e6
        ov_i = None if cfg.overflow_at_s is None else int(cfg.overflow_at_s * self._frequency)
        next_sync = t_start
        lost = restored = False
        i = 0
        while not self._pump_stop.is_set():
            if not self._any_stream_subscribed():
                break
            t_i = t_start + int(round(i * period))
            if cfg.duration_s is not None and t_i - t_start >= cfg.duration_s * 1e6:
                self.fake_done = True
                self._pump_stop.wait(0.01)
                continue
            if i % cfg.burst == 0:
                t_wait = t_start + int(round((i + cfg.burst - 1) * period))
                if tb.now_us() < t_wait - 1500 and tb.wait_until(t_wait, self._pump_stop):
                    break
            if dc_start is not None and dc_start <= t_i < dc_end:
                if not lost:
                    lost = True
                    if not cfg.resume_after_restore:
                        with self._lock:
                            self._generation += 1
                    self._notify(EYETRACKER_NOTIFICATION_CONNECTION_LOST)
                i += 1
                continue
            if lost and not restored:
                restored = True
                self._notify(EYETRACKER_NOTIFICATION_CONNECTION_RESTORED)
            if ov_i is not None and ov_i <= i < ov_i + cfg.overflow_samples:
                if i == ov_i:
                    self._notify(EYETRACKER_NOTIFICATION_STREAM_BUFFER_OVERFLOW,
                                 notification_source_stream=EYETRACKER_GAZE_DATA)
                self.fake_generated += 1
                i += 1
                continue
            sys_ts = t_i + (rng.randint(-cfg.jitter_us, cfg.jitter_us) if cfg.jitter_us else 0)
            dev_ts = self._device_time(sys_ts, t_start)
            if sys_ts >= next_sync:
                rtt = rng.randint(150, 900)
                self._deliver(EYETRACKER_TIME_SYNCHRONIZATION_DATA, {
                    "system_request_time_stamp": sys_ts - rtt // 2, "device_time_stamp": dev_ts,
                    "system_response_time_stamp": sys_ts + rtt - rtt // 2})
                next_sync += int(cfg.time_sync_interval_s * 1e6)
            sample = self._gaze_sample(sys_ts, dev_ts, t_start, rng)
            self.fake_generated += 1
            with self._lock:
                if self._deliver(EYETRACKER_GAZE_DATA, sample):
                    self.fake_delivered_gaze.append(sys_ts)
            if self.config.eye_openness and self._subs.get(EYETRACKER_EYE_OPENNESS_DATA):
                blink = sample["left_pupil_validity"] == 0
                self._deliver(EYETRACKER_EYE_OPENNESS_DATA, {
                    "device_time_stamp": dev_ts, "system_time_stamp": sys_ts,
                    "left_eye_validity": 1, "left_eye_openness_value": 0.5 if blink else 11.0,
                    "right_eye_validity": 1, "right_eye_openness_value": 0.5 if blink else 10.6})
            i += 1

    def _device_time(self, sys_ts: int, t_start: int) -> int:
        cfg = self.config
        return cfg.device_offset_us + int((sys_ts - t_start) * (1.0 + cfg.drift_ppm * 1e-6))

    def _gaze_sample(self, sys_ts: int, dev_ts: int, t_start: int, rng: random.Random) -> dict:
        cfg = self.config
        t = (sys_ts - t_start) / 1e6
        blink = cfg.blink_every_s > 0 and (t % cfg.blink_every_s) < cfg.blink_s and t > cfg.blink_s
        nan = float("nan")
        out = {"device_time_stamp": dev_ts, "system_time_stamp": sys_ts}
        da = cfg.display_area
        tl, tr, bl = da["top_left"], da["top_right"], da["bottom_left"]
        if cfg.look_at is not None:
            x, y = cfg.look_at[0] + cfg.look_bias[0], cfg.look_at[1] + cfg.look_bias[1]
        else:
            x = 0.5 + 0.3 * math.sin(2 * math.pi * 0.13 * t)
            y = 0.5 + 0.25 * math.sin(2 * math.pi * 0.07 * t + 1.0)
        for eye, dx in (("left", -31.0), ("right", 31.0)):
            if blink:
                out[f"{eye}_gaze_point_on_display_area"] = (nan, nan)
                out[f"{eye}_gaze_point_in_user_coordinate_system"] = (nan, nan, nan)
                out[f"{eye}_gaze_point_validity"] = 0
                out[f"{eye}_pupil_diameter"] = nan
                out[f"{eye}_pupil_validity"] = 0
                out[f"{eye}_gaze_origin_in_user_coordinate_system"] = (nan, nan, nan)
                out[f"{eye}_gaze_origin_validity"] = 0
                continue
            gx = x + (rng.gauss(0, cfg.gaze_noise) if cfg.gaze_noise else 0.0)
            gy = y + (rng.gauss(0, cfg.gaze_noise) if cfg.gaze_noise else 0.0)
            ucs = tuple(tl[k] + gx * (tr[k] - tl[k]) + gy * (bl[k] - tl[k]) for k in range(3))
            out[f"{eye}_gaze_point_on_display_area"] = (gx, gy)
            out[f"{eye}_gaze_point_in_user_coordinate_system"] = ucs
            out[f"{eye}_gaze_point_validity"] = 1
            out[f"{eye}_pupil_diameter"] = 3.4 + 0.2 * math.sin(t / 7.0) + rng.gauss(0, 0.02)
            out[f"{eye}_pupil_validity"] = 1
            out[f"{eye}_gaze_origin_in_user_coordinate_system"] = (dx + cfg.head_sway_mm * math.sin(t / 11), 180.0, 620.0)
            out[f"{eye}_gaze_origin_validity"] = 1
        return out

    # -- test controls
    def fake_unplug(self) -> None:
        """The tracker disappears: connection lost, never restored."""
        self._plugged = False
        with self._lock:
            self._generation += 1
        self._notify(EYETRACKER_NOTIFICATION_CONNECTION_LOST)

    def fake_stop(self) -> None:
        self._pump_stop.set()
        if self._pump_thread is not None:
            self._pump_thread.join(5)
            self._pump_thread = None

    @property
    def fake_pump_running(self) -> bool:
        return self._pump_thread is not None and self._pump_thread.is_alive()


# --------------------------------------------------------------------------- calibration
class CalibrationEyeData:
    def __init__(self, position_on_display_area, validity) -> None:
        self.position_on_display_area = position_on_display_area
        self.validity = validity


class CalibrationSample:
    def __init__(self, left_eye, right_eye) -> None:
        self.left_eye = left_eye
        self.right_eye = right_eye


class CalibrationPoint:
    def __init__(self, position_on_display_area, calibration_samples) -> None:
        self.position_on_display_area = position_on_display_area
        self.calibration_samples = calibration_samples


class CalibrationResult:
    def __init__(self, status, calibration_points) -> None:
        self.status = status
        self.calibration_points = calibration_points


class ScreenBasedCalibration:
    """Screen-based calibration on a fake tracker (same call rules as the SDK's)."""

    def __init__(self, eyetracker) -> None:
        if not isinstance(eyetracker, EyeTracker):
            raise ValueError("A ScreenBasedCalibration object must be initialized with an EyeTracker.")
        if CAPABILITY_CAN_DO_SCREEN_BASED_CALIBRATION not in eyetracker.device_capabilities:
            raise ValueError("A ScreenBasedCalibration object must be initialized with an EyeTracker "
                             "that supports screen based calibration.")
        self._et = eyetracker

    def enter_calibration_mode(self) -> None:
        et = self._et
        et._check_connected()
        if et._calibrating:
            raise EyeTrackerInvalidOperationError("The calibration has already been started. "
                                                  "'se_calibration_already_started'")
        et._calibrating = True
        et._cal_points = {}
        et._notify(EYETRACKER_NOTIFICATION_CALIBRATION_MODE_ENTERED)

    def leave_calibration_mode(self) -> None:
        et = self._et
        if not et._calibrating:
            raise EyeTrackerInvalidOperationError("Calibration has not been started. 'se_calibration_not_started'")
        et._calibrating = False
        et._notify(EYETRACKER_NOTIFICATION_CALIBRATION_MODE_LEFT)

    def _require_mode(self) -> None:
        if not self._et._calibrating:
            raise EyeTrackerInvalidOperationError("Calibration has not been started. 'se_calibration_not_started'")

    def collect_data(self, x, y) -> str:
        self._require_mode()
        self._et._check_connected()
        x, y = float(x), float(y)
        cfg = self._et.config
        if cfg.calibration_collect_s > 0:
            _state.time.wait_until(get_system_time_stamp() + int(cfg.calibration_collect_s * 1e6), threading.Event())
        key = (round(x, 6), round(y, 6))
        fails = {(round(a, 6), round(b, 6)) for a, b in cfg.calibration_fail_points}
        if key in fails and key not in self._et._cal_failed_once:
            self._et._cal_failed_once.add(key)
            return CALIBRATION_STATUS_FAILURE
        self._et._cal_points[key] = self._et._cal_points.get(key, 0) + 1
        return CALIBRATION_STATUS_SUCCESS

    def discard_data(self, x, y) -> None:
        self._require_mode()
        self._et._cal_points.pop((round(float(x), 6), round(float(y), 6)), None)

    def compute_and_apply(self) -> CalibrationResult:
        self._require_mode()
        et = self._et
        if len(et._cal_points) < 1:
            return CalibrationResult(CALIBRATION_STATUS_FAILURE, ())
        rng = random.Random(et.config.seed + 7)
        bx, by = et.config.calibration_bias
        points = []
        for (x, y) in et._cal_points:
            samples = []
            for _ in range(8):
                left = CalibrationEyeData((x + bx + rng.gauss(0, 0.002), y + by + rng.gauss(0, 0.002)),
                                          VALIDITY_VALID_AND_USED)
                right = CalibrationEyeData((x - bx + rng.gauss(0, 0.002), y - by + rng.gauss(0, 0.002)),
                                           VALIDITY_VALID_AND_USED)
                samples.append(CalibrationSample(left, right))
            points.append(CalibrationPoint((x, y), tuple(samples)))
        et._notify(EYETRACKER_NOTIFICATION_CALIBRATION_CHANGED)
        return CalibrationResult(CALIBRATION_STATUS_SUCCESS, tuple(points))


# --------------------------------------------------------------------------- discovery
def find_all_eyetrackers() -> tuple:
    """The plugged fake trackers."""
    if _state.search_s > 0:
        time.sleep(_state.search_s)
    return tuple(t for t in _state.trackers if t._plugged)


# --------------------------------------------------------------------------- test controls
def fake_reset(*, speed: float = 1.0, search_s: float = 0.0) -> None:
    """Unplug and stop every fake tracker and restart the virtual clock at ``speed``."""
    for t in _state.trackers:
        t.fake_stop()
    _state.trackers = []
    _state.time = _TimeBase(speed)
    _state.search_s = float(search_s)


def fake_add_tracker(config: Optional[FakeTrackerConfig] = None, **overrides) -> EyeTracker:
    """Plug a fake tracker (``config`` or keyword overrides of :class:`FakeTrackerConfig`)."""
    cfg = config or FakeTrackerConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"FakeTrackerConfig has no field {k!r}")
        setattr(cfg, k, v)
    et = EyeTracker(cfg)
    _state.trackers.append(et)
    return et


def fake_clock() -> FakeClock:
    return FakeClock()
