"""Tests of the ringmq Python binding (unittest; pytest runs them too).

From the repository root:  python3 -m unittest discover -s bindings/python/tests -v

The package is imported from this source tree (bindings/python), unless
RINGMQ_TEST_INSTALLED=1 asks for the installed one. The shared library is found
as the package finds it ($RINGMQ_LIB, then the repository's target/); when it
cannot be loaded every test fails (the import fails), none is skipped. The TCP
tests start target/debug/ringmq (or $RINGMQ_BIN).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

TESTS = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(TESTS)
REPOSITORY = os.path.dirname(os.path.dirname(PACKAGE_ROOT))
if not os.environ.get("RINGMQ_TEST_INSTALLED"):
    sys.path.insert(0, PACKAGE_ROOT)

import ringmq  # noqa: E402  (an ImportError here fails the run: the library must load)


def unique(prefix="topic"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def wait_until(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.01)


class ClientBehaviour:
    """Tests every client must pass, embedded or over TCP: `self.client` is set
    by the concrete classes."""

    client = None  # type: ringmq.Client

    def new_topic(self, partitions=1, **retention):
        name = unique()
        self.client.create_topic(name, partitions=partitions, **retention)
        return name

    def test_create_list_delete_topics(self):
        first = self.new_topic(partitions=3)
        second = self.new_topic(partitions=1, retention_ms=86_400_000, retention_bytes=-1)
        topics = dict(self.client.topics())
        self.assertEqual(topics[first], 3)
        self.assertEqual(topics[second], 1)
        names = [name for name, _ in self.client.topics()]
        self.assertEqual(names, sorted(names))
        self.client.delete_topic(first)
        self.assertNotIn(first, dict(self.client.topics()))
        self.assertIn(second, dict(self.client.topics()))
        self.client.delete_topic(second)
        self.assertNotIn(second, dict(self.client.topics()))

    def test_produce_every_acks_mode(self):
        topic = self.new_topic()
        self.assertEqual(self.client.produce(topic, b"durable", partition=0, acks="durable"), 0)
        self.assertEqual(self.client.produce(topic, b"written", partition=0, acks="written"), 1)
        self.assertIsNone(self.client.produce(topic, b"none", partition=0, acks="none"))
        self.assertEqual(self.client.produce(topic, b"enum", partition=0, acks=ringmq.Acks.DURABLE), 3)
        self.assertEqual(self.client.produce(topic, b"int", partition=0, acks=1), 4)
        records = list(self.client.consumer(topic, timeout=1.0))
        self.assertEqual([r.value for r in records], [b"durable", b"written", b"none", b"enum", b"int"])
        self.assertEqual([r.offset for r in records], [0, 1, 2, 3, 4])
        offsets = self.client.offsets(topic, 0)
        self.assertEqual((offsets.earliest, offsets.latest), (0, 5))
        self.assertLessEqual(offsets.durable, offsets.latest)
        with self.assertRaises(ringmq.InvalidArgumentError) as raised:
            self.client.produce(topic, b"x", acks="sometimes")
        self.assertEqual(raised.exception.code, ringmq.Result.ERROR_INVALID_ARGUMENT)
        with self.assertRaises(ValueError):  # InvalidArgumentError is a ValueError too
            self.client.produce(topic, b"x", acks=7)

    def test_keys_headers_and_null_values(self):
        topic = self.new_topic()
        self.client.produce(
            topic,
            "value é",
            key="key é",
            headers=[("trace", b"abc"), (b"nothing", None), ("empty", b"")],
            partition=0,
        )
        self.client.produce(topic, None, key=b"tombstone", partition=0)  # a null value
        self.client.produce(topic, b"", partition=0)  # an empty (not null) value, no key
        self.client.produce(topic, bytearray(b"\x00\xffbinary\x00"), headers={"dict": "header"}, partition=0)
        first, null, empty, binary = list(self.client.consumer(topic, timeout=1.0))
        self.assertEqual(first.key, "key é".encode())
        self.assertEqual(first.value, "value é".encode())
        self.assertEqual(first.headers, [(b"trace", b"abc"), (b"nothing", None), (b"empty", b"")])
        self.assertEqual((null.key, null.value, null.headers), (b"tombstone", None, []))
        self.assertEqual((empty.key, empty.value), (None, b""))
        self.assertEqual(binary.value, b"\x00\xffbinary\x00")
        self.assertEqual(binary.headers, [(b"dict", b"header")])
        self.assertIsInstance(first.timestamp, int)
        self.assertLess(abs(first.timestamp - time.time() * 1000), 60_000)
        self.assertEqual((first.topic, first.partition), (topic, 0))
        with self.assertRaises(TypeError):
            self.client.produce(topic, 42)

    def test_produce_many_and_timestamps(self):
        topic = self.new_topic()
        base = self.client.produce_many(
            topic,
            [
                b"plain",
                ("k1", "v1"),
                ("k2", "v2", [("h", "1")]),
                ("k3", "v3", None, 1_000_000),
                {"key": "k4", "value": None, "timestamp_ms": 2_000_000},
            ],
            partition=0,
        )
        self.assertEqual(base, 0)
        records = self.client.consumer(topic).poll(1.0)
        self.assertEqual([r.offset for r in records], [0, 1, 2, 3, 4])
        self.assertEqual([r.key for r in records], [None, b"k1", b"k2", b"k3", b"k4"])
        self.assertEqual(records[2].headers, [(b"h", b"1")])
        self.assertEqual(records[3].timestamp, 1_000_000)
        self.assertIsNone(records[4].value)
        # A consumed Record can be produced again as it is.
        self.assertEqual(self.client.produce_many(topic, records[2:4], partition=0), 5)
        again = self.client.fetch(topic, 0, offset=5, timeout=1.0)
        self.assertEqual([(r.key, r.value, r.headers) for r in again], [(r.key, r.value, r.headers) for r in records[2:4]])
        self.assertIsNone(self.client.offset_for_timestamp(topic, 0, 2**62))
        # The first offset whose timestamp is at or after the one asked for.
        timed = self.new_topic()
        self.client.produce_many(timed, [(None, b"t", None, ms) for ms in (1000, 2000, 3000)], partition=0)
        self.assertEqual(self.client.offset_for_timestamp(timed, 0, 0), 0)
        self.assertEqual(self.client.offset_for_timestamp(timed, 0, 1500), 1)
        self.assertEqual(self.client.offset_for_timestamp(timed, 0, 3000), 2)
        self.assertIsNone(self.client.offset_for_timestamp(timed, 0, 3001))
        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.produce_many(topic, [], partition=0)

    def test_partitioner_by_key(self):
        topic = self.new_topic(partitions=4)
        for _ in range(3):
            self.client.produce(topic, b"x", key=b"same key")
        counts = [self.client.offsets(topic, p).latest for p in range(4)]
        self.assertEqual(sorted(counts), [0, 0, 0, 3])

    def test_produce_async(self):
        topic = self.new_topic()
        futures = [self.client.produce_async(topic, "async %d" % i, partition=0, acks="written") for i in range(50)]
        self.assertEqual([future.result(timeout=10) for future in futures], list(range(50)))
        self.assertTrue(all(future.done() for future in futures))
        self.assertIsNone(futures[0].exception())
        durable = self.client.produce_async(topic, b"durable", key=b"k", headers=[("h", None)], partition=0)
        self.assertEqual(durable.result(), 50)
        unacknowledged = self.client.produce_async(topic, b"fire and forget", partition=0, acks="none")
        self.assertIsNone(unacknowledged.result(timeout=10))
        batch = self.client.produce_many_async(topic, [b"a", b"b"], partition=0)
        self.assertEqual(batch.result(timeout=10), 52)
        # An asynchronous produce that fails reports its error through the future.
        failed = self.client.produce_async(unique("missing"), b"x", partition=0)
        error = failed.exception(timeout=10)
        self.assertIsInstance(error, ringmq.UnknownTopicError)
        self.assertEqual(error.code, ringmq.Result.ERROR_UNKNOWN_TOPIC)
        with self.assertRaises(ringmq.UnknownTopicError):
            failed.result()
        # Dropping a future before completion is allowed (the produce still happens).
        self.client.produce_async(topic, b"dropped", partition=0)
        wait_until(lambda: self.client.offsets(topic, 0).latest == 55, what="the dropped produce")
        records = list(self.client.consumer(topic, timeout=0.5))
        self.assertEqual(records[50].headers, [(b"h", None)])
        self.assertEqual(records[-1].value, b"dropped")

    def test_consume_iterator_poll_and_positions(self):
        topic = self.new_topic(partitions=2)
        for i in range(5):
            self.client.produce(topic, "r%d" % i, partition=1)
        with self.client.consumer(topic, partition=1, start="earliest", timeout=0.3) as consumer:
            self.assertEqual(consumer.position, 0)
            started = time.monotonic()
            values = [record.value for record in consumer]
            elapsed = time.monotonic() - started
            self.assertEqual(values, [b"r0", b"r1", b"r2", b"r3", b"r4"])
            self.assertGreaterEqual(elapsed, 0.25)  # stopped only after the timeout
            self.assertLess(elapsed, 5.0)
            self.assertEqual(consumer.position, 5)
            self.assertEqual(consumer.poll(0.1), [])
            self.client.produce(topic, b"r5", partition=1)
            self.assertEqual([r.offset for r in consumer.poll(2.0)], [5])
            # Iterating again resumes where it stopped.
            self.client.produce(topic, b"r6", partition=1)
            self.assertEqual([r.value for r in consumer], [b"r6"])
        self.assertTrue(consumer.closed)
        with self.assertRaises(ringmq.ClosedError):
            consumer.poll(0)
        consumer.close()  # idempotent

        with self.client.consumer(topic, partition=1, start=3) as from_three:
            self.assertEqual([r.offset for r in from_three.poll(1.0)], [3, 4, 5, 6])
        with self.client.consumer(topic, partition=1, start="latest", timeout=0.2) as latest:
            self.assertEqual(latest.position, 7)
            self.assertEqual(list(latest), [])
            # A poll waits for a record produced meanwhile.
            timer = threading.Timer(0.2, lambda: self.client.produce(topic, b"later", partition=1))
            timer.start()
            try:
                self.assertEqual([r.value for r in latest.poll(5.0)], [b"later"])
            finally:
                timer.join()
        self.assertEqual(self.client.consumer(topic, partition=0).poll(0), [])
        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.consumer(topic, start="middle")

    def test_offsets(self):
        topic = self.new_topic()
        self.assertEqual(tuple(self.client.offsets(topic)), (0, 0, 0))
        self.client.produce_many(topic, [b"a", b"b", b"c"], partition=0, acks="durable")
        earliest, latest, durable = self.client.offsets(topic, 0)
        self.assertEqual((earliest, latest, durable), (0, 3, 3))

    def test_error_codes(self):
        topic = self.new_topic()
        with self.assertRaises(ringmq.TopicExistsError) as raised:
            self.client.create_topic(topic)
        self.assertEqual(raised.exception.code, 5)
        self.assertIsInstance(raised.exception, ringmq.Error)
        self.assertTrue(raised.exception.message)
        self.assertIn("RMQ_ERROR_TOPIC_EXISTS", str(raised.exception))

        missing = unique("missing")
        for call in (
            lambda: self.client.produce(missing, b"x", partition=0),
            lambda: self.client.produce(missing, b"x"),
            lambda: self.client.offsets(missing, 0),
            lambda: self.client.offset_for_timestamp(missing, 0, 0),
            lambda: self.client.consumer(missing),
            lambda: self.client.fetch(missing),
            lambda: self.client.delete_topic(missing),
            lambda: self.client.produce(topic, b"x", partition=1),  # no such partition
        ):
            with self.assertRaises(ringmq.UnknownTopicError) as raised:
                call()
            self.assertEqual(raised.exception.code, ringmq.Result.ERROR_UNKNOWN_TOPIC)
            self.assertTrue(raised.exception.message)

        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.create_topic(unique(), partitions=0)
        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.create_topic("bad\0name")
        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.offsets(topic, -1)

    def test_concurrent_producers(self):
        topic = self.new_topic()
        errors = []

        def produce(thread):
            try:
                for i in range(20):
                    self.client.produce(topic, "%d-%d" % (thread, i), partition=0, acks="written")
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(self.client.offsets(topic, 0).latest, 80)
        self.assertEqual(len(list(self.client.consumer(topic, timeout=0.3))), 80)


    def test_a_long_poll_does_not_hold_up_a_produce_from_another_thread(self):
        # Issue 12, item 3: over TCP the produce waited until the fetch's 10 s
        # timeout, and the fetch then returned nothing.
        topic = self.new_topic()
        fetched = {}

        def long_poll():
            started = time.monotonic()
            fetched["records"] = self.client.fetch(topic, 0, offset=0, timeout=10.0)
            fetched["seconds"] = time.monotonic() - started

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.2)  # the fetch is waiting at the broker
        started = time.monotonic()
        self.assertEqual(self.client.produce(topic, "wake up", partition=0, acks="written"), 0)
        produce_seconds = time.monotonic() - started
        poller.join(15)
        self.assertLess(produce_seconds, 5.0)
        self.assertEqual([r.value for r in fetched["records"]], [b"wake up"])
        self.assertLess(fetched["seconds"], 5.0)


class EmbeddedTest(ClientBehaviour, unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="ringmq-python-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.broker = ringmq.Broker(self.directory, shards=2)
        self.addCleanup(self.broker.close)
        self.client = self.broker.client()
        self.addCleanup(self.client.close)

    def test_library_loaded(self):
        self.assertTrue(ringmq.library_version())
        self.assertTrue(ringmq.library_path)

    def test_persistence_across_reopen(self):
        topic = self.new_topic(partitions=2)
        self.client.produce(topic, b"kept", key=b"k", headers=[("h", None)], partition=1)
        self.client.produce_async(topic, b"kept too", partition=1).result(10)
        self.client.close()
        self.broker.close()
        self.assertTrue(self.broker.closed)

        with ringmq.Broker(self.directory, shards=2) as broker, broker.client() as client:
            self.assertEqual(dict(client.topics())[topic], 2)
            records = list(client.consumer(topic, partition=1, timeout=0.5))
            self.assertEqual([(r.key, r.value, r.headers) for r in records], [(b"k", b"kept", [(b"h", None)]), (None, b"kept too", [])])
            self.assertEqual(client.offsets(topic, 1).durable, 2)
            self.assertEqual(client.produce(topic, b"after reopen", partition=1), 2)
        self.assertTrue(client.closed)

    def test_close_order_and_closed_handles(self):
        topic = self.new_topic()
        self.client.produce(topic, b"x", partition=0)
        other = self.broker.client()
        consumer = other.consumer(topic)
        other.close()
        # A consumer may outlive its client.
        self.assertEqual([r.value for r in consumer.poll(1.0)], [b"x"])
        with self.assertRaises(ringmq.ClosedError) as raised:
            other.topics()
        self.assertEqual(raised.exception.code, ringmq.Result.ERROR_CLOSED)
        # Closing the broker closes its clients and consumers first.
        self.broker.close()
        self.assertTrue(self.client.closed)
        self.assertTrue(consumer.closed)
        with self.assertRaises(ringmq.ClosedError):
            self.client.produce(topic, b"late")
        with self.assertRaises(ringmq.ClosedError):
            consumer.poll(0)
        with self.assertRaises(ringmq.ClosedError):
            self.broker.client()
        self.broker.close()
        self.client.close()

    def test_start_error(self):
        not_a_directory = os.path.join(self.directory, "file")
        with open(not_a_directory, "w") as file:
            file.write("x")
        with self.assertRaises(ringmq.StartError) as raised:
            ringmq.Broker(not_a_directory)
        self.assertEqual(raised.exception.code, ringmq.Result.ERROR_START)
        self.assertTrue(raised.exception.message)

    def test_handles_freed_by_garbage_collection(self):
        # No close(): __del__ frees consumers, futures and clients.
        topic = self.new_topic()
        client = self.broker.client()
        future = client.produce_async(topic, b"x", partition=0)
        consumer = client.consumer(topic)
        self.assertEqual(future.result(10), 0)
        del future, consumer, client
        import gc

        gc.collect()
        self.assertEqual(self.client.offsets(topic).latest, 1)


class LibraryDiscoveryTest(unittest.TestCase):
    def run_python(self, code, **environment):
        env = dict(os.environ, **environment)
        env["PYTHONPATH"] = PACKAGE_ROOT
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    def test_missing_library_named_by_the_environment(self):
        result = self.run_python("import ringmq", RINGMQ_LIB="/nonexistent/libringmq.so")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("ImportError", result.stderr)
        self.assertIn("RINGMQ_LIB", result.stderr)

    def test_environment_wins(self):
        path = ringmq.library_path
        result = self.run_python("import ringmq; print(ringmq.library_path)", RINGMQ_LIB=path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), path)

    def test_repository_target_without_environment(self):
        env = {k: v for k, v in os.environ.items() if k != "RINGMQ_LIB"}
        result = subprocess.run(
            [sys.executable, "-c", "import ringmq; print(ringmq.library_path)"],
            env=dict(env, PYTHONPATH=PACKAGE_ROOT),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        found = result.stdout.strip()
        self.assertIn(found, [os.path.join(REPOSITORY, "target", profile, "libringmq.so") for profile in ("release", "debug")])


def server_binary():
    return os.environ.get("RINGMQ_BIN") or os.path.join(REPOSITORY, "target", "debug", "ringmq")


class RunningServer:
    """Starts `ringmq serve` (target/debug/ringmq or $RINGMQ_BIN) on an
    ephemeral port for the test class (`cls.address`), and checks that it
    exits 0 on SIGTERM afterwards."""

    server = None
    # More `serve` arguments and environment, for subclasses.
    server_args = []
    server_env = {}

    @classmethod
    def setUpClass(cls):
        binary = server_binary()
        if not os.access(binary, os.X_OK):
            raise AssertionError("no ringmq server at %s (build it, or set RINGMQ_BIN)" % binary)
        cls.directory = tempfile.mkdtemp(prefix="ringmq-python-tcp-")
        cls.stderr = open(os.path.join(cls.directory, "server.stderr"), "w+")
        # Settings of the test, not of the caller's RINGMQ_* environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
        env.update(cls.server_env)
        cls.server = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--kafka-listen", "off", "--shards", "2", "--data-dir", os.path.join(cls.directory, "data")]
            + cls.server_args,
            stdout=subprocess.PIPE,
            stderr=cls.stderr,
            env=env,
            text=True,
        )
        lines = []
        reader = threading.Thread(target=lambda: lines.append(cls.server.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        first = lines[0] if lines else ""
        match = re.match(r"ringmq listening on (\S+) \(", first)
        if not match:
            cls.stop_server()
            raise AssertionError("the server did not start: stdout %r, stderr %r" % (first, cls.server_errors()))
        cls.address = match.group(1)

    @classmethod
    def server_errors(cls):
        cls.stderr.seek(0)
        return cls.stderr.read()

    @classmethod
    def stop_server(cls):
        if cls.server.poll() is None:
            cls.server.send_signal(signal.SIGTERM)
        try:
            return cls.server.wait(60)
        except subprocess.TimeoutExpired:
            cls.server.kill()
            cls.server.wait()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            code = cls.stop_server()
            if code != 0:
                raise AssertionError("the server exited with %d after SIGTERM: %s" % (code, cls.server_errors()))
        finally:
            cls.server.stdout.close()
            cls.stderr.close()
            shutil.rmtree(cls.directory, True)


class AuthenticatedTcpTest(RunningServer, unittest.TestCase):
    """A server with --authentication required: connect(user=, password=)
    authenticates, refusals raise AuthenticationError and NotAuthorizedError."""

    server_args = ["--authentication", "required", "--super-users", "admin"]
    server_env = {"RINGMQ_BOOTSTRAP_USER": "admin:admin-pw"}

    def cli(self, *args, new_password=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
        env["RINGMQ_PASSWORD"] = "admin-pw"
        if new_password:
            env["RINGMQ_NEW_PASSWORD"] = new_password
        result = subprocess.run([server_binary(), "--bootstrap", self.address, "--user", "admin", *args],
                                capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_credentials_are_checked_and_acls_apply(self):
        with self.assertRaises(ringmq.AuthenticationError):
            ringmq.connect(self.address)
        with self.assertRaises(ringmq.AuthenticationError):
            ringmq.connect(self.address, user="admin", password="wrong")
        with self.assertRaises(ringmq.InvalidArgumentError):
            ringmq.connect(self.address, user="admin")
        topic = "auth-%s" % uuid.uuid4().hex[:8]
        for mechanism in ("SCRAM-SHA-256", "PLAIN"):
            with ringmq.connect(self.address, user="admin", password="admin-pw", mechanism=mechanism) as admin:
                if mechanism == "PLAIN":
                    admin.create_topic(topic)
                    self.assertEqual(admin.produce(topic, b"by-admin"), 0)
        self.cli("user", "add", "reader", new_password="reader-pw")
        with ringmq.connect(self.address, user="reader", password="reader-pw") as reader:
            with self.assertRaises(ringmq.NotAuthorizedError):
                reader.produce(topic, b"refused")
            with self.assertRaises(ringmq.NotAuthorizedError):
                reader.fetch(topic)
        self.cli("acl", "add", "--principal", "reader", "--topic", topic, "--operation", "read")
        with ringmq.connect(self.address, user="reader", password="reader-pw") as reader:
            self.assertEqual([r.value for r in reader.fetch(topic)], [b"by-admin"], "the refused produce wrote nothing")
            with self.assertRaises(ringmq.NotAuthorizedError):
                reader.produce(topic, b"still refused")


def make_pki(directory):
    """With the openssl command: a CA, a server certificate for 127.0.0.1 and
    a client certificate signed by it, and a CA nobody trusts (PEM files)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", *ec, "-keyout", path(ca + ".key"), "-out", path(ca + ".pem"), "-days", "30",
                "-subj", "/CN=" + ca)
    for name, alt_names in (("server", "IP:127.0.0.1"), ("client", "DNS:client.example")):
        openssl("req", *ec, "-keyout", path(name + ".key"), "-out", path(name + ".csr"), "-subj", "/CN=" + name)
        with open(path(name + ".ext"), "w") as extensions:
            extensions.write("subjectAltName=%s\n" % alt_names)
        openssl("x509", "-req", "-in", path(name + ".csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                "-CAcreateserial", "-out", path(name + ".pem"), "-days", "30", "-extfile", path(name + ".ext"))


class TlsTcpTest(RunningServer, ClientBehaviour, unittest.TestCase):
    """The whole client behaviour over TLS, with client certificates required
    (`--tls-cert`, `--tls-key`, `--tls-client-ca`); refused certificates
    raise TlsError."""

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="ringmq-python-pki-")
        make_pki(cls.pki)
        cls.server_args = ["--tls-cert", cls.file("server.pem"), "--tls-key", cls.file("server.key"),
                           "--tls-client-ca", cls.file("ca.pem")]
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.pki, ignore_errors=True)

    @classmethod
    def file(cls, name):
        return os.path.join(cls.pki, name)

    def connect(self, ca="ca.pem", certificate="client"):
        return ringmq.connect(self.address, tls_ca=self.file(ca),
                              tls_cert=certificate and self.file(certificate + ".pem"),
                              tls_key=certificate and self.file(certificate + ".key"))

    def setUp(self):
        self.client = self.connect()
        self.addCleanup(self.client.close)

    def test_refused_certificates_raise_tls_error(self):
        with self.assertRaises(ringmq.TlsError) as raised:
            self.connect(ca="rogue-ca.pem")
        self.assertIn("UnknownIssuer", str(raised.exception))
        with self.assertRaises(ringmq.TlsError) as raised:
            self.connect(certificate=None)
        self.assertIn("CertificateRequired", str(raised.exception))
        with self.assertRaises(ringmq.TlsError) as raised:
            ringmq.connect(self.address)
        self.assertIn("speaks TLS", str(raised.exception))
        with self.assertRaises(ringmq.TlsError):
            ringmq.connect(self.address, tls_ca=self.file("absent.pem"))
        with self.assertRaises(ringmq.InvalidArgumentError):
            ringmq.connect(self.address, tls_ca=self.file("ca.pem"), tls_cert=self.file("client.pem"))


class TcpTest(RunningServer, ClientBehaviour, unittest.TestCase):
    """The same behaviour through `ringmq.connect` to a `ringmq serve` process."""

    def setUp(self):
        self.client = ringmq.connect(self.address)
        self.addCleanup(self.client.close)

    def test_embedded_and_tcp_clients_agree(self):
        topic = self.new_topic()
        with ringmq.connect(self.address) as other:
            self.assertIn(topic, dict(other.topics()))
            self.assertEqual(other.produce(topic, b"from the other", partition=0), 0)
        self.assertEqual([r.value for r in self.client.consumer(topic, timeout=0.3)], [b"from the other"])

    def test_connect_failure(self):
        with self.assertRaises(ringmq.IoError) as raised:
            ringmq.connect("127.0.0.1:1")
        self.assertEqual(raised.exception.code, ringmq.Result.ERROR_IO)
        with self.assertRaises(ringmq.Error):
            ringmq.connect("not an address")


if __name__ == "__main__":
    unittest.main()
