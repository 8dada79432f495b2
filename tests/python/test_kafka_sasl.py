"""Kafka clients authenticating to the Kafka listener with SASL.

Starts ``ringmq serve --authentication required`` with a bootstrap super user
(RINGMQ_BOOTSTRAP_USER), then, through the ``ringmq`` CLI as that super
user, adds a user and its ACLs. confluent-kafka (librdkafka) and
kafka-python then produce and consume with SASL PLAIN and SCRAM-SHA-256;
a wrong password, no SASL at all, and a topic the ACLs do not cover are each
refused, and nothing is written.
"""

import sys
import unittest
import uuid
from pathlib import Path

import confluent_kafka
import kafka
import kafka.errors

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve  # noqa: E402
from serve import WAIT_S, Serve  # noqa: E402

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
USER, PASSWORD = "alice", "alice-secret"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256"]


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


class KafkaSasl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Serve("ringmq-kafka-sasl-", "--authentication", "required", "--super-users", ADMIN,
                           env={"RINGMQ_BOOTSTRAP_USER": "%s:%s" % (ADMIN, ADMIN_PASSWORD)})
        cls.native = cls.server.native
        cls.bootstrap = cls.server.kafka
        cls.cli("user", "add", USER, new_password=PASSWORD)
        cls.cli("acl", "add", "--principal", USER, "--topic", "sasl-*",
                "--operation", "read,write,create,describe")
        cls.cli("acl", "add", "--principal", USER, "--group", "*", "--operation", "read")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    @classmethod
    def cli(cls, *args, user=ADMIN, password=ADMIN_PASSWORD, new_password=None, check=True):
        env = {"RINGMQ_NEW_PASSWORD": new_password} if new_password is not None else None
        return cls.server.cli(*args, user=user, password=password, env=env, check=check)

    def topic_exists(self, topic):
        return self.server.topic_exists(topic, user=ADMIN, password=ADMIN_PASSWORD)

    def confluent_config(self, mechanism, password=PASSWORD):
        return {
            "bootstrap.servers": self.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": USER, "sasl.password": password,
        }

    def kafka_python_config(self, mechanism, password=PASSWORD):
        return dict(bootstrap_servers=self.bootstrap, security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism=mechanism, sasl_plain_username=USER, sasl_plain_password=password)

    def test_confluent_kafka_produces_and_consumes_with_each_mechanism(self):
        for mechanism in MECHANISMS:
            with self.subTest(mechanism=mechanism):
                topic = unique("sasl-confluent")
                producer = confluent_kafka.Producer({**self.confluent_config(mechanism), "linger.ms": 5})
                errors = []
                for i in range(20):
                    producer.produce(topic, value=b"v%d" % i, on_delivery=lambda err, _: err and errors.append(err))
                self.assertEqual(producer.flush(WAIT_S), 0)
                self.assertEqual(errors, [])
                consumer = confluent_kafka.Consumer({**self.confluent_config(mechanism), "group.id": unique("g"),
                                                     "auto.offset.reset": "earliest"})
                consumer.subscribe([topic])
                values = serve.poll_values(consumer, 20)
                consumer.commit(asynchronous=False)
                consumer.close()
                self.assertEqual(values, [b"v%d" % i for i in range(20)])

    def test_kafka_python_produces_and_consumes_with_each_mechanism(self):
        for mechanism in MECHANISMS:
            with self.subTest(mechanism=mechanism):
                topic = unique("sasl-kp")
                producer = kafka.KafkaProducer(**self.kafka_python_config(mechanism))
                for i in range(10):
                    producer.send(topic, b"k%d" % i).get(timeout=WAIT_S)
                producer.close()
                consumer = kafka.KafkaConsumer(topic, group_id=unique("g"), auto_offset_reset="earliest",
                                               consumer_timeout_ms=WAIT_S * 1000, **self.kafka_python_config(mechanism))
                values = []
                for message in consumer:
                    values.append(message.value)
                    if len(values) == 10:
                        break
                consumer.close()
                self.assertEqual(values, [b"k%d" % i for i in range(10)])

    def test_a_wrong_password_is_refused_by_both_clients(self):
        for mechanism in MECHANISMS:
            with self.subTest(client="kafka-python", mechanism=mechanism):
                with self.assertRaises(kafka.errors.KafkaError):
                    producer = kafka.KafkaProducer(**self.kafka_python_config(mechanism, password="wrong"),
                                                   max_block_ms=3000)
                    producer.send(unique("sasl-never"), b"x").get(timeout=10)
            with self.subTest(client="confluent-kafka", mechanism=mechanism):
                failures = []
                topic = unique("sasl-never")
                producer = confluent_kafka.Producer({
                    **self.confluent_config(mechanism, password="wrong"),
                    "message.timeout.ms": 2000, "error_cb": failures.append, "log_level": 0,
                })
                delivered = []
                producer.produce(topic, b"x", on_delivery=lambda err, _: delivered.append(err))
                producer.flush(10)
                self.assertTrue(delivered and delivered[0] is not None, "the record was not delivered")
                codes = {failure.code() for failure in failures}
                self.assertIn(confluent_kafka.KafkaError._AUTHENTICATION, codes, failures)
                self.assertFalse(self.topic_exists(topic))

    def test_a_client_without_sasl_gets_nothing_done(self):
        topic = unique("sasl-plain-text")
        producer = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "message.timeout.ms": 2000,
                                             "log_level": 0})
        delivered = []
        producer.produce(topic, b"x", on_delivery=lambda err, _: delivered.append(err))
        producer.flush(10)
        self.assertTrue(delivered and delivered[0] is not None, "nothing is delivered without SASL")
        self.assertFalse(self.topic_exists(topic))

    def test_a_topic_outside_the_acls_is_refused_and_not_created(self):
        topic = unique("other")
        producer = confluent_kafka.Producer({**self.confluent_config("SCRAM-SHA-256"), "message.timeout.ms": 5000,
                                             "log_level": 0})
        delivered = []
        producer.produce(topic, b"x", on_delivery=lambda err, _: delivered.append(err))
        producer.flush(10)
        self.assertTrue(delivered and delivered[0] is not None)
        self.assertEqual(delivered[0].code(), confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED, delivered[0])
        self.assertFalse(self.topic_exists(topic))
        # The same user through the native CLI: refused with a next step.
        refused = self.cli("acl", "list", user=USER, password=PASSWORD, check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("only a super user", refused.stderr)

    def test_the_cli_manages_users_and_acls(self):
        self.cli("user", "add", "carol", new_password="carol-pw")
        self.assertIn("carol", self.cli("user", "list").stdout.split())
        acls = self.cli("acl", "list").stdout
        self.assertIn("sasl-*", acls)
        self.cli("user", "remove", "carol")
        self.assertNotIn("carol", self.cli("user", "list").stdout.split())
        wrong = self.cli("topic", "list", user=ADMIN, password="nope", check=False)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertIn("refused the credentials", wrong.stderr)


if __name__ == "__main__":
    unittest.main()
