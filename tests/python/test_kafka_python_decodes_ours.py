"""kafka-python must decode the RecordBatch v2 files ringmq writes.

Every ``*.bin`` in ``tests/data/ringmq/`` is one batch encoded by ringmq, and
its ``*.txt`` descriptor (same format as ``tests/data/kafka_python/*.txt``, see
``tests/data/kafka_python/make_fixtures.py``) says what it contains. This test
decodes each batch with kafka-python's independent pure-Python decoder
(``kafka.record.default_records.DefaultRecordBatch``) and checks the CRC,
the header fields and every record against the descriptor.

Descriptor lines (tokens separated by single spaces)::

    producer_id <i64>                      required
    producer_epoch <i16>                   required
    base_sequence <i32>                    required
    partition_leader_epoch <i32>           checked when present
    record <offset> <timestamp> <key> <value> <headers>

``<offset>`` is absolute (the batch's base offset may be non-zero). ``<key>``
and ``<value>`` are lowercase hex, ``-`` for null, ``~`` for empty.
``<headers>`` is ``-`` for none, else comma-separated ``keyhex=valuehex`` (key
``~`` if empty; value ``-`` null, ``~`` empty).

Run from the repository root with either::

    python3 -m unittest discover -s tests/python
    python3 -m pytest tests/python

Needs ``pip install kafka-python``; without it the import below fails, which
is a failure, not a skip. The directory is checked in: an empty or missing
directory fails too. Set ``RINGMQ_BATCH_DIR`` to point the test at another
directory (relative paths are taken from the current directory).

``TestKafkaPythonFixturesSelfCheck`` runs the same checks over kafka-python's
own fixtures in ``tests/data/kafka_python/`` so a broken checker cannot pass
silently.
"""

import os
import struct
import unittest
from pathlib import Path

# Deliberately unguarded: a missing kafka-python must fail the run, not skip it.
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

REPO_ROOT = Path(__file__).resolve().parents[2]
RINGMQ_DIR = REPO_ROOT / "tests" / "data" / "ringmq"
KAFKA_PYTHON_DIR = REPO_ROOT / "tests" / "data" / "kafka_python"

MAGIC_V2 = 2
BATCH_HEADER_BYTES = 61
# Byte ranges of the fixed header, for naming the first differing byte.
HEADER_FIELDS = [
    (0, 8, "base_offset"), (8, 12, "batch_length"), (12, 16, "partition_leader_epoch"),
    (16, 17, "magic"), (17, 21, "crc"), (21, 23, "attributes"), (23, 27, "last_offset_delta"),
    (27, 35, "base_timestamp"), (35, 43, "max_timestamp"), (43, 51, "producer_id"),
    (51, 53, "producer_epoch"), (53, 57, "base_sequence"), (57, 61, "records_count"),
]
REQUIRED_FIELDS = ("producer_id", "producer_epoch", "base_sequence")


def batch_dir():
    override = os.environ.get("RINGMQ_BATCH_DIR")
    return Path(override).resolve() if override else RINGMQ_DIR


# --------------------------------------------------------------------------
# Descriptor parsing
# --------------------------------------------------------------------------

def parse_bytes_token(token):
    if token == "-":
        return None
    if token == "~":
        return b""
    if token != token.lower():
        raise ValueError("hex must be lowercase: %r" % token)
    return bytes.fromhex(token)


def parse_headers_token(token):
    if token == "-":
        return []
    headers = []
    for pair in token.split(","):
        key, sep, value = pair.partition("=")
        if not sep or "=" in value:
            raise ValueError("bad header %r" % pair)
        key_bytes = parse_bytes_token(key)
        if key_bytes is None:
            raise ValueError("header keys cannot be null: %r" % pair)
        headers.append((key_bytes, parse_bytes_token(value)))
    return headers


def parse_descriptor(text):
    """Returns (fields: dict name -> int, records: list of tuples)."""
    fields, records = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            raise ValueError("line %d is empty" % number)
        tokens = line.split(" ")
        if tokens[0] == "record":
            if len(tokens) != 6:
                raise ValueError("line %d: 'record' needs 5 values: %r" % (number, line))
            records.append((
                int(tokens[1]), int(tokens[2]), parse_bytes_token(tokens[3]),
                parse_bytes_token(tokens[4]), parse_headers_token(tokens[5]),
            ))
        else:
            if records:
                raise ValueError("line %d: header field after records: %r" % (number, line))
            if len(tokens) != 2 or tokens[0] in fields:
                raise ValueError("line %d: expected a new 'name value': %r" % (number, line))
            fields[tokens[0]] = int(tokens[1])
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        raise ValueError("descriptor lacks %s" % ", ".join(missing))
    if not records:
        raise ValueError("descriptor has no records")
    return fields, records


def batch_pairs(directory):
    """Sorted (name, bin path, txt path); raises AssertionError on orphans."""
    bins = {p.stem: p for p in directory.glob("*.bin")}
    txts = {p.stem: p for p in directory.glob("*.txt")}
    missing_txt = sorted(set(bins) - set(txts))
    missing_bin = sorted(set(txts) - set(bins))
    if missing_txt or missing_bin:
        raise AssertionError("%s: .bin without .txt: %s; .txt without .bin: %s"
                             % (directory, missing_txt, missing_bin))
    return [(name, bins[name], txts[name]) for name in sorted(bins)]


def field_at(position):
    for start, end, name in HEADER_FIELDS:
        if start <= position < end:
            return "header field %s" % name
    return "records section, byte %d" % (position - BATCH_HEADER_BYTES)


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------

class BatchChecks:
    """Mixin: subclasses set ``directory()``."""

    maxDiff = 2000

    def directory(self):
        raise NotImplementedError

    def pairs(self):
        directory = self.directory()
        self.assertTrue(directory.is_dir(), "%s does not exist" % directory)
        pairs = batch_pairs(directory)
        self.assertTrue(pairs, "%s holds no *.bin batches" % directory)
        return pairs

    def load(self, bin_path, txt_path):
        data = bin_path.read_bytes()
        fields, records = parse_descriptor(txt_path.read_text(encoding="ascii"))
        return data, fields, records

    def test_directory_has_batches(self):
        self.pairs()

    def test_kafka_python_decodes_every_batch(self):
        for name, bin_path, txt_path in self.pairs():
            with self.subTest(batch=name):
                data, fields, expected = self.load(bin_path, txt_path)
                self.check_batch(name, data, fields, expected)

    def check_batch(self, name, data, fields, expected):
        self.assertGreaterEqual(len(data), BATCH_HEADER_BYTES, "shorter than a batch header")
        batch = DefaultRecordBatch(data)
        # validate_crc() covers attributes..end of the *buffer*, so a file must
        # hold exactly one batch for it to mean anything.
        self.assertEqual(batch.size_in_bytes, len(data), "batch_length vs file size")
        self.assertTrue(batch.validate_crc(), "CRC-32C mismatch")
        self.assertEqual(batch.magic, MAGIC_V2, "magic")
        self.assertEqual(batch.producer_id, fields["producer_id"], "producer_id")
        self.assertEqual(batch.producer_epoch, fields["producer_epoch"], "producer_epoch")
        self.assertEqual(batch.base_sequence, fields["base_sequence"], "base_sequence")
        if "partition_leader_epoch" in fields:
            self.assertEqual(batch.leader_epoch, fields["partition_leader_epoch"],
                             "partition_leader_epoch")
        self.assertFalse(batch.is_control_batch, "control batch")
        self.assertEqual(batch.records_count, len(expected), "records_count")
        self.assertEqual(batch.last_offset, expected[-1][0], "base_offset + last_offset_delta")
        self.assertEqual(batch.max_timestamp, max(r[1] for r in expected), "max_timestamp")

        # Iterating raises CorruptRecordError on a bad length, bad header count
        # or bytes left over after the last record.
        actual = [
            (record.offset, record.timestamp, record.key, record.value,
             [(key.encode("utf-8"), value) for key, value in record.headers])
            for record in batch
        ]
        self.assertEqual(len(actual), len(expected), "records decoded")
        for index, (got, want) in enumerate(zip(actual, expected)):
            self.assertEqual(got, want, "record %d (offset, timestamp, key, value, headers)" % index)

    def test_kafka_python_reencodes_byte_for_byte(self):
        """kafka-python's encoder, fed the decoded records, writes the same bytes.

        This catches what its lenient decoder lets through: over-long varints,
        a base timestamp that is not the first record's, non-dense offset
        deltas. base_offset and partition_leader_epoch are broker-assigned and
        copied over; batches with attributes kafka-python's builder cannot set
        (compression, log-append time, control) are not compared.
        """
        for name, bin_path, txt_path in self.pairs():
            with self.subTest(batch=name):
                data, _, _ = self.load(bin_path, txt_path)
                batch = DefaultRecordBatch(data)
                if batch.attributes & ~DefaultRecordBatch.TRANSACTIONAL_MASK:
                    self.skipTest("attributes 0x%04x not producible by kafka-python's builder"
                                  % batch.attributes)
                builder = DefaultRecordBatchBuilder(
                    magic=batch.magic, compression_type=0,
                    is_transactional=batch.is_transactional, producer_id=batch.producer_id,
                    producer_epoch=batch.producer_epoch, base_sequence=batch.base_sequence,
                    batch_size=len(data) + 1,
                )
                for record in DefaultRecordBatch(data):
                    appended = builder.append(
                        record.offset - batch.base_offset, timestamp=record.timestamp,
                        key=record.key, value=record.value, headers=record.headers)
                    self.assertIsNotNone(appended, "builder refused a record")
                rebuilt = bytearray(builder.build())
                struct.pack_into(">q", rebuilt, 0, batch.base_offset)
                struct.pack_into(">i", rebuilt, 12, batch.leader_epoch)
                if bytes(rebuilt) != data:
                    first = next((i for i, (a, b) in enumerate(zip(rebuilt, data)) if a != b),
                                 min(len(rebuilt), len(data)))
                    self.fail("differs from kafka-python's encoding at byte %d (%s); "
                              "lengths ours=%d kafka-python=%d"
                              % (first, field_at(first), len(data), len(rebuilt)))


class TestKafkaPythonDecodesRingmqBatches(BatchChecks, unittest.TestCase):
    """The batches ringmq wrote (tests/data/ringmq/, or $RINGMQ_BATCH_DIR)."""

    def directory(self):
        return batch_dir()


class TestKafkaPythonFixturesSelfCheck(BatchChecks, unittest.TestCase):
    """The same checks over kafka-python's own fixtures: proves the checker works."""

    def directory(self):
        return KAFKA_PYTHON_DIR

    def test_checker_rejects_corruption(self):
        name, bin_path, txt_path = self.pairs()[0]
        data, fields, expected = self.load(bin_path, txt_path)
        self.check_batch(name, data, fields, expected)
        flipped = bytearray(data)
        flipped[-1] ^= 0x01
        with self.assertRaises(AssertionError):
            self.check_batch(name, bytes(flipped), fields, expected)
        wrong = list(expected)
        wrong[0] = (wrong[0][0], wrong[0][1] + 1) + wrong[0][2:]
        with self.assertRaises(AssertionError):
            self.check_batch(name, data, fields, wrong)
        with self.assertRaises(AssertionError):
            self.check_batch(name, data, dict(fields, producer_epoch=fields["producer_epoch"] + 1),
                             expected)


if __name__ == "__main__":
    unittest.main()
