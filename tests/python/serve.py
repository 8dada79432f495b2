"""A `ringmq serve` process for the Kafka client tests: both listeners on
ephemeral loopback ports, data in a fresh temporary directory."""

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 20


def binary():
    path = os.environ.get("RINGMQ_BIN", str(REPO_ROOT / "target" / "debug" / "ringmq"))
    if not os.path.exists(path):
        raise AssertionError("no ringmq server at %s (build it, or set RINGMQ_BIN)" % path)
    return path


class Serve:
    """Starts the server with `args` (after the listeners and the data
    directory) and `env` added to the environment; `native` and `kafka` are
    the addresses it printed. `stop()` asks for a clean exit and checks it."""

    def __init__(self, prefix, *args, env=None):
        self.directory = tempfile.mkdtemp(prefix=prefix)
        self.process = subprocess.Popen(
            [binary(), "serve", "--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0", "--shards", "2",
             "--data-dir", os.path.join(self.directory, "data"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {})),
        )
        self.native = self.kafka = None
        deadline = time.time() + WAIT_S
        while (self.native is None or self.kafka is None) and time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("ringmq listening on "):
                self.native = line.split()[3]
            elif line.startswith("ringmq kafka listening on "):
                self.kafka = line.split()[4]
        if self.native is None or self.kafka is None:
            self.process.kill()
            shutil.rmtree(self.directory, ignore_errors=True)
            raise AssertionError("the server did not print both addresses: %s" % self.process.stderr.read())
        # Keep draining both pipes so the server never blocks on a full one.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def cli(self, *args, user, password, env=None, check=True):
        """Runs the ``ringmq`` CLI against this server as `user`; with
        `check`, a failure raises with its stderr."""
        environment = dict(os.environ, RINGMQ_PASSWORD=password, **(env or {}))
        result = subprocess.run([binary(), "--bootstrap", self.native, "--user", user, *args],
                                capture_output=True, text=True, env=environment, timeout=WAIT_S)
        if check and result.returncode != 0:
            raise AssertionError("ringmq %s failed: %s" % (" ".join(args), result.stderr))
        return result

    def topic_exists(self, topic, *flags, user, password):
        """Whether `ringmq topic list` (with `flags`) lists `topic`."""
        listed = self.cli(*flags, "topic", "list", user=user, password=password).stdout
        return any(line.split()[:1] == [topic] for line in listed.splitlines())

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=WAIT_S)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.process.returncode != 0:
            raise AssertionError("the server exited with %s" % self.process.returncode)


def poll_values(consumer, count):
    """Values of the first `count` records a subscribed confluent-kafka
    consumer delivers (fewer if they do not come within WAIT_S)."""
    values = []
    deadline = time.time() + WAIT_S
    while len(values) < count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(message.value())
    return values
