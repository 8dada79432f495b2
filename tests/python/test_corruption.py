"""Corruption at rest, through a real ``ringmq serve``: bytes flipped in a
closed segment, in a segment's offset index, in a group's offsets log and in
a share-group state file while the broker is stopped. After the restart the
broker must name the damaged file and byte in its log, serve every intact
record (and never a damaged one as good), keep the committed offsets and
acceptances recorded after the damaged record, and rebuild the index.

Part of README's test command (issue 16, item 7)."""

import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bindings" / "python"))
import ringmq  # noqa: E402

TOPIC = "rot"
BATCHES = 150
RECORDS_PER_BATCH = 10
SEGMENT_BYTES = 64 * 1024


class Server:
    def __init__(self, binary, directory):
        self.binary, self.directory = binary, directory
        self.log_path = os.path.join(directory, "serve.log")

    def start(self):
        self.process = subprocess.Popen(
            [self.binary, "serve", "--shards", "2", "--listen", "127.0.0.1:0", "--kafka-listen", "off",
             "--segment-bytes", str(SEGMENT_BYTES), "--data-dir", os.path.join(self.directory, "data")],
            stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"), text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("ringmq listening on "), line
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.address = line.split()[3]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)

    def log(self):
        with open(self.log_path) as log:
            return log.read()


def flip(path, position):
    with open(path, "r+b") as file:
        file.seek(position)
        byte = file.read(1)
        file.seek(position)
        file.write(bytes([byte[0] ^ 0xFF]))


def value(batch, record):
    return b"b%03d-r%02d-" % (batch, record) + b"x" * 150


class CorruptionAtRest(unittest.TestCase):
    def test_damage_is_named_skipped_and_never_served_and_what_is_intact_is_kept(self):
        binary = os.environ.get("RINGMQ_BIN", str(REPO_ROOT / "target" / "debug" / "ringmq"))
        directory = tempfile.mkdtemp(prefix="ringmq-corruption-")
        server = Server(binary, directory)
        server.start()
        client = ringmq.connect(server.address)
        client.create_topic(TOPIC, 1)
        for batch in range(BATCHES):
            client.produce_many(TOPIC, [value(batch, r) for r in range(RECORDS_PER_BATCH)], partition=0)
        # Group commits: 10, 20, ..., 100 (ten records in offsets.log).
        member = client.group_consumer("readers", [TOPIC], manual_commit=True)
        while not member.poll(0.5):
            pass
        for offset in range(10, 101, 10):
            member.commit_offset(TOPIC, 0, offset)
        member.close()
        # Share group: accept the first 30 records, in three acknowledgements.
        share = client.share_consumer("queue", TOPIC)
        accepted = []
        while len(accepted) < 30:
            received = share.receive(max_records=10, timeout=1.0)
            share.acknowledge_all(received, "accept")
            accepted += [r.record.offset for r in received]
        share.close()
        client.close()
        server.stop()

        data = Path(directory) / "data"
        partition_dir = data / "topics" / TOPIC / "0"
        segments = sorted(partition_dir.glob("*.log"))
        self.assertGreaterEqual(len(segments), 3, "the test needs closed segments")
        closed = segments[1]
        flip(closed, closed.stat().st_size // 2)
        index = segments[2].with_suffix(".idx")
        self.assertGreater(index.stat().st_size, 0)
        flip(index, 5)
        offsets_log = next((data / "groups").glob("readers/offsets.log"))
        # The fourth of ten commit records: each is the same size.
        record_bytes = offsets_log.stat().st_size // 10
        flip(offsets_log, 3 * record_bytes + record_bytes // 2)
        share_state = next((data / "groups").glob("queue/share/%s/0.log" % TOPIC))
        share_size = share_state.stat().st_size
        flip(share_state, share_size // 3)

        server.start()
        client = ringmq.connect(server.address)
        try:
            log = server.log()
            self.assertIn("%s: the record at byte %d failed its checksum" % (offsets_log, 3 * record_bytes),
                          log)

            # Every offset: served intact, or refused; never served damaged.
            end = client.offsets(TOPIC, 0).latest
            self.assertEqual(end, BATCHES * RECORDS_PER_BATCH)
            served, refused = {}, []
            offset = 0
            while offset < end:
                try:
                    records = [r for r in client.fetch(TOPIC, 0, offset) if r.offset >= offset]
                except ringmq.Error as error:
                    self.assertIn("corrupt", str(error))
                    refused.append(offset)
                    offset += 1
                    continue
                self.assertTrue(records, "nothing at offset %d" % offset)
                for record in records:
                    served[record.offset] = record.value
                offset = records[-1].offset + 1
            for offset, got in served.items():
                self.assertEqual(got, value(offset // RECORDS_PER_BATCH, offset % RECORDS_PER_BATCH))
            self.assertEqual(len(refused), RECORDS_PER_BATCH, "exactly the damaged batch is refused")
            self.assertEqual(len(served) + len(refused), end)
            # Sealed segments are opened (and checked) at their first read.
            self.assertIn("%s: the stored batch at byte" % closed, server.log())
            self.assertIn("%s: the index holds bytes that fail its checks" % index, server.log())
            self.assertIn("offsets %d to %d" % (refused[0], refused[-1]), server.log())
            self.assertTrue(refused[0] >= int(closed.stem), "the damaged batch is in the damaged segment")

            # The commit after the damaged record is kept: no going back to 30.
            committed = {p.partition: p.committed for p in client.describe_group("readers").partitions}
            self.assertEqual(committed[0], 100)

            # Accepted records stay accepted, except what the damaged share
            # record held, which may be delivered again (at least once).
            share = client.share_consumer("queue", TOPIC)
            again = []
            deadline = time.time() + 5
            while time.time() < deadline and len(again) < 20:
                received = share.receive(max_records=50, timeout=0.5)
                again += [r.record.offset for r in received]
            share.close()
            redelivered = sorted(set(again) & set(accepted))
            self.assertLessEqual(len(redelivered), 10, "one damaged acknowledgement covers at most 10 records")
            self.assertIn("%s: the record at byte" % share_state,
                          server.log())
        finally:
            client.close()
            server.stop()


if __name__ == "__main__":
    unittest.main()
