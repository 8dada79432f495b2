"""Tests of consumer groups, share groups (queues) and group descriptions in
the ringmq Python binding, on an embedded broker and over TCP.

From the repository root:  python3 -m unittest discover -s bindings/python/tests -v
(see test_ringmq.py for how the package, the library and the server are found).
"""

import collections
import gc
import shutil
import tempfile
import threading
import time
import unittest

from test_ringmq import RunningServer, ringmq, unique, wait_until

# Members of one group in one test poll from threads of their own: a rebalance
# waits until every member has polled again.
FAST = dict(heartbeat_interval_ms=50, session_timeout_ms=30_000, rebalance_timeout_ms=30_000)


def produce_numbered(client, topic, partition, count, first=0, acks="written"):
    """Records "P-I" with a header ("n", I), one batch; returns the base offset."""
    return client.produce_many(
        topic,
        [(None, "%d-%d" % (partition, i), [("n", str(i))]) for i in range(first, first + count)],
        partition=partition,
        acks=acks,
    )


def poll_until(consumer, count, timeout=30.0):
    """Polls until `count` records arrived (fails on more)."""
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        if time.monotonic() > deadline:
            raise AssertionError("got %d of %d records" % (len(records), count))
        records.extend(consumer.poll(0.2))
    if len(records) != count:
        raise AssertionError("got %d records, expected %d" % (len(records), count))
    return records


def wait_for_records(consumer, count, timeout=30.0):
    """Receives until `count` records arrived (fails on more)."""
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        if time.monotonic() > deadline:
            raise AssertionError("received %d of %d records" % (len(records), count))
        records.extend(consumer.receive(count - len(records), 0.1))
    if len(records) != count:
        raise AssertionError("received %d records, expected %d" % (len(records), count))
    return records


class GroupBehaviour:
    """Group tests every client must pass, embedded or over TCP: `self.client`
    is set by the concrete classes."""

    client = None  # type: ringmq.Client

    def new_topic(self, partitions=1):
        name = unique()
        self.client.create_topic(name, partitions=partitions)
        return name

    # --- consumer groups ------------------------------------------------------------

    def test_two_members_split_the_partitions_and_read_every_record_once(self):
        topic = self.new_topic(partitions=4)
        group = unique("group")
        stop = threading.Event()
        lock = threading.Lock()
        seen = collections.Counter()
        read_from = [set(), set()]
        state = [(0, 0), (0, 0)]  # (generation, assignment_len) of each member
        errors = []

        def member(index):
            try:
                with self.client.group_consumer(group, [topic], **FAST) as consumer:
                    while not stop.is_set():
                        for record in consumer.poll(0.1):
                            self.assertEqual(record.topic, topic)
                            self.assertEqual(record.value, b"%d-%d" % (record.partition, record.offset))
                            self.assertEqual(record.headers, [(b"n", b"%d" % record.offset)])
                            with lock:
                                seen[(record.partition, record.offset)] += 1
                                read_from[index].add(record.partition)
                        state[index] = (consumer.generation, consumer.assignment_len)
                    consumer.commit()
            except Exception as error:  # reported by the main thread
                errors.append(error)

        threads = [threading.Thread(target=member, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        try:
            # Both in one generation with two partitions each; then the records.
            wait_until(
                lambda: errors or (state[0][0] > 0 and state[0] == state[1] and state[0][1] == 2),
                timeout=60,
                what="both members to join",
            )
            for partition in range(4):
                self.assertEqual(produce_numbered(self.client, topic, partition, 10), 0)
            wait_until(lambda: errors or sum(seen.values()) >= 40, timeout=60, what="every record")
            time.sleep(0.3)  # room for a duplicate to show up
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(seen), [(p, o) for p in range(4) for o in range(10)])
        self.assertEqual(set(seen.values()), {1})
        self.assertEqual(len(read_from[0]), 2)
        self.assertEqual(len(read_from[1]), 2)
        self.assertEqual(read_from[0] & read_from[1], set())

        description = self.client.describe_group(group)
        self.assertEqual((description.kind, description.state, description.members), ("consumer", "empty", 0))
        self.assertGreaterEqual(description.generation, 2)
        self.assertEqual(
            [(p.topic, p.partition, p.committed, p.end, p.lag) for p in description.partitions],
            [(topic, p, 10, 10, 0) for p in range(4)],
        )
        self.assertEqual(description.lag, 0)

    def test_two_members_polled_from_one_thread_settle_on_a_split(self):
        # Issue 12, item 2: each poll blocked in its join until the rebalance
        # timeout, the other member was dropped meanwhile, and both owned
        # every partition for ever.
        topic = self.new_topic(partitions=3)
        group = unique("one-thread")
        options = dict(session_timeout_ms=10_000, rebalance_timeout_ms=3_000, heartbeat_interval_ms=100)
        a = self.client.group_consumer(group, [topic], **options)
        b = self.client.group_consumer(group, [topic], **options)
        deadline = time.monotonic() + 2.5  # inside the rebalance timeout
        while True:
            for member in (a, b):
                started = time.monotonic()
                member.poll(0.05)
                self.assertLess(time.monotonic() - started, 1.0, "a poll returns by its timeout")
            if (
                a.generation > 0
                and a.generation == b.generation
                and a.assignment_len > 0
                and b.assignment_len > 0
                and a.assignment_len + b.assignment_len == 3
            ):
                break
            self.assertLess(time.monotonic(), deadline, "no split: %d / %d" % (a.assignment_len, b.assignment_len))
        self.assertEqual(self.client.describe_group(group).members, 2)
        b.close()
        deadline = time.monotonic() + 2.5
        while a.assignment_len != 3:
            a.poll(0.05)
            self.assertLess(time.monotonic(), deadline, "the survivor did not take over")
        a.close()

    def test_committed_offsets_resume_after_close_and_reopen(self):
        topic = self.new_topic(partitions=2)
        produce_numbered(self.client, topic, 0, 5)
        produce_numbered(self.client, topic, 1, 3)
        group = unique("manual")

        consumer = self.client.group_consumer(group, [topic], manual_commit=True, **FAST)
        self.assertEqual((consumer.generation, consumer.assignment_len), (0, 0))  # joins on the first poll
        records = poll_until(consumer, 8)
        self.assertGreaterEqual(consumer.generation, 1)
        self.assertEqual(consumer.assignment_len, 2)
        self.assertEqual(
            sorted((r.partition, r.offset) for r in records), [(0, o) for o in range(5)] + [(1, o) for o in range(3)]
        )
        consumer.commit_offset(topic, 0, 2)
        consumer.close()  # manual: commits nothing more
        consumer.close()  # idempotent
        self.assertTrue(consumer.closed)
        with self.assertRaises(ringmq.ClosedError):
            consumer.poll(0)
        with self.assertRaises(ringmq.ClosedError):
            consumer.commit()

        # Lag: produced minus committed; without a commit, every record.
        description = self.client.describe_group(group)
        self.assertEqual(description.state, "empty")
        self.assertEqual(
            [(p.partition, p.committed, p.end, p.lag) for p in description.partitions],
            [(0, 2, 5, 3)],
        )

        with self.client.group_consumer(group, topic, manual_commit=True, **FAST) as consumer:
            records = poll_until(consumer, 3 + 3)
            by_partition = collections.defaultdict(list)
            for record in records:
                by_partition[record.partition].append(record.offset)
            self.assertEqual(dict(by_partition), {0: [2, 3, 4], 1: [0, 1, 2]})
            self.assertEqual(consumer.poll(0.05), [])
            consumer.commit()
        description = self.client.describe_group(group)
        self.assertEqual([(p.partition, p.committed, p.lag) for p in description.partitions], [(0, 5, 0), (1, 3, 0)])

        # Automatic commits: closing commits what the polls returned.
        automatic = unique("auto")
        with self.client.group_consumer(automatic, [topic], **FAST) as consumer:
            poll_until(consumer, 8)
        self.assertEqual(self.client.describe_group(automatic).lag, 0)
        produce_numbered(self.client, topic, 1, 2, first=3)
        description = self.client.describe_group(automatic)
        self.assertEqual(
            [(p.partition, p.committed, p.end, p.lag) for p in description.partitions], [(0, 5, 5, 0), (1, 3, 5, 2)]
        )
        self.assertEqual(description.lag, 2)
        with self.client.group_consumer(automatic, [topic], **FAST) as consumer:
            records = poll_until(consumer, 2)
            self.assertEqual([(r.partition, r.offset, r.value) for r in records], [(1, 3, b"1-3"), (1, 4, b"1-4")])
        self.assertEqual(self.client.describe_group(automatic).lag, 0)

        # offset_reset='latest': a new group starts at the end.
        with self.client.group_consumer(unique("latest"), [topic], offset_reset="latest", **FAST) as consumer:
            self.assertEqual(consumer.poll(0.2), [])
            self.assertEqual(consumer.assignment_len, 2)
            produce_numbered(self.client, topic, 0, 1, first=5)
            self.assertEqual([(r.partition, r.offset) for r in poll_until(consumer, 1)], [(0, 5)])

    def test_group_errors(self):
        topic = self.new_topic()
        with self.assertRaises(ringmq.UnknownGroupError) as raised:
            self.client.describe_group(unique("nobody"))
        self.assertEqual(raised.exception.code, ringmq.Result.ERROR_UNKNOWN_GROUP)
        self.assertIn("RMQ_ERROR_UNKNOWN_GROUP", str(raised.exception))
        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.group_consumer(unique("g"), [topic], offset_reset="middle")
        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.group_consumer(unique("g"), [])
        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.group_consumer(unique("g"), [topic], session_timeout_ms=-1)
        with self.assertRaises(TypeError):
            self.client.group_consumer(unique("g"), [42])
        # The broker refuses an invalid group name when the member joins: at
        # once, so the first poll that waits at all reports it.
        with self.client.group_consumer("", [topic]) as consumer:
            with self.assertRaises(ringmq.InvalidArgumentError):
                consumer.poll(1.0)
        with self.assertRaises(ringmq.UnknownTopicError):
            self.client.share_consumer(unique("workers"), unique("missing"))
        with self.assertRaises(ringmq.InvalidArgumentError):
            self.client.share_consumer(unique("workers"), topic, max_deliveries=70_000)

    # --- share groups ---------------------------------------------------------------

    def test_share_members_receive_disjoint_records(self):
        topic = self.new_topic(partitions=2)
        for partition in range(2):
            produce_numbered(self.client, topic, partition, 6)
        group = unique("workers")
        first = self.client.share_consumer(group, topic)
        second = self.client.share_consumer(group, topic, lease_ms=30_000)
        with first, second:
            held = first.receive(max_records=4, timeout=5)
            self.assertEqual(len(held), 4)
            seen = collections.Counter((r.partition, r.offset) for r in held)
            received = wait_for_records(second, 12 - len(held))
            seen.update((r.partition, r.offset) for r in received)
            self.assertEqual(sorted(seen), [(p, o) for p in range(2) for o in range(6)])
            self.assertEqual(set(seen.values()), {1})  # disjoint
            for record in held + received:
                self.assertEqual(record.topic, topic)
                self.assertEqual(record.delivery_count, 1)
                self.assertEqual(record.value, b"%d-%d" % (record.partition, record.offset))
                self.assertEqual(record.headers, [(b"n", b"%d" % record.offset)])
                self.assertIsInstance(record.record, ringmq.Record)
            self.assertEqual(second.receive(10, 0.05), [])  # the others are held
            second.acknowledge_all(received)  # one request per receive
            for record in held:
                first.acknowledge(record, "accept")
            with self.assertRaises(ringmq.InvalidStateError):
                second.acknowledge_all(received)  # accepted already
            self.assertEqual(second.receive(10, 0.05), [])

            description = self.client.describe_group(group)
            self.assertEqual(
                (description.kind, description.state, description.generation, description.members),
                ("share", "stable", 0, 2),
            )
            self.assertEqual(
                [tuple(p) for p in description.partitions],
                [(topic, p, 6, 6, 0, 0, 0, 6) for p in range(2)],  # committed is the first offset not archived
            )

    def test_share_release_redelivers_and_accepting_twice_is_refused(self):
        topic = self.new_topic()
        produce_numbered(self.client, topic, 0, 3)
        group = unique("workers")
        with self.client.share_consumer(group, topic) as first, self.client.share_consumer(group, topic) as second:
            [record] = first.receive(1, 5)
            self.assertEqual((record.offset, record.delivery_count), (0, 1))
            rest = wait_for_records(second, 2)
            self.assertEqual([(r.offset, r.delivery_count) for r in rest], [(1, 1), (2, 1)])
            for other in rest:
                second.accept(other)
            self.assertEqual(second.receive(10, 0.05), [])  # first holds the last one
            first.release(record)
            [again] = wait_for_records(second, 1)
            self.assertEqual((again.partition, again.offset, again.delivery_count), (0, 0, 2))
            second.renew(again)
            second.accept(again)
            with self.assertRaises(ringmq.InvalidStateError) as raised:
                second.accept(again)
            self.assertEqual(raised.exception.code, ringmq.Result.ERROR_INVALID_STATE)
            self.assertEqual(raised.exception.code, 16)
            with self.assertRaises(ringmq.InvalidStateError):
                first.accept(record)  # released: no longer first's
            with self.assertRaises(ringmq.InvalidArgumentError):
                first.accept(again)  # received by another consumer
            with self.assertRaises(ringmq.InvalidArgumentError):
                second.acknowledge(again, "forget")
            with self.assertRaises(ringmq.InvalidArgumentError):
                second.acknowledge(again, 5)
            with self.assertRaises(TypeError):
                second.accept(again.record)

    def test_share_reject_dead_letters(self):
        topic = self.new_topic()
        self.client.produce(topic, b"poison", key=b"k", headers=[("trace", b"t1")], partition=0)
        group = unique("workers")
        with self.client.share_consumer(group, topic) as consumer:
            [record] = consumer.receive(10, 5)
            consumer.reject(record)
            with self.assertRaises(ringmq.InvalidStateError):
                consumer.accept(record)
        dead = self.client.fetch(topic + ".dlq", 0, 0, timeout=5)
        self.assertEqual(len(dead), 1)
        letter = dead[0]
        self.assertEqual((letter.key, letter.value), (b"k", b"poison"))
        headers = dict(letter.headers)
        self.assertEqual(headers[b"ringmq.dlq.reason"], b"rejected")
        self.assertEqual(headers[b"ringmq.dlq.topic"], topic.encode())
        self.assertEqual(headers[b"ringmq.dlq.partition"], b"0")
        self.assertEqual(headers[b"ringmq.dlq.offset"], b"0")
        self.assertEqual(headers[b"ringmq.dlq.group"], group.encode())
        self.assertEqual(headers[b"trace"], b"t1")  # the record's own headers are kept

        # max_deliveries and a dead-letter topic of our choice.
        parked = unique("parked")
        other_group = self.client.share_consumer(unique("workers"), topic, max_deliveries=1, dead_letter_topic=parked)
        with other_group as consumer:
            [record] = consumer.receive(10, 5)
            consumer.release(record)  # delivered once: dead-lettered
        [letter] = self.client.fetch(parked, 0, 0, timeout=5)
        self.assertEqual(dict(letter.headers)[b"ringmq.dlq.reason"], b"max-deliveries")

    def test_share_leases_expire_and_describe_counts(self):
        topic = self.new_topic()
        produce_numbered(self.client, topic, 0, 5)
        group = unique("workers")
        slow = self.client.share_consumer(group, topic, lease_ms=300)
        other = self.client.share_consumer(group, topic)
        with slow, other:
            held = slow.receive(2, 5)
            self.assertEqual([r.offset for r in held], [0, 1])
            [partition] = self.client.describe_group(group).partitions
            # committed, end, lag, available, acquired, archived
            self.assertEqual(tuple(partition)[2:], (0, 5, 5, 3, 2, 0))
            taken = wait_for_records(other, 5)  # 2, 3, 4 at once; 0 and 1 once their leases expire
            self.assertEqual(
                sorted((r.offset, r.delivery_count) for r in taken), [(0, 2), (1, 2), (2, 1), (3, 1), (4, 1)]
            )
            with self.assertRaises(ringmq.InvalidStateError):
                slow.accept(held[0])
            for record in taken:
                other.accept(record)
            [partition] = self.client.describe_group(group).partitions
            self.assertEqual((partition.committed, partition.lag, partition.acquired, partition.archived), (5, 0, 0, 5))

    def test_share_records_outlive_their_consumer(self):
        topic = self.new_topic()
        produce_numbered(self.client, topic, 0, 2)
        consumer = self.client.share_consumer(unique("workers"), topic)
        records = consumer.receive(10, 5)
        self.assertEqual(len(records), 2)
        consumer.accept(records[0])
        consumer.close()
        consumer.close()  # idempotent
        with self.assertRaises(ringmq.ClosedError):
            consumer.accept(records[1])
        with self.assertRaises(ringmq.ClosedError):
            consumer.receive(1, 0)
        self.assertEqual(records[1].value, b"0-1")
        del consumer, records
        gc.collect()

    # --- producing ------------------------------------------------------------------

    def test_durable_produces_have_dense_offsets(self):
        topic = self.new_topic()
        offsets = [self.client.produce(topic, b"one %d" % i, partition=0, acks="durable") for i in range(5)]
        offsets.append(self.client.produce_many(topic, [b"a", b"b", b"c"], partition=0, acks="durable"))
        futures = [self.client.produce_async(topic, b"async %d" % i, partition=0, acks="durable") for i in range(5)]
        offsets.extend(future.result(timeout=10) for future in futures)
        self.assertEqual(offsets, [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12])
        self.assertEqual(tuple(self.client.offsets(topic, 0)), (0, 13, 13))
        records = list(self.client.consumer(topic, timeout=0.3))
        self.assertEqual([r.offset for r in records], list(range(13)))
        self.assertEqual(records[5].value, b"a")
        self.assertEqual(records[-1].value, b"async 4")


class EmbeddedGroupsTest(GroupBehaviour, unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="ringmq-python-groups-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.broker = ringmq.Broker(self.directory, shards=2)
        self.addCleanup(self.broker.close)
        self.client = self.broker.client()
        self.addCleanup(self.client.close)

    def test_result_codes(self):
        self.assertEqual(ringmq.Result(15).name, "ERROR_UNKNOWN_GROUP")
        self.assertEqual(ringmq.Result(16).name, "ERROR_INVALID_STATE")
        self.assertEqual(ringmq.Result(17).name, "ERROR_FENCED")
        self.assertEqual(ringmq.Result(18).name, "ERROR_SEQUENCE")
        for code, error in (
            (15, ringmq.UnknownGroupError),
            (16, ringmq.InvalidStateError),
            (17, ringmq.FencedError),
            (18, ringmq.SequenceError),
        ):
            self.assertIs(ringmq._error(code, "x").__class__, error)
            self.assertTrue(issubclass(error, ringmq.Error))
        self.assertEqual([int(a) for a in ringmq.Ack], [1, 2, 3, 4])

    def test_closing_the_broker_closes_group_and_share_consumers(self):
        topic = self.new_topic()
        produce_numbered(self.client, topic, 0, 2)
        member = self.client.group_consumer(unique("g"), [topic], **FAST)
        self.assertEqual(len(poll_until(member, 2)), 2)
        worker = self.client.share_consumer(unique("w"), topic)
        [first, second] = worker.receive(10, 5)
        worker.accept(first)
        other = self.broker.client()
        orphan = other.share_consumer(unique("w"), topic)
        other.close()  # a share consumer may outlive its client
        self.assertEqual(len(orphan.receive(10, 5)), 2)
        self.broker.close()
        self.assertTrue(member.closed and worker.closed and orphan.closed)
        with self.assertRaises(ringmq.ClosedError):
            member.poll(0)
        with self.assertRaises(ringmq.ClosedError):
            worker.accept(second)
        with self.assertRaises(ringmq.ClosedError):
            self.client.describe_group("anything")

    def test_group_and_share_state_survive_a_restart(self):
        topic = self.new_topic()
        produce_numbered(self.client, topic, 0, 4, acks="durable")
        group, workers = unique("g"), unique("w")
        with self.client.group_consumer(group, [topic], manual_commit=True, **FAST) as member:
            poll_until(member, 4)
            member.commit_offset(topic, 0, 3)
        with self.client.share_consumer(workers, topic) as worker:
            for record in worker.receive(2, 5):
                worker.accept(record)
        self.client.close()
        self.broker.close()
        with ringmq.Broker(self.directory, shards=2) as broker, broker.client() as client:
            [partition] = client.describe_group(group).partitions
            self.assertEqual((partition.committed, partition.lag), (3, 1))
            with client.group_consumer(group, [topic], **FAST) as member:
                self.assertEqual([r.offset for r in poll_until(member, 1)], [3])
            with client.share_consumer(workers, topic) as worker:
                self.assertEqual([(r.offset, r.delivery_count) for r in worker.receive(10, 5)], [(2, 1), (3, 1)])


class TcpGroupsTest(RunningServer, GroupBehaviour, unittest.TestCase):
    """The same behaviour through `ringmq.connect` to a `ringmq serve` process."""

    def setUp(self):
        self.client = ringmq.connect(self.address)
        self.addCleanup(self.client.close)

    def test_group_consumers_outlive_their_client(self):
        topic = self.new_topic()
        produce_numbered(self.client, topic, 0, 2)
        other = ringmq.connect(self.address)
        member = other.group_consumer(unique("g"), [topic], **FAST)
        worker = other.share_consumer(unique("w"), topic)
        other.close()
        with member, worker:
            self.assertEqual([r.offset for r in poll_until(member, 2)], [0, 1])
            records = worker.receive(10, 5)
            self.assertEqual([r.offset for r in records], [0, 1])
            for record in records:
                worker.accept(record)


if __name__ == "__main__":
    unittest.main()
