"""The GPIO output: a stable item event turns a servo to its class's angle and/or pulses a pin.

Configured by the [gpio] table of binbot.toml (GpioSettings, read by binbot.schema like every table;
the daemon and `binbot actions test` both build the output with build_gpio). The loop only decides (confidence, cooldown) and hands the
move to the output's own thread, which holds the class's position for `hold` seconds and returns to
rest. close() rests the servo, detaches it and releases every pin, so nothing is left energised.
gpiozero is imported only when real devices are opened: dry_run and the rest of the daemon run without it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter

from binbot import schema
from binbot.device.metrics import Metrics
from binbot.device.outputs import Handoff, Output, OutputKind
from binbot.errors import BinbotError
from binbot.schema import REQUIRED, SettingProblem, setting

if TYPE_CHECKING:
    from binbot.device.config import RunConfig

log = logging.getLogger("binbot.gpio")

PIN = r"GPIO([0-9]|1[0-9]|2[0-7])"  # BCM numbering, the 40-pin header's GPIO0..GPIO27
PIN_SHAPE = "a GPIO pin, GPIO0 .. GPIO27 (BCM numbering)"
SETTLE = 0.3  # seconds the servo is given to reach rest on close, before it is detached
DEFAULT = "default"
INSTALL = "pip install 'binbot[pi]' (on a Pi: sudo apt install python3-gpiozero)"
SKIP_REASONS = ("cooldown", "confidence", "unconfigured")


@dataclass(frozen=True)
class Servo:
    pin: str = setting(REQUIRED, "the servo's signal pin", pattern=PIN, shape=PIN_SHAPE)
    min_angle: float = setting(-90.0, "the angle of the shortest pulse, in degrees")
    max_angle: float = setting(90.0, "the angle of the longest pulse, in degrees")
    # gpiozero's defaults: a 1-2 ms pulse every 20 ms
    min_pulse_width: float = setting(0.001, "seconds of the shortest pulse", above=0.0, high=0.02)
    max_pulse_width: float = setting(0.002, "seconds of the longest pulse", above=0.0, high=0.02)
    rest: float = setting(0.0, "the angle the servo rests at between actions, and is left at on exit")

    def check(self) -> None:
        if self.min_angle >= self.max_angle:
            raise SettingProblem("min_angle", f"must be below max_angle ({self.max_angle:g})")
        if self.min_pulse_width >= self.max_pulse_width:
            raise SettingProblem("min_pulse_width", f"must be below max_pulse_width ({self.max_pulse_width:g})")
        self.check_angle(self.rest, "rest")

    def check_angle(self, angle: float, key: str, table: str = "") -> None:
        if not self.min_angle <= angle <= self.max_angle:
            raise SettingProblem(key, f"outside the servo's min_angle..max_angle ({self.min_angle:g}.."
                                      f"{self.max_angle:g})", table=table, value=angle)


@dataclass(frozen=True)
class Pulse:
    pin: str = setting(REQUIRED, "the pin turned on (a relay, a LED, a buzzer)", pattern=PIN, shape=PIN_SHAPE)
    seconds: float = setting(REQUIRED, "how long it stays on", above=0.0, high=60.0)


@dataclass(frozen=True)
class ActionSettings:
    """What one class (or the default) does: a servo angle and/or a pin pulsed, from a confidence up."""

    angle: float | None = setting(None, "the angle the servo turns to for this class")
    pulse: Pulse | None = setting(None, "a pin turned on for a while: { pin = \"GPIO27\", seconds = 0.5 }")
    confidence: float = setting(0.0, "the least confidence an event needs to be acted on", low=0.0, high=1.0)

    def check(self) -> None:
        if self.angle is None and self.pulse is None:
            raise SettingProblem("", "nothing to do (give it an angle, a pulse or both)")


@dataclass(frozen=True)
class GpioSettings:
    cooldown: float = setting(2.0, "seconds after an action during which events are skipped (and counted)",
                              low=0.0, high=3600.0)
    hold: float = setting(1.5, "seconds at a class's position before returning to rest", low=0.0, high=60.0)
    dry_run: bool = setting(False, "log what would be done and touch no pin")
    servo: Servo | None = setting(None, "the servo, if there is one")
    classes: dict[str, ActionSettings] = setting({}, "what each class does, a table each: [gpio.classes.NAME]")
    default: ActionSettings | None = setting(None, "what a class without a table of its own does")

    def check(self) -> None:
        claimed = {self.servo.pin: "[gpio.servo] pin"} if self.servo else {}
        for table, action in self.tables().items():
            if action.angle is not None:
                if self.servo is None:
                    raise SettingProblem("angle", "there is no [gpio.servo] to turn", table=table, value=action.angle)
                self.servo.check_angle(action.angle, "angle", table)
            if action.pulse is not None:
                if action.pulse.pin in claimed:
                    raise SettingProblem("pulse.pin", f"{action.pulse.pin} is used twice (also by "
                                         f"{claimed[action.pulse.pin]})", table=table, value=action.pulse.pin)
                claimed[action.pulse.pin] = f"[gpio.{table}] pulse.pin"

    def tables(self) -> dict[str, ActionSettings]:
        """The action tables by their name under [gpio]: classes.NAME, and default."""
        tables = {f"classes.{name}": action for name, action in self.classes.items()}
        return {**tables, DEFAULT: self.default} if self.default else tables

    @cached_property
    def actions(self) -> dict[str, Action]:
        """What each class does, by class name, and DEFAULT for the others."""
        named = {**self.classes, **({DEFAULT: self.default} if self.default else {})}
        return {name: Action(name, a.angle, a.pulse and a.pulse.pin, a.pulse.seconds if a.pulse else 0.0,
                             a.confidence) for name, a in named.items()}


@dataclass(frozen=True)
class Action:
    """What one class does, as the worker does it."""

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


def read_gpio(table: dict, where: str, class_names: list[str] | None = None) -> GpioSettings:
    """A [gpio] table on its own (as in the README), read as binbot.toml's is; class names too, when known."""
    settings = schema.read(GpioSettings, table, where, "gpio")
    if class_names is not None:
        check_classes(settings, where, class_names)
    return settings


def check_classes(settings: GpioSettings, where: str, class_names: list[str]) -> None:
    """Refuse a [gpio.classes.NAME] table for a class the bundle does not have."""
    unknown = [name for name in settings.classes if name not in class_names]
    if unknown:
        raise BinbotError(f"{where}: [gpio.classes.{unknown[0]}]: the bundle has no class {unknown[0]!r} "
                          f"(its classes: {', '.join(class_names)})")


class GpioActions(Output):
    """Turns stable item events into moves of a servo and pulses of pins, on a thread of its own."""

    name = "gpio"

    def __init__(self, settings: GpioSettings, metrics: Metrics):
        self.settings = settings
        self._actions = Counter("binbot_gpio_actions", "GPIO actions done, by class", ["class"],
                                registry=metrics.registry)
        self._skipped = Counter("binbot_gpio_skipped", "Events not acted on, by reason", ["reason"],
                                registry=metrics.registry)
        for reason in SKIP_REASONS:
            self._skipped.labels(reason)
        self._stop = threading.Event()
        self._busy_until = -float("inf")
        self.servo, self.pins = self._open()
        self._handoff: Handoff[Action] = Handoff(self.name, self.perform, 1, metrics)

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
        log.info("gpio: %s (%.2f) not acted on: %s", label, confidence, reason)

    def perform(self, action: Action) -> None:
        """Do action, hold it, and go back to rest; on this output's thread (or by hand)."""
        s = self.settings
        what = action.describe(s.servo)
        log.info("gpio: %s %s: %s; rest after %g s", "dry run, would do" if s.dry_run else "doing", action.name,
                 what, s.hold)
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

    def close(self, until: float) -> None:
        # The servo away from rest now is an action under way: the one case the journal is told how it ended.
        cut_short = self.servo is not None and not math.isclose(self.servo.angle, self.settings.servo.rest, abs_tol=0.5)
        self._stop.set()  # cuts a hold short: the worker goes to rest at once
        self._handoff.close(until - SETTLE)
        if self.servo is not None:
            if not math.isclose(self.servo.angle, self.settings.servo.rest, abs_tol=0.5):
                self.servo.angle = self.settings.servo.rest
                time.sleep(max(0.0, min(SETTLE, until - time.monotonic())))
            left_at = self.servo.angle
            self.servo.detach()
        for device in [self.servo, *self.pins.values()]:
            if device is not None:
                device.close()
        if cut_short:
            log.info("gpio: shutdown cut an action short: servo %s left at %.1f° (rest %g°), pins released",
                     self.settings.servo.pin, left_at, self.settings.servo.rest)

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


def build_gpio(settings: GpioSettings, config: RunConfig, metrics: Metrics) -> GpioActions:
    """The [gpio] output, its class names checked against the bundle's when it can be read."""
    from binbot.device.bundle import MANIFEST, read_bundle

    bundle = Path(config.bundle)
    if (bundle / MANIFEST).is_file():
        check_classes(settings, config.config_file or "command line", read_bundle(bundle.resolve()).class_names)
    return GpioActions(settings, metrics)


KIND = OutputKind(GpioSettings, build_gpio)
