"""The [gpio] output under gpiozero's mock pins: events move a servo and pulse pins, a cooldown skips
events, close() leaves nothing energised, bad tables are refused; `binbot actions test`; and the
daemon itself turning the servo for what a replayed camera shows."""

import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from gpiozero import Device, DigitalOutputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from binbot.device.bundle import read_bundle
from binbot.device.config import load_config
from binbot.device.daemon import Daemon
from binbot.device.gpio import GpioActions, read_gpio
from binbot.device.metrics import Metrics
from binbot.device.outputs import build_outputs
from binbot.device.source import open_source
from binbot.errors import BinbotError
from helpers import close, log_lines, run_daemon, wait_for

TABLE = {
    "cooldown": 0.5, "hold": 0.2,
    "servo": {"pin": "GPIO17", "min_angle": -90, "max_angle": 90, "rest": 0},
    "classes": {"bottle": {"angle": 60, "pulse": {"pin": "GPIO27", "seconds": 0.05}, "confidence": 0.7},
                "can": {"angle": -45}},
}
CONFIG = """\
bundle = "{bundle}"
[gpio]
cooldown = 0.0
hold = 0.05
[gpio.servo]
pin = "GPIO17"
rest = 0
[gpio.classes.bottle]
angle = 60
[gpio.classes.can]
angle = -45
[gpio.classes.paper]
angle = 30
pulse = {{ pin = "GPIO27", seconds = 0.05 }}
"""
# gpiozero's own switches: its mock pins, with PWM for the servo, instead of a Pi's header.
MOCK_PINS = {"GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}


@pytest.fixture
def mock_pins():
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = None


def angles(mock_pins, gpio):
    """The servo's angles over time, from its pin's PWM duty cycles (0..1 of a 20 ms frame)."""
    servo = gpio.servo
    span = servo.max_pulse_width - servo.min_pulse_width
    return [round(servo.min_angle + (state * servo.frame_width - servo.min_pulse_width) / span *
                  (servo.max_angle - servo.min_angle)) for _, state in mock_pins.pin(17).states if state]


def gpio_output(table=TABLE, classes=("bottle", "can", "paper"), metrics=None):
    metrics = metrics or Metrics()
    return GpioActions(read_gpio(table, "binbot.toml", list(classes)), metrics), metrics


def test_an_event_turns_the_servo_to_its_angle_pulses_the_pin_and_returns_to_rest(mock_pins):
    gpio, metrics = gpio_output()
    actions = lambda label: metrics.registry.get_sample_value("binbot_gpio_actions_total", {"class": label})
    assert gpio.servo.angle == 0

    gpio.event({"label": "bottle", "confidence": 0.9})

    wait_for("the servo back at rest", lambda: actions("bottle") == 1 and 60 in angles(mock_pins, gpio)
             and gpio.servo.angle == 0)
    assert angles(mock_pins, gpio)[-3:] == [0, 60, 0]
    assert [state for _, state in mock_pins.pin(27).states] == [False, True, False]
    close(gpio)


def test_an_action_that_fails_midway_still_turns_the_pin_off_and_the_servo_to_rest(mock_pins, caplog):
    lines = log_lines(caplog)
    gpio, metrics = gpio_output()
    errors = lambda: metrics.registry.get_sample_value("binbot_output_errors_total", {"output": "gpio"})

    def broken_wait(seconds):  # as a wait of 1e10 s did: OverflowError, with the relay on and the flap open
        raise OverflowError("timeout value is too large")
    gpio._stop.wait = broken_wait
    gpio.event({"label": "bottle", "confidence": 0.9})

    wait_for("the failure to be counted", lambda: errors() == 1)
    assert angles(mock_pins, gpio)[-2:] == [60, 0] and gpio.servo.angle == 0
    assert [state for _, state in mock_pins.pin(27).states] == [False, True, False]
    assert any("gpio: failed (OverflowError: timeout value is too large); going on" in line for line in lines())
    close(gpio)


def test_an_event_within_the_cooldown_is_skipped_and_counted(mock_pins, caplog):
    lines = log_lines(caplog)
    gpio, metrics = gpio_output()

    gpio.event({"label": "bottle", "confidence": 0.9})
    gpio.event({"label": "can", "confidence": 0.9})  # the flap is still moving

    wait_for("the first back at rest", lambda: metrics.registry.get_sample_value(
        "binbot_gpio_actions_total", {"class": "bottle"}) == 1 and gpio.servo.angle == 0)
    assert metrics.registry.get_sample_value("binbot_gpio_skipped_total", {"reason": "cooldown"}) == 1
    assert -45 not in angles(mock_pins, gpio)
    assert "gpio: can (0.90) not acted on: cooldown" in lines()
    close(gpio)


def test_a_low_confidence_event_is_not_acted_on(mock_pins):
    gpio, metrics = gpio_output()

    gpio.event({"label": "bottle", "confidence": 0.65})  # its class asks for 0.7
    close(gpio)

    assert metrics.registry.get_sample_value("binbot_gpio_skipped_total", {"reason": "confidence"}) == 1
    assert metrics.registry.get_sample_value("binbot_gpio_actions_total", {"class": "bottle"}) is None
    assert 60 not in angles(mock_pins, gpio)


def test_close_detaches_the_servo_and_releases_the_pins(mock_pins):
    gpio, _ = gpio_output()
    gpio.event({"label": "bottle", "confidence": 0.9})

    close(gpio)  # mid-move, as a SIGTERM may come

    assert gpio.servo.closed and all(pin.closed for pin in gpio.pins.values())
    assert mock_pins.pin(17).frequency is None and mock_pins.pin(17).state == 0  # detached: no pulses
    assert mock_pins.pin(27).state == 0 and mock_pins.pin(27).function == "input"  # nothing energised
    assert angles(mock_pins, gpio)[-1] == 0  # put back at rest before it was let go
    DigitalOutputDevice("GPIO17").close()  # the pins are free for another user
    DigitalOutputDevice("GPIO27").close()


def test_a_dry_run_logs_what_it_would_do_and_touches_no_pin(mock_pins, caplog):
    lines = log_lines(caplog)
    gpio, metrics = gpio_output({**TABLE, "dry_run": True})

    gpio.event({"label": "can", "confidence": 0.9})
    close(gpio)

    assert gpio.servo is None and gpio.pins == {}
    assert "gpio: dry run, would do can: servo GPIO17 to -45°; rest after 0.2 s" in lines()
    assert metrics.registry.get_sample_value("binbot_gpio_actions_total", {"class": "can"}) == 1
    assert mock_pins.pins == {}


def test_a_class_without_a_table_of_its_own_gets_the_default_counted_as_itself(mock_pins, caplog):
    lines = log_lines(caplog)
    gpio, metrics = gpio_output({**TABLE, "dry_run": True, "default": {"angle": -10}})

    gpio.event({"label": "paper", "confidence": 0.9})
    close(gpio)

    assert "gpio: dry run, would do paper: servo GPIO17 to -10°; rest after 0.2 s" in lines()
    assert metrics.registry.get_sample_value("binbot_gpio_actions_total", {"class": "paper"}) == 1


@pytest.mark.parametrize("change, message", [
    ({"holdd": 1}, "[gpio] unknown key 'holdd'"),
    ({"servo": {"pin": "GPIO99"}}, "[gpio.servo] pin = 'GPIO99': should be a GPIO pin, GPIO0 .. GPIO27"),
    ({"servo": {"pin": "GPIO17", "spin": 1}}, "[gpio.servo] unknown key 'spin'"),
    ({"classes": {"can": {"angle": 120}}}, "[gpio.classes.can] angle = 120.0: outside the servo's min_angle..max_angle"),
    ({"classes": {"can": {"pulse": {"pin": "GPIO17", "seconds": 1}}}},
     "[gpio.classes.can] pulse.pin = 'GPIO17': GPIO17 is used twice (also by [gpio.servo] pin)"),
    ({"classes": {"glass": {"angle": 10}}}, "[gpio.classes.glass]: the bundle has no class 'glass'"),
    ({"classes": {"can": {"angle": 10, "confidence": 1.5}}}, "[gpio.classes.can] confidence = 1.5: must be between"),
    ({"default": {"angle": "up"}}, "[gpio.default] angle should be a number, not 'up'"),
    ({"classes": {"can": {}}}, "[gpio.classes.can] nothing to do"),
    ({"hold": float("inf")}, "[gpio] hold = inf: must be a finite number"),
    ({"cooldown": -1}, "[gpio] cooldown = -1.0: must be between 0 and 3600"),
    ({"hold": 1e10}, "[gpio] hold = 10000000000.0: must be between 0 and 60"),
    ({"classes": {"can": {"pulse": {"pin": "GPIO27", "seconds": 1e10}}}},
     "[gpio.classes.can.pulse] seconds = 10000000000.0: must be above 0 and at most 60"),
    ({"servo": {"pin": "GPIO17", "min_angle": 10, "max_angle": -10}},
     "[gpio.servo] min_angle = 10.0: must be below max_angle (-10)"),
    ({"classes": {"can": {"pulse": {"pin": "GPIO27"}}}}, "[gpio.classes.can.pulse] needs seconds"),
])
def test_a_bad_table_is_refused_naming_the_file_table_and_key(change, message):
    with pytest.raises(BinbotError) as refused:
        read_gpio({**TABLE, **change}, "binbot.toml", ["bottle", "can", "paper"])
    assert str(refused.value).startswith(f"binbot.toml: {message}") and "\n" not in str(refused.value)


def test_without_gpiozero_a_gpio_table_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # import gpiozero fails, as on a bare install
    with pytest.raises(BinbotError, match=r"^\[gpio\] needs gpiozero, which is not installed: pip install "
                                          r"'binbot\[pi\]' \(on a Pi: sudo apt install python3-gpiozero\)$"):
        gpio_output()


def test_actions_test_does_each_action_once_and_releases(small_cnn_bundles, tmp_path):
    config = tmp_path / "binbot.toml"
    config.write_text(CONFIG.format(bundle=small_cnn_bundles["int8"]))

    done = subprocess.run([sys.executable, "-m", "binbot", "actions", "test", "--config", str(config)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **MOCK_PINS})

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "gpio: doing bottle: servo GPIO17 to 60°; rest after 0.05 s",
        "gpio: doing can: servo GPIO17 to -45°; rest after 0.05 s",
        "gpio: doing paper: servo GPIO17 to 30°, GPIO27 on for 0.05 s; rest after 0.05 s",
        "3 action(s) done; at rest, pins released",
    ]


def test_the_daemon_turns_the_servo_to_each_class_the_camera_shows(mock_pins, small_cnn_bundles, image_folder,
                                                                   tmp_path):
    bundle = read_bundle(small_cnn_bundles["int8"])
    config_file = tmp_path / "binbot.toml"
    config_file.write_text(CONFIG.format(bundle=bundle.path))
    config = load_config(config_file, {"http": "off", "events.file": os.devnull, "window": 3, "threshold": 0.5})
    source = open_source("replay:" + str(image_folder), bundle.height, bundle.width)
    daemon = Daemon(config, source)
    wanted = {"bottle": 60, "can": -45, "paper": 30}

    def check(daemon):
        outputs = wait_for("the outputs", lambda: daemon.outputs)
        gpio = outputs.outputs[-1]
        wait_for("an action of every class", lambda: all(daemon.metrics.registry.get_sample_value(
            "binbot_gpio_actions_total", {"class": name}) for name in wanted))
        assert set(wanted.values()) <= set(angles(mock_pins, gpio))

    assert run_daemon(daemon, check) == 0


def test_a_port_in_use_is_a_one_line_error_and_the_outputs_opened_are_released(mock_pins, small_cnn_bundles, tmp_path):
    bundle = read_bundle(small_cnn_bundles["int8"])
    config_file = tmp_path / "binbot.toml"
    config_file.write_text(CONFIG.format(bundle=bundle.path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(config_file, {"http": f"127.0.0.1:{port}", "events.file": os.devnull})
        daemon = Daemon(config, open_source("selftest:", bundle.height, bundle.width, bundle=bundle.path))

        with pytest.raises(BinbotError, match=rf"http 127\.0\.0\.1:{port}: cannot listen \(Address already in use\)"):
            daemon.run()

    gpio = next(output for output in daemon.outputs.outputs if output.name == "gpio")
    assert gpio.servo.closed and all(pin.closed for pin in gpio.pins.values())


def test_a_camera_that_cannot_be_opened_at_start_is_one_line_and_the_pins_are_released(mock_pins, small_cnn_bundles,
                                                                                        tmp_path):
    bundle = read_bundle(small_cnn_bundles["int8"])
    config_file = tmp_path / "binbot.toml"
    config_file.write_text(CONFIG.format(bundle=bundle.path))
    config = load_config(config_file, {"http": "off", "events.file": os.devnull})
    daemon = Daemon(config, open_source(f"opencv:{tmp_path / 'no-camera.mp4'}", bundle.height, bundle.width))

    with pytest.raises(BinbotError, match=r"^source: opencv .*no-camera.mp4: cannot open$"):
        daemon.run()

    gpio = next(output for output in daemon.outputs.outputs if output.name == "gpio")
    assert gpio.servo.closed and all(pin.closed for pin in gpio.pins.values())


def test_an_output_that_cannot_start_releases_those_opened_before_it(mock_pins, small_cnn_bundles, tmp_path):
    bundle = read_bundle(small_cnn_bundles["int8"])
    config_file = tmp_path / "binbot.toml"
    config_file.write_text(CONFIG.format(bundle=bundle.path) + '[mqtt]\nhost = "127.0.0.1"\nusername = "binbot"\n'
                           f'password_file = "{tmp_path / "no-such-file"}"\n')
    config = load_config(config_file, {"http": "off", "events.file": os.devnull})

    with pytest.raises(BinbotError, match=r"\[mqtt\]: password_file .*no-such-file: No such file or directory"):
        build_outputs(config, Metrics())

    DigitalOutputDevice("GPIO27").close()  # free again: the [gpio] output opened before [mqtt] failed let it go


def test_the_docs_example_table_is_read_as_written():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "gpio.md").read_text()
    example = next(block for block in re.findall(r"```toml\n(.*?)```", readme, re.S) if "[gpio]" in block)

    settings = read_gpio(tomllib.loads(example)["gpio"], "README.md")

    assert settings.servo.pin == "GPIO17" and settings.actions["glass"].angle == 60
    assert settings.actions["glass"].pulse_pin == "GPIO27" and settings.actions["default"].angle == 0
