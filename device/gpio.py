"""The GPIO output: a stable item event turns a servo to its class's angle and/or pulses a pin.

Configured by the [gpio] table of binbot.toml, read strictly by read_gpio (the one reader: the daemon
and `binbot actions test` both use it). The loop only decides (confidence, cooldown) and hands the
move to the output's own thread, which holds the class's position for `hold` seconds and returns to
rest. close() rests the servo, detaches it and releases every pin, so nothing is left energised.
gpiozero is imported only when real devices are opened: dry_run and the rest of the daemon run without it.
"""

from __future__ import annotations

import math
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from prometheus_client import Counter

from binbot.device.config import RunConfig
from binbot.device.metrics import Metrics
from binbot.device.outputs import CLOSE_DEADLINE, Handoff, Output
from binbot.errors import BinbotError

PIN = re.compile(r"GPIO([0-9]|1[0-9]|2[0-7])")  # BCM numbering, the 40-pin header's GPIO0..GPIO27
SETTLE = 0.3  # seconds the servo is given to reach rest on close, before it is detached
DEFAULT = "default"
INSTALL = "pip install 'binbot[pi]' (on a Pi: sudo apt install python3-gpiozero)"
SKIP_REASONS = ("cooldown", "confidence", "unconfigured")
# Seconds, at most: a flap held open or a relay left on longer than this is a typo, not a wish.
MOST_SECONDS = {"cooldown": 3600.0, "hold": 60.0, "pulse.seconds": 60.0}

TOP_KEYS = {"cooldown": float, "hold": float, "dry_run": bool, "servo": dict, "classes": dict, DEFAULT: dict}
SERVO_KEYS = {"pin": str, "min_angle": float, "max_angle": float, "min_pulse_width": float,
              "max_pulse_width": float, "rest": float}
ACTION_KEYS = {"angle": float, "pulse": dict, "confidence": float}
PULSE_KEYS = {"pin": str, "seconds": float}


@dataclass(frozen=True)
class Servo:
    pin: str
    min_angle: float = -90.0
    max_angle: float = 90.0
    min_pulse_width: float = 0.001  # gpiozero's defaults: a 1-2 ms pulse every 20 ms
    max_pulse_width: float = 0.002
    rest: float = 0.0


@dataclass(frozen=True)
class Action:
    """What one class (or the default) does: a servo angle and/or a pin pulsed, from a confidence up."""

    name: str
    angle: float | None = None
    pulse_pin: str | None = None
    pulse_seconds: float = 0.0
    confidence: float = 0.0

    def describe(self, servo: Servo | None) -> str:
        moves = []
        if self.angle is not None:
            moves.append(f"servo {servo.pin} to {self.angle:g}°")
        if self.pulse_pin:
            moves.append(f"{self.pulse_pin} on for {self.pulse_seconds:g} s")
        return ", ".join(moves)


@dataclass(frozen=True)
class GpioSettings:
    cooldown: float = 2.0  # seconds busy after an action; events then are skipped
    hold: float = 1.5  # seconds at the class's position before returning to rest
    dry_run: bool = False
    servo: Servo | None = None
    actions: dict[str, Action] | None = None  # by class name, and DEFAULT for the others


def read_gpio(table: dict, where: str, class_names: list[str] | None = None) -> GpioSettings:
    """The [gpio] table of the file where, checked strictly; class names too, when the bundle's are known."""
    top = _values(table, TOP_KEYS, where, "gpio")
    for key in ("cooldown", "hold"):
        if not 0 <= top.get(key, 0.0) <= MOST_SECONDS[key]:
            raise BinbotError(f"{where}: [gpio] {key} = {top[key]:g}: must be between 0 and {MOST_SECONDS[key]:g} seconds")
    servo = _read_servo(top["servo"], where) if "servo" in top else None
    tables = {f"gpio.classes.{name}": (name, value) for name, value in top.get("classes", {}).items()}
    if DEFAULT in top:
        tables["gpio.default"] = (DEFAULT, top[DEFAULT])
    unknown = [name for name, _ in tables.values() if class_names is not None and name not in [*class_names, DEFAULT]]
    if unknown:
        raise BinbotError(f"{where}: [gpio.classes.{unknown[0]}]: the bundle has no class {unknown[0]!r} "
                          f"(its classes: {', '.join(class_names)})")
    pins = {servo.pin: "[gpio.servo] pin"} if servo else {}
    actions = {label: _read_action(raw, label, servo, pins, where, name) for name, (label, raw) in tables.items()}
    settings = {key: top[key] for key in ("cooldown", "hold", "dry_run") if key in top}
    return GpioSettings(**settings, servo=servo, actions=actions)


def _read_servo(table: dict, where: str) -> Servo:
    servo = Servo(**_values(table, SERVO_KEYS, where, "gpio.servo", required=("pin",)))
    if servo.min_angle >= servo.max_angle:
        raise BinbotError(f"{where}: [gpio.servo] min_angle = {servo.min_angle:g}: must be below max_angle "
                          f"({servo.max_angle:g})")
    if not 0 < servo.min_pulse_width < servo.max_pulse_width < 0.02:
        raise BinbotError(f"{where}: [gpio.servo] min_pulse_width and max_pulse_width: must be 0 < min < max "
                          f"< 0.02 s (a servo's frame is 20 ms)")
    _check_angle(servo, servo.rest, where, "gpio.servo", "rest")
    return servo


def _read_action(raw: object, label: str, servo: Servo | None, pins: dict, where: str, name: str) -> Action:
    """One class's table (name: its TOML name), its pulse pin claimed in pins."""
    values = _values(raw, ACTION_KEYS, where, name)
    pulse = _values(values["pulse"], PULSE_KEYS, where, f"{name}.pulse", required=("pin", "seconds")) \
        if "pulse" in values else {}
    if "angle" in values:
        if servo is None:
            raise BinbotError(f"{where}: [{name}] angle: there is no [gpio.servo] to turn")
        _check_angle(servo, values["angle"], where, name, "angle")
    if pulse:
        _claim(pins, pulse["pin"], f"[{name}] pulse.pin", where)
        if not 0 < pulse["seconds"] <= MOST_SECONDS["pulse.seconds"]:
            raise BinbotError(f"{where}: [{name}] pulse.seconds = {pulse['seconds']:g}: must be above 0 and at most "
                              f"{MOST_SECONDS['pulse.seconds']:g}")
    if not 0 <= values.get("confidence", 0.0) <= 1:
        raise BinbotError(f"{where}: [{name}] confidence = {values['confidence']:g}: must be between 0 and 1")
    if "angle" not in values and not pulse:
        raise BinbotError(f"{where}: [{name}]: nothing to do (give it an angle, a pulse or both)")
    return Action(label, values.get("angle"), pulse.get("pin"), pulse.get("seconds", 0.0),
                  values.get("confidence", 0.0))


def _values(table: dict, keys: dict, where: str, name: str, required: tuple = ()) -> dict:
    if not isinstance(table, dict):
        raise BinbotError(f"{where}: [{name}] should be a table")
    for key, value in table.items():
        kind = keys.get(key)
        if kind is None:
            raise BinbotError(f"{where}: [{name}] unknown key {key!r} (known: {', '.join(keys)})")
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # TOML has nan and inf
                raise BinbotError(f"{where}: [{name}] {key} = {value!r}: must be a finite number")
            table = {**table, key: float(value)}
        elif not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise BinbotError(f"{where}: [{name}] {key} should be a {kind.__name__}, not {value!r}")
        if key == "pin" and not PIN.fullmatch(value):
            raise BinbotError(f"{where}: [{name}] pin = {value!r}: not a GPIO pin (GPIO0 .. GPIO27, BCM numbering)")
    missing = [key for key in required if key not in table]
    if missing:
        raise BinbotError(f"{where}: [{name}] needs {missing[0]}")
    return table


def _check_angle(servo: Servo, angle: float, where: str, name: str, key: str) -> None:
    if not servo.min_angle <= angle <= servo.max_angle:
        raise BinbotError(f"{where}: [{name}] {key} = {angle:g}: outside the servo's min_angle..max_angle "
                          f"({servo.min_angle:g}..{servo.max_angle:g})")


def _claim(pins: dict, pin: str, user: str, where: str) -> None:
    if pin in pins:
        raise BinbotError(f"{where}: {user} = {pin!r}: {pin} is used twice (also by {pins[pin]})")
    pins[pin] = user


class GpioActions(Output):
    """Turns stable item events into moves of a servo and pulses of pins, on a thread of its own."""

    name = "gpio"

    def __init__(self, settings: GpioSettings, metrics: Metrics, log: Callable[[str], None]):
        self.settings, self._log = settings, log
        self._actions = Counter("binbot_gpio_actions", "GPIO actions done, by class", ["class"],
                                registry=metrics.registry)
        self._skipped = Counter("binbot_gpio_skipped", "Events not acted on, by reason", ["reason"],
                                registry=metrics.registry)
        for reason in SKIP_REASONS:
            self._skipped.labels(reason)
        self._stop = threading.Event()
        self._busy_until = -float("inf")
        self.servo, self.pins = self._open()
        self._handoff: Handoff[Action] = Handoff(self.name, self.perform, 1, metrics, log)

    def event(self, event: dict) -> None:
        label, confidence = event["label"], event["confidence"]
        action = self.settings.actions.get(label)
        if action is None and DEFAULT in self.settings.actions:
            action = replace(self.settings.actions[DEFAULT], name=label)  # counted and logged as the class seen
        now = time.monotonic()
        if action is None:
            reason = "unconfigured"
        elif confidence < action.confidence:
            reason = "confidence"
        elif now < self._busy_until:
            reason = "cooldown"
        else:
            self._busy_until = now + self.settings.cooldown
            self._handoff.put(action)
            return
        self._skipped.labels(reason).inc()
        self._log(f"gpio: {label} ({confidence:.2f}) not acted on: {reason}")

    def perform(self, action: Action) -> None:
        """Do action, hold it, and go back to rest; on this output's thread (or by hand)."""
        s = self.settings
        what = action.describe(s.servo)
        self._log(f"gpio: {'dry run, would do' if s.dry_run else 'doing'} {action.name}: {what}; "
                  f"rest after {s.hold:g} s")
        self._actions.labels(action.name).inc()
        if s.dry_run:
            return
        start = time.monotonic()
        pin = self.pins.get(action.pulse_pin)
        try:
            if action.angle is not None:
                self.servo.angle = action.angle
            if pin is not None:
                try:
                    pin.on()
                    self._stop.wait(action.pulse_seconds)
                finally:  # whatever failed, a relay is never left on
                    pin.off()
            self._stop.wait(max(0.0, start + s.hold - time.monotonic()))
        finally:  # nor the flap away from rest
            if self.servo is not None:
                self.servo.angle = s.servo.rest

    def health(self) -> dict:
        return {"dry_run": self.settings.dry_run, "busy": time.monotonic() < self._busy_until}

    def close(self) -> None:
        self._stop.set()  # cuts a hold short: the worker goes to rest at once
        self._handoff.close(CLOSE_DEADLINE)
        if self.servo is not None:
            if not math.isclose(self.servo.angle, self.settings.servo.rest, abs_tol=0.5):
                self.servo.angle = self.settings.servo.rest
                time.sleep(SETTLE)
            self.servo.detach()
        for device in [self.servo, *self.pins.values()]:
            if device is not None:
                device.close()

    def _open(self) -> tuple:
        s = self.settings
        if s.dry_run:
            return None, {}
        try:
            import gpiozero
        except ImportError:
            raise BinbotError(f"[gpio] needs gpiozero, which is not installed: {INSTALL}") from None
        opened = []
        try:
            # gpiozero warns of each pin library it tries in turn; the outcome is what a user needs.
            warnings.simplefilter("ignore", gpiozero.PinFactoryFallback)
            servo = None
            if s.servo:
                servo = gpiozero.AngularServo(
                    s.servo.pin, initial_angle=s.servo.rest, min_angle=s.servo.min_angle, max_angle=s.servo.max_angle,
                    min_pulse_width=s.servo.min_pulse_width, max_pulse_width=s.servo.max_pulse_width)
                opened.append(servo)
            pins = {}
            for action in s.actions.values():
                if action.pulse_pin:
                    pins[action.pulse_pin] = gpiozero.DigitalOutputDevice(action.pulse_pin, initial_value=False)
                    opened.append(pins[action.pulse_pin])
        except Exception as error:  # noqa: BLE001 - gpiozero's pin libraries (lgpio, RPi.GPIO) raise their own types
            for device in opened:
                device.close()
            raise BinbotError(f"[gpio]: cannot open the GPIO pins ({type(error).__name__}: {error})") from None
        return servo, pins


def build_gpio(config: RunConfig, metrics: Metrics, log: Callable[[str], None]) -> GpioActions:
    """The [gpio] output of config, its class names checked against the bundle's when it can be read."""
    from binbot.device.bundle import MANIFEST, read_bundle

    bundle = Path(config.bundle)
    classes = read_bundle(bundle.resolve()).class_names if (bundle / MANIFEST).is_file() else None
    return GpioActions(read_gpio(config.tables["gpio"], config.config_file, classes), metrics, log)
