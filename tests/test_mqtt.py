"""The MQTT output against a real broker: Debian's mosquitto on a free loopback port, watched by a
paho subscriber, with `binbot run` classifying a replay of the generated photos."""

import json
import os
from importlib import metadata
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord
from binbot.errors import BinbotError
from helpers import BLOCK_TENSORFLOW, TIMEOUT, close, log_lines, wait_for
from relay import Relay

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install -e '.[dev]')")
MOSQUITTO = Path("/usr/sbin/mosquitto")
pytestmark = pytest.mark.skipif(not MOSQUITTO.exists(), reason="mosquitto is not installed (apt install mosquitto)")

DEVICE = "testbin"
TOPICS = {name: f"binbot/{DEVICE}/{name}" for name in ("event", "state", "available")}
DISCOVERY = [f"homeassistant/sensor/{DEVICE}_label/config", f"homeassistant/sensor/{DEVICE}_confidence/config",
             f"homeassistant/binary_sensor/{DEVICE}_item/config"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:port, stopped and started again on the same port at will."""

    def __init__(self, folder, password_file=None):
        self.port, self.folder = free_port(), folder
        lines = [f"listener {self.port} 127.0.0.1", "user root",
                 # Sessions outlive a restart, so a subscriber misses nothing while the broker is away.
                 "persistence true", f"persistence_location {folder}/",
                 f"log_dest file {folder / 'mosquitto.log'}"]
        if password_file:
            lines += [f"password_file {password_file}", "allow_anonymous false"]
        else:
            lines += ["allow_anonymous true"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process = None

    def start(self):
        self.process = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for("mosquitto to listen", self._listening)

    def _listening(self):
        assert self.process.poll() is None, (self.folder / "mosquitto.log").read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(TIMEOUT)


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


class Subscriber:
    """A paho client that records every message under binbot/ and homeassistant/ as (topic, text, retained);
    with a session name, the broker keeps what it missed while disconnected."""

    def __init__(self, port, username=None, password=None, session=None):
        self.messages = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=session or "",
                                  clean_session=session is None)
        if username:
            self.client.username_pw_set(username, password)
        subscribed = threading.Event()
        self.client.on_connect = lambda client, *_: client.subscribe([("binbot/#", 1), ("homeassistant/#", 1)])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(TIMEOUT), "the subscriber did not subscribe"

    def payloads(self, topic):
        return [text for name, text, _ in list(self.messages) if name == topic]

    def events(self):
        return [json.loads(text) for text in self.payloads(TOPICS["event"])]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe():
    subscribers = []

    def make(*args, **options):
        subscribers.append(Subscriber(*args, **options))
        return subscribers[-1]

    yield make
    for subscriber in subscribers:
        subscriber.close()


def frame_record(time, item):
    return FrameRecord(time=time, frame=0, origin="", model="m", label="can", confidence=0.9, top=[], item=item,
                       scores={"can": 0.9})


def run_config(tmp_path, bundle, images, mqtt):
    """A binbot.toml replaying images through bundle, with mqtt as its [mqtt] table."""
    path = tmp_path / "binbot.toml"
    lines = [f'bundle = "{bundle}"', f'source = "replay:{images}"', "fps = 30", "", "[mqtt]"]
    path.write_text("\n".join(lines + [f"{key} = {json.dumps(value)}" for key, value in mqtt.items()]) + "\n")
    return path


def test_events_state_availability_and_discovery_reach_the_broker_and_the_will_says_offline(
        broker, subscribe, small_cnn_bundles, image_folder, start_daemon, tmp_path):
    watcher = subscribe(broker.port)
    config = run_config(tmp_path, small_cnn_bundles["int8"], image_folder,
                        {"host": "127.0.0.1", "port": broker.port, "device": DEVICE})

    daemon = start_daemon("--config", str(config))

    wait_for("online", lambda: "online" in watcher.payloads(TOPICS["available"]))
    wait_for("three events", lambda: len(watcher.events()) >= 3)
    written = wait_for("the events file", lambda: len(daemon.event_lines()) >= 3 and daemon.event_lines())
    assert watcher.events()[:3] == written[:3]
    assert {event["label"] for event in watcher.events()} <= {"bottle", "can", "paper"}
    state = json.loads(wait_for("a state", lambda: watcher.payloads(TOPICS["state"]))[0])
    assert set(state) == {"label", "confidence", "time", "model"}
    _, health = daemon.health()
    assert health["outputs"]["mqtt"] == {"connected": True, "broker": f"127.0.0.1:{broker.port}", "error": "",
                                         "dropped": 0}
    assert daemon.metric("binbot_mqtt_connected") == 1
    assert daemon.metric("binbot_mqtt_published_total") > 0

    late = subscribe(broker.port)  # joins afterwards: sees what is retained

    def retained_configs():
        configs = {topic: json.loads(text) for topic, text, kept in list(late.messages) if kept and topic in DISCOVERY}
        return len(configs) == len(DISCOVERY) and configs

    retained = wait_for("the retained discovery configs", retained_configs)
    label = retained[DISCOVERY[0]]
    assert label["state_topic"] == TOPICS["state"] and label["availability_topic"] == TOPICS["available"]
    assert label["unique_id"] == f"{DEVICE}_label" and label["device"]["model"] == "BinBot"
    version = metadata.version("binbot")
    assert label["device"]["sw_version"] == version and label["origin"] == {"name": "BinBot", "sw_version": version}
    assert retained[DISCOVERY[2]]["value_template"] == "{{ 'ON' if value_json.label else 'OFF' }}"
    assert ("binbot/testbin/available", "online", True) in late.messages

    daemon.process.kill()
    daemon.process.wait(TIMEOUT)
    wait_for("the will: offline", lambda: watcher.payloads(TOPICS["available"])[-1] == "offline")


def test_the_broker_going_away_never_stops_classification_and_publishing_resumes(
        broker, subscribe, small_cnn_bundles, image_folder, start_daemon, tmp_path):
    config = run_config(tmp_path, small_cnn_bundles["int8"], image_folder,
                        {"host": "127.0.0.1", "port": broker.port, "device": DEVICE})
    daemon = start_daemon("--config", str(config))
    wait_for("connected", lambda: daemon.health()[1]["outputs"]["mqtt"]["connected"])
    watcher = subscribe(broker.port, session="watcher")

    broker.stop()
    wait_for("the daemon to see the broker gone", lambda: not daemon.health()[1]["outputs"]["mqtt"]["connected"])
    assert daemon.classifying()
    wait_for("events kept for the reconnect", lambda: daemon.metric("binbot_mqtt_queued_total") > 0)
    assert daemon.metric("binbot_mqtt_connected") == 0
    assert "disconnected from" in daemon.health()[1]["outputs"]["mqtt"]["error"]

    restarted_at = datetime.now(timezone.utc)
    broker.start()
    wait_for("reconnected", lambda: daemon.health()[1]["outputs"]["mqtt"]["connected"])
    assert daemon.classifying()
    wait_for("new events", lambda: any(datetime.fromisoformat(e["time"]) > restarted_at for e in watcher.events()))
    assert any(datetime.fromisoformat(e["time"]) < restarted_at for e in watcher.events()), \
        "the events from while the broker was away were not sent on reconnect"

    assert daemon.stop() == 0
    wait_for("offline on a clean stop", lambda: watcher.payloads(TOPICS["available"])[-1] == "offline")


def test_while_disconnected_the_newest_100_messages_wait_and_go_out_on_reconnect(tmp_path, subscribe, caplog):
    from binbot.device.mqtt import QUEUE, MqttOutput, MqttSettings

    broker, metrics, log = Broker(tmp_path), Metrics(), log_lines(caplog)
    broker.start()
    watcher = subscribe(broker.port, session="watcher")  # its session outlives the broker's restart
    broker.stop()
    output = MqttOutput(MqttSettings(host="127.0.0.1", port=broker.port, device=DEVICE), None, metrics)
    try:
        for n in range(150):  # each event is two messages: the event and the state
            output.event({"time": f"t{n}", "label": "can", "confidence": 0.9, "model": "m", "frame": n})
        assert output.health()["dropped"] == 300 - QUEUE
        assert metrics.registry.get_sample_value("binbot_mqtt_queued_total") == 300

        broker.start()
        wait_for("the queued events", lambda: len(watcher.events()) == QUEUE // 2, interval=0.2)
        assert [event["frame"] for event in watcher.events()] == list(range(100, 150))
        assert output.health()["connected"] and output.health()["dropped"] == 200
    finally:
        close(output)
        broker.stop()
    assert any("cannot connect" in line for line in log())


def test_the_state_says_no_item_once_the_item_has_gone(broker, subscribe):
    from binbot.device.mqtt import MqttOutput, MqttSettings

    watcher = subscribe(broker.port)
    output = MqttOutput(MqttSettings(host="127.0.0.1", port=broker.port, device=DEVICE), None, Metrics())
    try:
        wait_for("connected", lambda: output.health()["connected"])
        output.frame(frame_record("t1", "can"))
        output.event({"time": "t1", "label": "can", "confidence": 0.9, "model": "m", "frame": 1})
        output.frame(frame_record("t2", "can"))
        output.frame(frame_record("t3", None))
        output.frame(frame_record("t4", None))

        states = wait_for("two states", lambda: len(watcher.payloads(TOPICS["state"])) == 2
                          and [json.loads(text) for text in watcher.payloads(TOPICS["state"])])
        assert states == [{"label": "can", "confidence": 0.9, "time": "t1", "model": "m"},
                          {"label": None, "confidence": None, "time": "t3", "model": "m"}]
    finally:
        close(output)


def retained(port, topic, subscribe):
    """What the broker keeps at topic, as a client joining now is given it."""
    late = subscribe(port)
    return wait_for(f"the retained {topic}", lambda: [text for name, text, kept in list(late.messages)
                                                      if kept and name == topic])[-1]


def test_after_a_silent_link_drop_the_retained_state_is_the_newest_and_nothing_arrives_out_of_order(
        broker, subscribe):
    from binbot.device.mqtt import MqttOutput, MqttSettings

    watcher = subscribe(broker.port)  # straight to the broker: it sees what the broker was given, in order
    relay = Relay(broker.port)
    settings = MqttSettings(host="127.0.0.1", port=relay.port, device=DEVICE, keepalive=5)
    output = MqttOutput(settings, None, Metrics())
    try:
        wait_for("connected", lambda: output.health()["connected"])
        relay.black_hole()  # the Wi-Fi dies: the event below is sent into it and never acknowledged
        output.event({"time": "t1", "label": "can", "confidence": 0.9, "model": "m", "frame": 1})
        wait_for("the dead link noticed", lambda: not output.health()["connected"], interval=0.2)
        output.frame(frame_record("t2", None))  # the item leaves while the link is down
        relay.heal()

        def both_states():
            labels = [json.loads(text)["label"] for text in watcher.payloads(TOPICS["state"])]
            return watcher.events() and "can" in labels and None in labels

        wait_for("the event and both states after the reconnect", both_states, interval=0.2)
        times = [json.loads(text)["time"] for topic, text, _ in list(watcher.messages)
                 if topic in (TOPICS["event"], TOPICS["state"])]
        assert times == sorted(times), f"event and state arrived out of order: {times}"
        assert json.loads(retained(broker.port, TOPICS["state"], subscribe))["label"] is None
    finally:
        close(output)
        relay.close()


def test_after_a_crash_the_restarted_output_says_no_item_is_in_view_and_online(broker, subscribe):
    from binbot.device.mqtt import MqttOutput, MqttSettings

    watcher = subscribe(broker.port)
    relay = Relay(broker.port)
    crashed = MqttOutput(MqttSettings(host="127.0.0.1", port=relay.port, device=DEVICE), None, Metrics())
    restarted = None
    try:
        wait_for("connected", lambda: crashed.health()["connected"])
        crashed.event({"time": "t1", "label": "can", "confidence": 0.9, "model": "m", "frame": 1})
        wait_for("the state: can", lambda: '"can"' in "".join(watcher.payloads(TOPICS["state"])))
        relay.close()  # the daemon dies: its connection drops without a goodbye, and it never comes back
        wait_for("the will: offline", lambda: watcher.payloads(TOPICS["available"])[-1] == "offline")

        restarted = MqttOutput(MqttSettings(host="127.0.0.1", port=broker.port, device=DEVICE), None, Metrics())
        restarted.frame(frame_record("t2", None))  # nothing in view
        wait_for("connected again", lambda: restarted.health()["connected"])

        wait_for("a state after the restart", lambda: '"t2"' in "".join(watcher.payloads(TOPICS["state"])))
        assert json.loads(retained(broker.port, TOPICS["state"], subscribe)) == {
            "label": None, "confidence": None, "time": "t2", "model": "m"}
        assert retained(broker.port, TOPICS["available"], subscribe) == "online"
    finally:
        close(crashed)
        relay.close()
        if restarted:
            close(restarted)


def test_a_password_file_logs_in_and_the_password_never_reaches_the_log(
        subscribe, small_cnn_bundles, image_folder, start_daemon, tmp_path):
    secret = "s3cret-Binbot-pw"
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "binbot", secret], check=True)
    (tmp_path / "mqtt-password").write_text(secret + "\n")
    broker = Broker(tmp_path, password_file=passwords)
    broker.start()
    try:
        watcher = subscribe(broker.port, username="binbot", password=secret)
        config = run_config(tmp_path, small_cnn_bundles["int8"], image_folder,
                            {"host": "127.0.0.1", "port": broker.port, "device": DEVICE, "username": "binbot",
                             "password_file": str(tmp_path / "mqtt-password")})
        daemon = start_daemon("--config", str(config))
        wait_for("an event", watcher.events)
        assert daemon.stop() == 0
        assert secret not in daemon.log.read_text()
        assert secret not in " ".join(daemon.process.args)
    finally:
        broker.stop()


@pytest.mark.parametrize("table, named", [({"host": "127.0.0.1", "colour": "red"}, "'colour'"),
                                          ({"port": 1883}, "needs host"),
                                          ({"host": "127.0.0.1", "port": "1883"}, "port should be a whole number")])
def test_a_bad_mqtt_table_is_one_line_naming_the_key(table, named, small_cnn_bundles, image_folder, tmp_path):
    config = run_config(tmp_path, small_cnn_bundles["int8"], image_folder, table)

    run = subprocess.run([sys.executable, "-m", "binbot", "run", "--http", "off", "--config", str(config)],
                         capture_output=True, text=True, timeout=TIMEOUT)

    assert run.returncode == 1
    error = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and str(config) in error[0] and "[mqtt]" in error[0] and named in error[0], run.stderr


@pytest.mark.parametrize("make, problem", [
    (lambda path: os.mkfifo(path), "not a regular file, where a password file was expected"),
    (lambda path: path.write_bytes(b"x" * 5000), "over 4,096 bytes"),
    (lambda path: path.write_bytes("sécret".encode("latin-1")), "can't decode byte"),
])
def test_a_password_file_that_is_not_one_is_refused_without_waiting(tmp_path, make, problem):
    from binbot.device import mqtt

    make(tmp_path / "mqtt-password")

    with pytest.raises(BinbotError) as refused:
        mqtt.read_password(str(tmp_path / "mqtt-password"), "binbot.toml")

    assert str(refused.value).startswith("binbot.toml: [mqtt]: password_file") and problem in str(refused.value)


def test_without_paho_a_configured_mqtt_table_says_what_to_install(small_cnn_bundles, image_folder, tmp_path):
    config = run_config(tmp_path, small_cnn_bundles["int8"], image_folder, {"host": "127.0.0.1"})
    block_paho = BLOCK_TENSORFLOW.replace("'tf_keras')", "'tf_keras', 'paho')")
    code = f"import sys; from binbot.cli import main; sys.exit(main(['run', '--http', 'off', '--config', '{config}']))"

    run = subprocess.run([sys.executable, "-c", block_paho + code], capture_output=True, text=True, timeout=TIMEOUT)

    assert run.returncode == 1
    assert "pip install 'binbot[mqtt]'" in run.stderr.strip().splitlines()[-1], run.stderr


def test_the_device_defaults_to_the_hostname_made_topic_safe(monkeypatch):
    from binbot.device import mqtt

    monkeypatch.setattr(mqtt.socket, "gethostname", lambda: "Kitchen Pi.local")
    assert mqtt.hostname_device() == "kitchen_pi_local"
    assert mqtt.MqttSettings(host="broker").device == ""  # the hostname is taken when the output starts
