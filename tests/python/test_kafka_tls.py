"""Kafka clients over TLS to the Kafka listener, with client certificates and SASL.

Makes a CA, a server certificate (localhost, 127.0.0.1), a client
certificate and a second CA nobody trusts with the ``openssl`` command, then
starts ``ringmq serve`` with TLS on both listeners, client certificates
required (``--tls-client-ca``) and SASL required. confluent-kafka
(SASL_SSL, SCRAM-SHA-256) and kafka-python (SASL_SSL, PLAIN) produce and
consume; a client without a certificate and a client that does not trust the
server's CA are refused, and nothing they sent is written. The ``ringmq``
CLI connects with ``--tls-ca``/``--tls-client-cert``, and without ``--tls``
is told the server speaks TLS.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid
from pathlib import Path

import confluent_kafka
import kafka

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve  # noqa: E402
from serve import WAIT_S, Serve  # noqa: E402

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=WAIT_S)


def make_pki(directory):
    """CA, server and client certificates signed by it, and a rogue CA (PEM files)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", *ec, "-keyout", os.path.join(directory, ca + ".key"),
                "-out", os.path.join(directory, ca + ".pem"), "-days", "30", "-subj", "/CN=" + ca)
    for name, alt_names in (("server", "DNS:localhost,IP:127.0.0.1"), ("client", "DNS:client.example")):
        path = lambda suffix: os.path.join(directory, name + suffix)
        openssl("req", *ec, "-keyout", path(".key"), "-out", path(".csr"), "-subj", "/CN=" + name)
        with open(path(".ext"), "w") as extensions:
            extensions.write("subjectAltName=%s\n" % alt_names)
        openssl("x509", "-req", "-in", path(".csr"), "-CA", os.path.join(directory, "ca.pem"),
                "-CAkey", os.path.join(directory, "ca.key"), "-CAcreateserial", "-out", path(".pem"),
                "-days", "30", "-extfile", path(".ext"))


class KafkaTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        serve.binary()
        if shutil.which("openssl") is None:
            raise AssertionError("the openssl command is missing: apt-get install openssl")
        cls.directory = tempfile.mkdtemp(prefix="ringmq-kafka-tls-pki-")
        cls.pki = cls.directory
        make_pki(cls.pki)
        cls.server = Serve(
            "ringmq-kafka-tls-", "--authentication", "required", "--super-users", ADMIN,
            "--tls-cert", cls.file("server.pem"), "--tls-key", cls.file("server.key"),
            "--tls-client-ca", cls.file("ca.pem"),
            env={"RINGMQ_BOOTSTRAP_USER": "%s:%s" % (ADMIN, ADMIN_PASSWORD)},
        )
        cls.native = cls.server.native
        cls.bootstrap = cls.server.kafka

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            shutil.rmtree(cls.directory, ignore_errors=True)

    @classmethod
    def file(cls, name):
        return os.path.join(cls.pki, name)

    def tls_flags(self):
        return ["--tls-ca", self.file("ca.pem"), "--tls-client-cert", self.file("client.pem"),
                "--tls-client-key", self.file("client.key")]

    def cli(self, *args, tls=True, check=True):
        flags = self.tls_flags() if tls else []
        return self.server.cli(*flags, *args, user=ADMIN, password=ADMIN_PASSWORD, check=check)

    def topic_exists(self, topic):
        return self.server.topic_exists(topic, *self.tls_flags(), user=ADMIN, password=ADMIN_PASSWORD)

    def confluent_config(self, ca="ca.pem", client_certificate=True):
        config = {
            "bootstrap.servers": self.bootstrap, "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": ADMIN, "sasl.password": ADMIN_PASSWORD,
            "ssl.ca.location": self.file(ca),
        }
        if client_certificate:
            config["ssl.certificate.location"] = self.file("client.pem")
            config["ssl.key.location"] = self.file("client.key")
        return config

    def test_confluent_kafka_produces_and_consumes_over_tls_with_scram(self):
        topic = unique("tls-confluent")
        producer = confluent_kafka.Producer({**self.confluent_config(), "linger.ms": 5})
        errors = []
        for i in range(50):
            producer.produce(topic, value=b"v%d" % i * 100, on_delivery=lambda err, _: err and errors.append(err))
        self.assertEqual(producer.flush(WAIT_S), 0)
        self.assertEqual(errors, [])
        consumer = confluent_kafka.Consumer({**self.confluent_config(), "group.id": unique("g"),
                                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        values = serve.poll_values(consumer, 50)
        consumer.close()
        self.assertEqual(values, [b"v%d" % i * 100 for i in range(50)])

    def test_kafka_python_produces_and_consumes_over_tls_with_plain(self):
        topic = unique("tls-kp")
        config = dict(bootstrap_servers=self.bootstrap, security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                      sasl_plain_username=ADMIN, sasl_plain_password=ADMIN_PASSWORD,
                      ssl_cafile=self.file("ca.pem"), ssl_certfile=self.file("client.pem"),
                      ssl_keyfile=self.file("client.key"))
        producer = kafka.KafkaProducer(**config)
        for i in range(10):
            producer.send(topic, b"k%d" % i).get(timeout=WAIT_S)
        producer.close()
        consumer = kafka.KafkaConsumer(topic, group_id=unique("g"), auto_offset_reset="earliest",
                                       consumer_timeout_ms=WAIT_S * 1000, **config)
        values = []
        for message in consumer:
            values.append(message.value)
            if len(values) == 10:
                break
        consumer.close()
        self.assertEqual(values, [b"k%d" % i for i in range(10)])

    def refused(self, config):
        """Produces one record with `config`; returns the client's error codes. Asserts nothing was written."""
        failures = []
        topic = unique("tls-never")
        producer = confluent_kafka.Producer({**config, "message.timeout.ms": 3000, "error_cb": failures.append,
                                             "log_level": 0})
        delivered = []
        producer.produce(topic, b"x", on_delivery=lambda err, _: delivered.append(err))
        producer.flush(10)
        self.assertTrue(delivered and delivered[0] is not None, "the record was not delivered")
        self.assertFalse(self.topic_exists(topic))
        return {failure.code() for failure in failures}

    def test_a_client_without_a_certificate_is_refused(self):
        codes = self.refused(self.confluent_config(client_certificate=False))
        self.assertTrue(codes & {confluent_kafka.KafkaError._SSL, confluent_kafka.KafkaError._TRANSPORT,
                                 confluent_kafka.KafkaError._ALL_BROKERS_DOWN}, codes)

    def test_a_client_that_does_not_trust_the_servers_ca_refuses_it(self):
        codes = self.refused(self.confluent_config(ca="rogue-ca.pem"))
        self.assertIn(confluent_kafka.KafkaError._SSL, codes)

    def test_the_cli_connects_with_tls_and_without_it_is_told_to(self):
        topic = unique("tls-cli")
        self.cli("topic", "create", topic, "--partitions", "2")
        self.assertTrue(self.topic_exists(topic))
        plain = self.cli("topic", "list", tls=False, check=False)
        self.assertNotEqual(plain.returncode, 0)
        self.assertIn("speaks TLS", plain.stderr)


if __name__ == "__main__":
    unittest.main()
