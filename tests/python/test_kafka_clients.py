"""Unchanged Kafka clients against ringmq's Kafka listener.

Starts ``ringmq serve`` (target/debug/ringmq or $RINGMQ_BIN) with both
listeners on ephemeral loopback ports, then drives it with confluent-kafka
(librdkafka), kafka-python and kcat, and reads what they wrote through
ringmq's own Python binding (bindings/python, library from $RINGMQ_LIB or the
repository's target/), and the other way round.

Needs ``pip install -r tests/python/requirements.txt`` and kcat (Debian package
``kcat``); .ci/run installs both. A missing client fails the run, it is not
skipped.
"""

import json
import shutil
import subprocess
import sys
import time
import unittest
import uuid
from pathlib import Path

import confluent_kafka
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
import kafka
from kafka.admin import KafkaAdminClient, NewTopic as KafkaPythonNewTopic

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bindings" / "python"))
import ringmq  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve  # noqa: E402
from serve import WAIT_S, Serve  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


class KafkaListener(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        serve.binary()
        if shutil.which("kcat") is None:
            raise AssertionError("kcat is missing: apt-get install kcat")
        cls.server = Serve("ringmq-kafka-clients-")
        native = cls.native_address = cls.server.native
        cls.bootstrap = cls.server.kafka
        cls.native = ringmq.connect(native)

    @classmethod
    def tearDownClass(cls):
        cls.native.close()
        cls.server.stop()

    # ---------------------------------------------------------------- helpers

    def confluent_produce(self, topic, records, **config):
        producer = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, **config})
        reports = []
        for partition, key, value, headers, timestamp in records:
            producer.produce(topic, value=value, key=key, headers=headers, partition=partition,
                             timestamp=timestamp or 0, on_delivery=lambda err, msg: reports.append((err, msg)))
        self.assertEqual(producer.flush(WAIT_S), 0, "every record was delivered")
        errors = [err for err, _ in reports if err is not None]
        self.assertEqual(errors, [])
        return [msg for _, msg in reports]

    def confluent_consume(self, topic, partitions, count, group=None):
        consumer = confluent_kafka.Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": group or unique("reader"),
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        })
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in partitions])
        messages = []
        deadline = time.time() + WAIT_S
        while len(messages) < count and time.time() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            self.assertIsNone(message.error())
            messages.append(message)
        consumer.close()
        self.assertEqual(len(messages), count)
        return messages

    def native_records(self, topic, partition, count):
        records = []
        deadline = time.time() + WAIT_S
        while len(records) < count and time.time() < deadline:
            records.extend(self.native.fetch(topic, partition, len(records), timeout=0.5))
        self.assertEqual(len(records), count)
        return records

    def kcat(self, *args, stdin=None):
        done = subprocess.run(["kcat", "-b", self.bootstrap, *args], input=stdin, capture_output=True,
                              timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))
        return done.stdout

    # ------------------------------------------------------------------ tests

    def test_confluent_kafka_produces_with_every_acks_and_codec_and_native_reads_it_byte_for_byte(self):
        for acks in ["0", "1", "all"]:
            for idempotent in ([False, True] if acks == "all" else [False]):
                for codec in CODECS:
                    with self.subTest(acks=acks, idempotent=idempotent, codec=codec):
                        topic = unique("matrix")
                        base = int(time.time() * 1000) - 10_000
                        sent = [(0, b"key-%d" % i, b"value-%d " % i * 20, [("h", b"%d" % i), ("n", None)], base + i)
                                for i in range(200)]
                        self.confluent_produce(topic, sent, **{
                            "acks": acks, "enable.idempotence": idempotent, "compression.type": codec})
                        got = self.native_records(topic, 0, len(sent))
                        for (_, key, value, headers, timestamp), record in zip(sent, got):
                            self.assertEqual((record.key, record.value, record.timestamp), (key, value, timestamp))
                            self.assertEqual(record.headers, [(k.encode(), v) for k, v in headers])
                        read = self.confluent_consume(topic, [0], len(sent))
                        self.assertEqual([m.value() for m in read], [r[2] for r in sent])
                        self.assertEqual([m.offset() for m in read], list(range(len(sent))))

    def test_records_produced_natively_are_read_by_confluent_kafka_and_kafka_python(self):
        topic = unique("native-in")
        self.native.create_topic(topic, partitions=2)
        self.native.produce(topic, b"v0", key=b"k0", headers=[(b"h", b"x"), (b"null", None)], partition=1,
                            acks="durable", timestamp_ms=1_700_000_000_123)
        self.native.produce(topic, b"", key=None, partition=1, acks="written", timestamp_ms=1_700_000_000_124)
        [first, second] = self.confluent_consume(topic, [1], 2)
        self.assertEqual((first.key(), first.value(), first.headers()), (b"k0", b"v0", [("h", b"x"), ("null", None)]))
        self.assertEqual(first.timestamp(), (confluent_kafka.TIMESTAMP_CREATE_TIME, 1_700_000_000_123))
        self.assertEqual((second.key(), second.value(), second.offset()), (None, b"", 1))

        consumer = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        partition = kafka.TopicPartition(topic, 1)
        consumer.assign([partition])
        consumer.seek_to_beginning()
        records = []
        deadline = time.time() + WAIT_S
        while len(records) < 2 and time.time() < deadline:
            for batch in consumer.poll(500).values():
                records.extend(batch)
        consumer.close()
        self.assertEqual([(r.key, r.value, r.timestamp) for r in records],
                         [(b"k0", b"v0", 1_700_000_000_123), (None, b"", 1_700_000_000_124)])
        self.assertEqual(records[0].headers, [("h", b"x"), ("null", None)])

    def test_kafka_python_produces_idempotently_and_a_group_commits_and_resumes(self):
        topic = unique("kp")
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        admin.create_topics([KafkaPythonNewTopic(topic, 2, 1)])
        admin.close()
        for acks, codec in [(0, None), (1, "gzip"), ("all", None), ("all", "gzip")]:
            producer = kafka.KafkaProducer(bootstrap_servers=self.bootstrap, acks=acks, compression_type=codec,
                                           enable_idempotence=(acks == "all"))
            futures = [producer.send(topic, key=b"k", value=b"%s-%d" % (str(acks).encode(), i), partition=i % 2)
                       for i in range(50)]
            producer.flush()
            metadata = [future.get(timeout=WAIT_S) for future in futures]
            producer.close()
            if acks != 0:
                self.assertEqual(len({(m.partition, m.offset) for m in metadata}), 50, "offsets are distinct")
        for partition in (0, 1):
            self.assertEqual(self.native.offsets(topic, partition).latest, 100)

        group = unique("kp-group")
        partitions = [kafka.TopicPartition(topic, 0), kafka.TopicPartition(topic, 1)]

        def consume(limit):
            consumer = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group,
                                           enable_auto_commit=False, auto_offset_reset="earliest")
            consumer.assign(partitions)
            seen = []
            deadline = time.time() + WAIT_S
            while len(seen) < limit and time.time() < deadline:
                for batch in consumer.poll(500, max_records=limit - len(seen)).values():
                    seen.extend(batch)
            consumer.commit()
            committed = [consumer.committed(p) for p in partitions]
            consumer.close()
            return seen, committed

        first, committed = consume(120)
        self.assertEqual(len(first), 120)
        self.assertEqual(sum(committed), 120)
        rest, committed = consume(80)
        self.assertEqual(len(rest), 80)
        self.assertEqual(committed, [100, 100])
        seen = {(r.partition, r.offset) for r in first + rest}
        self.assertEqual(len(seen), 200, "the second consumer resumed where the first committed")

    def test_offsets_for_times_and_watermarks(self):
        topic = unique("times")
        base = 1_700_000_000_000
        self.confluent_produce(topic, [(0, None, b"%d" % i, None, base + 1000 * i) for i in range(5)], acks="all")
        consumer = confluent_kafka.Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique("times")})
        query = lambda ms: consumer.offsets_for_times([confluent_kafka.TopicPartition(topic, 0, ms)], timeout=WAIT_S)[0]
        self.assertEqual(query(base - 1).offset, 0)
        self.assertEqual(query(base + 1500).offset, 2)
        self.assertEqual(query(base + 4000).offset, 4)
        self.assertEqual(query(base + 5000).offset, -1, "past the last record: the end (-1)")
        self.assertEqual(consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, 0), timeout=WAIT_S), (0, 5))
        consumer.close()

    def test_admin_creates_describes_and_deletes_topics(self):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        topic = unique("admin")
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                      config={"retention.ms": "3600000"})])[topic].result()
        self.assertEqual(len(admin.list_topics(timeout=WAIT_S).topics[topic].partitions), 3)
        self.assertIn((topic, 3), self.native.topics())
        with self.assertRaises(confluent_kafka.KafkaException) as raised:
            admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result()
        self.assertEqual(raised.exception.args[0].code(), confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS)
        configs = admin.describe_configs([ConfigResource("topic", topic)])
        entries = list(configs.values())[0].result()
        self.assertEqual(entries["retention.ms"].value, "3600000")
        admin.delete_topics([topic])[topic].result()
        self.assertNotIn(topic, admin.list_topics(timeout=WAIT_S).topics)
        self.assertNotIn(topic, [name for name, _ in self.native.topics()])
        # Assignments that put every partition on this broker are fine; others are not.
        assigned = unique("assigned")
        admin.create_topics([NewTopic(assigned, num_partitions=2, replication_factor=-1, replica_assignment=[[0], [0]])])[assigned].result()
        self.assertIn((assigned, 2), self.native.topics())
        elsewhere = unique("elsewhere")
        with self.assertRaises(confluent_kafka.KafkaException) as raised:
            admin.create_topics([NewTopic(elsewhere, num_partitions=2, replication_factor=-1, replica_assignment=[[0], [1]])])[elsewhere].result()
        self.assertEqual(raised.exception.args[0].code(), confluent_kafka.KafkaError.INVALID_REPLICA_ASSIGNMENT)
        # compression.type: "producer" (batches stored as sent) is what ringmq does; lz4 is refused.
        kept = unique("kept")
        admin.create_topics([NewTopic(kept, 1, 1, config={"compression.type": "producer"})])[kept].result()
        recompressed = unique("recompressed")
        with self.assertRaises(confluent_kafka.KafkaException) as raised:
            admin.create_topics([NewTopic(recompressed, 1, 1, config={"compression.type": "lz4"})])[recompressed].result()
        self.assertEqual(raised.exception.args[0].code(), confluent_kafka.KafkaError.INVALID_CONFIG)
        self.assertNotIn(recompressed, [name for name, _ in self.native.topics()])
        never = unique("never")
        with self.assertRaises(confluent_kafka.KafkaException) as raised:
            admin.delete_topics([never])[never].result()
        self.assertEqual(raised.exception.args[0].code(), confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART)

    def group_member(self, group, topic, **config):
        consumer = confluent_kafka.Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 300, **config})
        consumer.subscribe([topic])
        return consumer

    def settle(self, members, expected, consumed):
        """Polls every member until their assignments are `expected` (a list
        of sets, one per member); records go into `consumed` (and are committed)."""
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            for member in members:
                message = member.poll(0.1)
                if message is not None:
                    self.assertIsNone(message.error())
                    consumed.append((message.partition(), message.offset()))
                    member.commit(message=message, asynchronous=False)
            assignments = [{tp.partition for tp in member.assignment()} for member in members]
            if assignments == expected:
                return
        self.fail("assignments %s never became %s" % ([m.assignment() for m in members], expected))

    def test_subscribe_with_two_members_rebalances_on_join_and_leave_and_commits_resume(self):
        topic, group = unique("subscribed"), unique("classic")
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result()
        self.confluent_produce(topic, [(i % 4, None, b"%d" % i, None, None) for i in range(40)], acks="all")
        consumed = []
        first = self.group_member(group, topic)
        self.settle([first], [{0, 1, 2, 3}], consumed)
        second = self.group_member(group, topic)
        # The join rebalances: two partitions each, no partition owned twice.
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            for member in (first, second):
                message = member.poll(0.1)
                if message is not None:
                    self.assertIsNone(message.error())
                    consumed.append((message.partition(), message.offset()))
                    member.commit(message=message, asynchronous=False)
            owned = [{tp.partition for tp in m.assignment()} for m in (first, second)]
            if len(owned[0]) == 2 and len(owned[1]) == 2:
                break
        self.assertEqual(len(owned[0]) + len(owned[1]), 4)
        self.assertEqual(owned[0] | owned[1], {0, 1, 2, 3}, "every partition has one owner")
        self.confluent_produce(topic, [(i % 4, None, b"late-%d" % i, None, None) for i in range(40)], acks="all")
        self.settle([first, second], owned, consumed)
        deadline = time.time() + WAIT_S
        while len(set(consumed)) < 80 and time.time() < deadline:
            self.settle([first, second], owned, consumed)
        self.assertEqual(len(set(consumed)), 80, "every record was consumed")
        # The leave rebalances: the first member takes everything back.
        second.close()
        self.settle([first], [{0, 1, 2, 3}], consumed)
        first.close()
        self.assertEqual(len(consumed), len(set(consumed)), "no record was consumed twice (each was committed)")
        # A new member of the group resumes from the committed offsets.
        third = self.group_member(group, topic)
        resumed = []
        self.settle([third], [{0, 1, 2, 3}], resumed)
        self.confluent_produce(topic, [(0, None, b"after", None, None)], acks="all")
        deadline = time.time() + WAIT_S
        while not resumed and time.time() < deadline:
            self.settle([third], [{0, 1, 2, 3}], resumed)
        third.close()
        self.assertEqual(resumed, [(0, 20)], "only the record produced after the commits")
        [described] = admin.describe_consumer_groups([group]).values()
        self.assertEqual(str(described.result().state), "ConsumerGroupState.EMPTY")
        listed = [g.group_id for g in admin.list_consumer_groups().result().valid]
        self.assertIn(group, listed)

    def test_kafka_python_and_confluent_kafka_share_a_group_and_the_other_kind_is_refused(self):
        topic, group = unique("mixed"), unique("mixed")
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
        confluent_member = self.group_member(group, topic)
        self.settle([confluent_member], [{0, 1}], [])
        python_member = kafka.KafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group,
                                            session_timeout_ms=6000, heartbeat_interval_ms=300)
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            python_member.poll(100)
            confluent_member.poll(0.1)
            mine = {tp.partition for tp in python_member.assignment()}
            theirs = {tp.partition for tp in confluent_member.assignment()}
            if len(mine) == 1 and len(theirs) == 1:
                break
        self.assertEqual((len(mine), len(theirs), mine | theirs), (1, 1, {0, 1}))
        python_member.close()
        confluent_member.close()

        # A group with a native member refuses Kafka members, and the other way round.
        native_group = unique("native-kind")
        native_member = self.native.group_consumer(native_group, [topic])
        native_member.poll(1.0)
        refused = self.group_member(native_group, topic)
        error = None
        deadline = time.time() + WAIT_S
        while error is None and time.time() < deadline:
            message = refused.poll(0.2)
            if message is not None and message.error() is not None:
                error = message.error()
        refused.close()
        native_member.close()
        self.assertEqual(error.code(), confluent_kafka.KafkaError.INCONSISTENT_GROUP_PROTOCOL)

    def test_kcat_lists_metadata_as_json_and_produces_and_consumes(self):
        topic = unique("kcat")
        self.kcat("-P", "-t", topic, "-p", "0", "-K", ":", stdin=b"a:1\nb:2\nc:3\n")
        self.kcat("-P", "-t", topic, "-p", "0", "-z", "gzip", stdin=b"4\n5\n")
        metadata = json.loads(self.kcat("-L", "-J"))
        host, port = self.bootstrap.rsplit(":", 1)
        self.assertEqual([(b["id"], b["name"]) for b in metadata["brokers"]], [(0, "%s:%s" % (host, port))])
        [listed] = [t for t in metadata["topics"] if t["topic"] == topic]
        self.assertEqual([p["partition"] for p in listed["partitions"]], [0])
        consumed = self.kcat("-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%o %k=%s\\n")
        self.assertEqual(consumed.decode().splitlines(), ["0 a=1", "1 b=2", "2 c=3", "3 =4", "4 =5"])
        values = [r.value for r in self.native_records(topic, 0, 5)]
        self.assertEqual(values, [b"1", b"2", b"3", b"4", b"5"], "native reads kcat's gzip batch too")

    def test_share_groups_and_group_lag_see_records_produced_through_kafka(self):
        topic = unique("kafka-queue")
        self.confluent_produce(topic, [(0, None, b"job-%d" % i, None, None) for i in range(10)],
                               acks="all", **{"compression.type": "lz4"})
        queue = self.native.share_consumer(unique("workers"), topic)
        received = []
        deadline = time.time() + WAIT_S
        while len(received) < 10 and time.time() < deadline:
            batch = queue.receive(max_records=10, timeout=0.5)
            for record in batch:
                # job-3 is rejected: dead-lettered with its key, value and headers.
                queue.acknowledge(record, "reject" if record.value == b"job-3" else "accept")
            received.extend(batch)
        queue.close()
        self.assertEqual(sorted(r.value for r in received), sorted(b"job-%d" % i for i in range(10)))
        [letter] = self.native_records(topic + ".dlq", 0, 1)
        self.assertEqual(letter.value, b"job-3", "the dead letter is the record out of an lz4 batch")
        self.assertIn((b"ringmq.dlq.reason", b"rejected"), letter.headers)

        group = unique("lag")
        consumer = confluent_kafka.Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                                             "enable.auto.commit": False})
        consumer.commit(offsets=[confluent_kafka.TopicPartition(topic, 0, 4)], asynchronous=False)
        consumer.close()
        description = self.native.describe_group(group)
        self.assertEqual(description.lag, 6, "10 records, 4 committed through Kafka: lag 6 natively")


if __name__ == "__main__":
    unittest.main()
