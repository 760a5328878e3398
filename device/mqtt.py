"""The MQTT output: each event, the current item and the daemon's availability on a broker, with
Home Assistant discovery, so a label sensor, a confidence sensor and an "item present" binary
sensor appear there by themselves.

A broker that is down at start or goes away never stops classification: paho's own thread connects
and reconnects (1 s to 30 s apart) while publish() only queues a packet for it. What is published
while disconnected waits in a small bound of our own (the oldest dropped and counted beyond it),
and goes out on reconnect, after `online` and the discovery configs.

The order across a reconnect is ours to keep. paho sends again every QoS 1 message the broker had not
acknowledged, but only after on_connect has returned, so what on_connect publishes would overtake
them: after a silent link drop, an older state re-sent by paho would end up retained over the newer
one we had queued. So the mids of our publishes are kept until on_publish acknowledges them, and a
connect that finds some still unacknowledged publishes `online` and the discovery configs at once but
holds the queue, and new messages behind it, until the broker has acknowledged those re-sends (or, if
it never does, for one keepalive). The queue then drains in order: its events, but of its states only
the newest, which comes after them. Every connect ends with the current state, so the retained state
is the truth even when the broker lost it; and a run's first frame with nothing in view says so, so a
restart after a crash does not leave the last run's item retained. (paho 2.2's drop_out_messages()
would let on_connect send paho's unacknowledged messages itself, but we still support paho 2.0.)

Longer than 300 lines on purpose: the ordering across reconnects is one piece of state shared by the
callbacks below, and is read together.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from binbot import boundedfile
from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord, Output, OutputKind
from binbot.errors import BinbotError
from binbot.schema import REQUIRED, SettingProblem, setting

if TYPE_CHECKING:
    from binbot.device.config import RunConfig

try:  # the optional extra: only a daemon with an [mqtt] table imports this module
    import paho.mqtt.client as paho
except ImportError:
    paho = None

QUEUE = 100  # messages kept while disconnected, published on reconnect; older ones are dropped
QOS = 1
MAX_PASSWORD = 4096  # bytes of password_file
log = logging.getLogger("binbot.mqtt")
Message = tuple[str, str, bool]  # topic, payload, retain

# Where the queue is: what _send does with a message, and who may start the drain.
OFFLINE = "offline"  # disconnected: messages wait in the queue
RESENDING = "resending"  # connected, paho re-sending what the broker had not acknowledged: messages wait
DRAINING = "draining"  # the queue going out, in order: messages wait behind it
DIRECT = "direct"  # the queue is empty: messages go straight to paho


def topic_prefix_problem(value: str) -> str:
    return "should be a topic prefix without # or +" if not value or any(c in value for c in "#+") else ""


@dataclass(frozen=True)
class MqttSettings:
    host: str = setting(REQUIRED, "the broker's name or address")
    port: int = setting(1883, "the broker's port (8883 with tls)", low=1, high=65535)
    device: str = setting("", "this Pi's name in topics and in Home Assistant; empty: its hostname, made "
                          "topic-safe", pattern=r"[a-z0-9_-]*", shape="only a-z, 0-9, _ and -")
    prefix: str = setting("binbot", "topics go under PREFIX/DEVICE/", check=topic_prefix_problem)
    tls: bool = setting(False, "connect with TLS, checking the broker's certificate")
    username: str = setting("", "the broker's user, if it asks for one")
    password_file: str = setting("", "a file holding the password (read at start, never logged)")
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix",
                                    check=topic_prefix_problem)
    keepalive: int = setting(30, "seconds between keepalive pings; a dead link is noticed in about 1.5 times this",
                             low=5, high=3600)

    def check(self) -> None:
        if self.password_file and not self.username:
            raise SettingProblem("password_file", "needs a username")


def binbot_version() -> str:
    try:
        return metadata.version("binbot")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def hostname_device() -> str:
    return re.sub(r"[^a-z0-9_-]", "_", socket.gethostname().lower()) or "binbot"


def read_password(path: str, where: str) -> str:
    """The broker password in path: a regular file of UTF-8 text, at most MAX_PASSWORD bytes."""
    try:
        return boundedfile.read(Path(path), MAX_PASSWORD, "a password file").decode("utf-8").strip()
    except OSError as error:
        raise BinbotError(f"{where}: [mqtt]: password_file {path}: {error.strerror or error}") from None
    except (BinbotError, UnicodeDecodeError) as error:
        raise BinbotError(f"{where}: [mqtt]: password_file: {error}") from None


def mqtt_output(settings: MqttSettings, config: RunConfig, metrics: Metrics) -> MqttOutput:
    """The output the config file's [mqtt] table asks for."""
    where = config.config_file or "command line"
    if paho is None:
        raise BinbotError(f"{where}: [mqtt] needs paho-mqtt: pip install 'binbot[mqtt]'")
    password = read_password(settings.password_file, where) if settings.password_file else None
    return MqttOutput(settings, password, metrics)


KIND = OutputKind(MqttSettings, mqtt_output)


class MqttOutput(Output):
    name = "mqtt"

    def __init__(self, settings: MqttSettings, password: str | None, metrics: Metrics):
        self.settings = settings
        self.device = settings.device or hostname_device()
        base = f"{settings.prefix}/{self.device}"
        self.topics = {"event": f"{base}/event", "state": f"{base}/state", "available": f"{base}/available"}
        self.broker = f"{settings.host}:{settings.port}"
        r = metrics.registry
        self._connected_gauge = Gauge("binbot_mqtt_connected", "1 while connected to the MQTT broker", registry=r)
        self._published = Counter("binbot_mqtt_published", "Messages handed to the MQTT broker", registry=r)
        self._queued = Counter("binbot_mqtt_queued", "Messages kept for later: while disconnected, or behind "
                               "what a reconnect sends again", registry=r)
        self._dropped_metric = Counter("binbot_mqtt_dropped",
                                       "Messages dropped while disconnected: more than the queue holds", registry=r)
        # Never held while calling into paho: paho calls on_publish holding its own lock.
        self._lock = threading.Lock()
        self._waiting: deque[Message] = deque(maxlen=QUEUE)
        self._phase = OFFLINE
        self._state: Message | None = None  # the newest state, sent or waiting
        self._shows_item: bool | None = None  # what the newest state says; None before this run's first
        self._unacked: set[int] = set()  # mids of our publishes the broker has not acknowledged
        self._early_acks: set[int] = set()  # acknowledged before publish() had returned their mid
        self._resent: set[int] = set()  # the unacknowledged at the last connect: the queue waits for these
        self._connects = 0
        self._overdue: threading.Timer | None = None
        self.connected, self.error, self.dropped = False, "not connected yet", 0
        self._closing = False

        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"binbot-{self.device}")
        if settings.username:
            client.username_pw_set(settings.username, password)
        if settings.tls:
            client.tls_set()
        client.will_set(self.topics["available"], "offline", qos=QOS, retain=True)
        client.reconnect_delay_set(1, 30)
        # paho's own bound: messages awaiting the broker's acknowledgement (our queue drained at once, with
        # the discovery configs) and any caught by a disconnect, which paho resends on reconnect.
        client.max_queued_messages_set(2 * QUEUE)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail, client.on_publish = self._on_connect_fail, self._on_publish
        self._client = client
        log.info("mqtt: publishing to %s under %s/", self.broker, base)
        client.connect_async(settings.host, settings.port, settings.keepalive)
        client.loop_start()

    def frame(self, record: FrameRecord) -> None:
        # The item left, or this run has said nothing yet: a state from before a crash must not stay retained.
        if record.item is None and self._shows_item is not False:
            self._send_state({"label": None, "confidence": None, "time": record.time, "model": record.model})

    def event(self, event: dict) -> None:
        self._send(self.topics["event"], event)
        self._send_state({key: event[key] for key in ("label", "confidence", "time", "model")})

    def health(self) -> dict:
        return {"connected": self.connected, "broker": self.broker, "error": self.error, "dropped": self.dropped}

    def close(self, until: float) -> None:
        deadline = until
        self._closing = True
        with self._lock:
            self._phase = OFFLINE  # a drain under way stops: nothing after `offline`
        if self._overdue:
            self._overdue.cancel()
        if self.connected:
            sent = self._publish(self.topics["available"], "offline", True)
            try:
                sent.wait_for_publish(max(0.0, deadline - time.monotonic() - 0.2))
            except (RuntimeError, ValueError):  # the connection went meanwhile: the will says offline
                pass
        self._client.disconnect()
        # loop_stop joins paho's thread, which may be inside a TCP connect to a far broker: not past the deadline.
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(max(0.0, deadline - time.monotonic()))
        self._connected_gauge.set(0)

    def discovery(self) -> dict[str, dict]:
        """Home Assistant's discovery configs, by topic."""
        version = binbot_version()
        device = {"identifiers": [f"binbot_{self.device}"], "name": f"BinBot {self.device}", "model": "BinBot",
                  "sw_version": version}
        origin = {"name": "BinBot", "sw_version": version}
        common = {"state_topic": self.topics["state"], "availability_topic": self.topics["available"],
                  "device": device, "origin": origin}
        prefix = self.settings.discovery_prefix
        return {
            f"{prefix}/sensor/{self.device}_label/config": {
                **common, "name": "Label", "unique_id": f"{self.device}_label", "icon": "mdi:recycle",
                "value_template": "{{ value_json.label if value_json.label else 'none' }}"},
            f"{prefix}/sensor/{self.device}_confidence/config": {
                **common, "name": "Confidence", "unique_id": f"{self.device}_confidence",
                "unit_of_measurement": "%", "state_class": "measurement",
                "value_template": "{{ ((value_json.confidence or 0) * 100) | round(1) }}"},
            f"{prefix}/binary_sensor/{self.device}_item/config": {
                **common, "name": "Item present", "unique_id": f"{self.device}_item", "icon": "mdi:delete",
                "value_template": "{{ 'ON' if value_json.label else 'OFF' }}"},
        }

    def _send_state(self, state: dict) -> None:
        self._shows_item = state["label"] is not None
        self._send(self.topics["state"], state, retain=True)

    def _send(self, topic: str, payload: dict, retain: bool = False) -> None:
        """Publish now, or keep it for the drain while the queue is not empty or not going out; never blocks."""
        message = (topic, json.dumps(payload), retain)
        with self._lock:
            if topic == self.topics["state"]:
                self._state = message
            if self._phase != DIRECT:
                self._keep(message)
                return
        self._publish(*message)

    def _keep(self, message: Message) -> None:
        """Add to the queue; the caller holds the lock."""
        if len(self._waiting) == self._waiting.maxlen:
            self._dropped_one()
        self._waiting.append(message)
        self._queued.inc()

    def _publish(self, topic: str, payload: str, retain: bool) -> paho.MQTTMessageInfo:
        # With loop_start running, publish() queues the packet for paho's thread and returns.
        sent = self._client.publish(topic, payload, qos=QOS, retain=retain)
        if sent.rc == paho.MQTT_ERR_QUEUE_SIZE:
            self._dropped_one()
            return sent
        self._published.inc()
        with self._lock:
            if sent.mid in self._early_acks:
                self._early_acks.remove(sent.mid)
            else:
                self._unacked.add(sent.mid)
        return sent

    def _dropped_one(self) -> None:
        self.dropped += 1
        self._dropped_metric.inc()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._failed(f"refused by {self.broker}: {reason_code}")
            return
        with self._lock:
            self.connected, self._phase = True, RESENDING
            self._connects += 1
            connection, self._resent = self._connects, set(self._unacked)  # paho re-sends these once we return
            if self._state and self._state not in self._waiting:
                self._keep(self._state)
            resent, waiting = len(self._resent), len(self._waiting)
        self._publish(self.topics["available"], "online", True)
        for topic, config in self.discovery().items():
            self._publish(topic, json.dumps(config), True)
        self._connected_gauge.set(1)
        self.error = ""
        log.info(f"mqtt: connected to {self.broker}"
                  + (f"; {resent} unacknowledged message(s) sent again first" if resent else "")
                  + (f"; {waiting} queued message(s) follow" if waiting else ""))
        if resent:
            self._watch_resends(connection)
        else:
            self._drain_after_resends(connection)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.remove(mid)
            else:
                self._early_acks.add(mid)
            self._resent.discard(mid)
            connection, resent = self._connects, bool(self._resent)
        if not resent:
            self._drain_after_resends(connection)

    def _watch_resends(self, connection: int) -> None:
        """Drain anyway if the re-sends are not all acknowledged within a keepalive (a broker that lost them)."""
        if self._overdue:
            self._overdue.cancel()
        self._overdue = threading.Timer(self.settings.keepalive, self._resends_overdue, (connection,))
        self._overdue.daemon = True
        self._overdue.start()

    def _resends_overdue(self, connection: int) -> None:
        with self._lock:
            late = len(self._resent) if self._phase == RESENDING and self._connects == connection else 0
        if late:
            log.warning(f"mqtt: {self.broker} has not acknowledged {late} message(s) sent again in "
                      f"{self.settings.keepalive} s; sending the queue anyway")
            self._drain_after_resends(connection)

    def _drain_after_resends(self, connection: int) -> None:
        """Start the drain, if this connection is still holding its queue for paho's re-sends."""
        with self._lock:
            if self._phase != RESENDING or self._connects != connection:
                return
            self._phase = DRAINING
        self._drain()

    def _drain(self) -> None:
        """Send the queue in order, its newest state last, and then let messages go straight to paho."""
        while True:
            with self._lock:
                if self._phase != DRAINING:  # the link went again: the rest waits for the next connect
                    return
                if not self._waiting:
                    self._phase = DIRECT
                    return
                message = self._waiting.popleft()
                if message[0] == self.topics["state"] and message is not self._state:
                    continue  # an older state: only the newest is retained, and it follows
            self._publish(*message)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            was, self.connected, self._phase = self.connected, False, OFFLINE
        self._connected_gauge.set(0)
        if was and not self._closing:
            self._failed(f"disconnected from {self.broker}: {reason_code}; reconnecting, classification goes on")

    def _on_connect_fail(self, client, userdata) -> None:
        self._failed(f"cannot connect to {self.broker}; retrying, classification goes on")

    def _failed(self, message: str) -> None:
        if message != self.error:  # once per kind of failure, not once per retry
            log.warning(f"mqtt: {message}")
        self.error = message
