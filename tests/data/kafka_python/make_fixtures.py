#!/usr/bin/env python3
"""Write RecordBatch v2 cross-check fixtures with kafka-python's encoder.

The batches are built by kafka-python's pure-Python
``kafka.record.default_records.DefaultRecordBatchBuilder``, a RecordBatch v2
implementation that has nothing to do with ringmq's. ringmq's decoder is
expected to read them back exactly as the descriptors say.

For each fixture NAME this writes two files next to this script:

``NAME.bin``
    The bytes returned by ``DefaultRecordBatchBuilder.build()``: exactly one
    batch, magic 2, compression none, not transactional. kafka-python writes
    base_offset 0 and partition_leader_epoch 0 (both "set by broker").

``NAME.txt``
    A plain-text descriptor, one item per line, tokens separated by single
    spaces::

        producer_id <i64>
        producer_epoch <i16>
        base_sequence <i32>
        partition_leader_epoch <i32>
        record <offset> <timestamp> <key> <value> <headers>

    There is one ``record`` line per record, in batch order. ``<offset>`` is
    absolute (base_offset + offset delta). ``<key>`` and ``<value>`` are the
    bytes in lowercase hex, ``-`` for null and ``~`` for empty. ``<headers>``
    is ``-`` when the record has no headers, else comma-separated
    ``keyhex=valuehex`` pairs in order, where keyhex is the UTF-8 bytes of the
    header key in hex (``~`` if empty) and valuehex is hex, ``-`` for null or
    ``~`` for empty.

Everything is deterministic (fixed timestamps, no randomness), so re-running
the script rewrites identical files.

Re-run from the repository root (needs ``pip install kafka-python``)::

    python3 tests/data/kafka_python/make_fixtures.py          # write, then verify
    python3 tests/data/kafka_python/make_fixtures.py --check  # verify only

Verification decodes every ``.bin`` with kafka-python's ``DefaultRecordBatch``
and compares it with its ``.txt``; ``--check`` also fails if the files on disk
differ from what this script would write.
"""

import argparse
import os
import sys

from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

HERE = os.path.dirname(os.path.abspath(__file__))

MAGIC = 2
COMPRESSION_NONE = 0
NOT_TRANSACTIONAL = 0
# Large enough that append() never refuses a record (it returns None when a
# record would push the batch past batch_size).
BATCH_SIZE = 1 << 30

T0 = 1700000000000  # 2023-11-14T22:13:20Z, in milliseconds


# --------------------------------------------------------------------------
# The fixtures. Each record is (timestamp, key, value, headers) where headers
# is a list of (str key, bytes-or-None value). Offsets are dense: 0..n-1.
# --------------------------------------------------------------------------

def fixture_simple():
    records = [
        (T0, b"key-0", b"hello", []),
        (T0 + 1, b"key-1", b"ringmq", []),
        (T0 + 250, b"key-2", b"kafka record batch v2", []),
    ]
    return dict(producer_id=-1, producer_epoch=-1, base_sequence=-1, records=records)


def fixture_nulls():
    records = [
        (T0, None, b"value with null key", []),
        (T0 + 10, b"tombstone", None, []),                      # null value
        (T0 + 20, b"", b"value with empty key", []),
        (T0 + 30, b"empty-value", b"", []),
        (T0 + 40, None, None, []),                              # both null
        (T0 + 50, b"", b"", []),                                # both empty
        (T0 + 60, b"k", b"v", [("null-header", None)]),         # header value null
        (T0 + 70, None, None, [("empty-header", b""), ("null-header", None)]),
    ]
    return dict(producer_id=-1, producer_epoch=-1, base_sequence=-1, records=records)


def fixture_headers():
    records = [
        (T0, b"k0", b"v0", [
            ("content-type", b"application/octet-stream"),
            ("binary", bytes([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF])),
            ("ключ", "значение".encode("utf-8")),
        ]),
        (T0 + 5, b"k1", b"v1", [
            ("trace-id", bytes(range(32))),
            ("dup", b"first"),
            ("dup", b"second"),                                  # repeated key
            ("", b"empty key"),                                  # empty header key
            ("ключ", None),
        ]),
        (T0 + 5, None, b"same timestamp as previous", [            # delta repeats
            ("日本", b"\xe6\x97\xa5"),
            ("emoji-\U0001F600", b""),
            ("all-bytes", bytes(range(256))),
        ]),
        (T0 + 9, b"k3", None, [
            ("x" * 70, b"long header key (70 bytes, 2-byte zigzag length)"),
        ]),
    ]
    return dict(producer_id=-1, producer_epoch=-1, base_sequence=-1, records=records)


def fixture_idempotent():
    records = [
        (T0 + 1000, b"id-0", b"first", []),
        (T0 + 1005, b"id-1", b"second", []),
        (T0 - 2000, b"id-2", b"older than the first (negative delta)", []),
        (T0 + 1010, b"id-3", b"max timestamp", [("h", b"1")]),
        (T0 + 1007, b"id-4", b"last, but not the max", []),
    ]
    return dict(producer_id=123456789, producer_epoch=7, base_sequence=42, records=records)


def fixture_large():
    records = []
    for i in range(200):
        # Value lengths cover 0 .. 3000; keys cover 0 .. 129 (63 -> 1-byte and
        # 64 -> 2-byte zigzag length varints).
        value_len = 3000 if i == 199 else (i * 1543) % 3001
        key_len = i % 130
        key = bytes((i + j) % 256 for j in range(key_len))
        value = bytes((i * j) % 256 for j in range(value_len))
        # Deltas up to ~200 s: 1-, 2- and 3-byte varlongs.
        timestamp = T0 + i * 1009
        headers = [("i", str(i).encode("ascii"))] if i % 50 == 0 else []
        records.append((timestamp, key, value, headers))
    return dict(producer_id=-1, producer_epoch=-1, base_sequence=-1, records=records)


FIXTURES = {
    "simple": fixture_simple,
    "nulls": fixture_nulls,
    "headers": fixture_headers,
    "idempotent": fixture_idempotent,
    "large": fixture_large,
}


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------

def build_batch(spec):
    builder = DefaultRecordBatchBuilder(
        magic=MAGIC,
        compression_type=COMPRESSION_NONE,
        is_transactional=NOT_TRANSACTIONAL,
        producer_id=spec["producer_id"],
        producer_epoch=spec["producer_epoch"],
        base_sequence=spec["base_sequence"],
        batch_size=BATCH_SIZE,
    )
    for offset, (timestamp, key, value, headers) in enumerate(spec["records"]):
        metadata = builder.append(offset, timestamp=timestamp, key=key, value=value, headers=headers)
        if metadata is None:
            raise RuntimeError("kafka-python refused record %d (batch_size too small?)" % offset)
    return bytes(builder.build())


def hex_or_marker(data):
    if data is None:
        return "-"
    if len(data) == 0:
        return "~"
    return data.hex()


def headers_token(headers):
    if not headers:
        return "-"
    return ",".join(
        "%s=%s" % (hex_or_marker(key.encode("utf-8")), hex_or_marker(value))
        for key, value in headers
    )


def describe(spec, base_offset, partition_leader_epoch):
    lines = [
        "producer_id %d" % spec["producer_id"],
        "producer_epoch %d" % spec["producer_epoch"],
        "base_sequence %d" % spec["base_sequence"],
        "partition_leader_epoch %d" % partition_leader_epoch,
    ]
    for delta, (timestamp, key, value, headers) in enumerate(spec["records"]):
        lines.append("record %d %d %s %s %s" % (
            base_offset + delta, timestamp, hex_or_marker(key), hex_or_marker(value),
            headers_token(headers)))
    return "\n".join(lines) + "\n"


def render(name):
    """Returns (bin bytes, txt text) for one fixture."""
    spec = FIXTURES[name]()
    data = build_batch(spec)
    header = DefaultRecordBatch(data)
    text = describe(spec, header.base_offset, header.leader_epoch)
    return data, text


# --------------------------------------------------------------------------
# Verification: decode each .bin with kafka-python and compare with its .txt
# --------------------------------------------------------------------------

def parse_bytes_token(token):
    if token == "-":
        return None
    if token == "~":
        return b""
    return bytes.fromhex(token)


def parse_descriptor(text):
    fields, records = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split(" ")
        if tokens[0] == "record":
            if len(tokens) != 6:
                raise ValueError("line %d: expected 6 tokens, got %r" % (number, line))
            headers = []
            if tokens[5] != "-":
                for pair in tokens[5].split(","):
                    key, value = pair.split("=")
                    headers.append((parse_bytes_token(key) or b"", parse_bytes_token(value)))
            records.append((int(tokens[1]), int(tokens[2]), parse_bytes_token(tokens[3]),
                            parse_bytes_token(tokens[4]), headers))
        else:
            if len(tokens) != 2:
                raise ValueError("line %d: expected 'name value', got %r" % (number, line))
            fields[tokens[0]] = int(tokens[1])
    return fields, records


def verify(name, data, text):
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc(), name + ": CRC"
    assert batch.magic == MAGIC, name + ": magic"
    assert batch.size_in_bytes == len(data), name + ": batch_length"
    assert batch.compression_type == COMPRESSION_NONE and not batch.is_transactional, name
    fields, expected = parse_descriptor(text)
    assert batch.producer_id == fields["producer_id"], name + ": producer_id"
    assert batch.producer_epoch == fields["producer_epoch"], name + ": producer_epoch"
    assert batch.base_sequence == fields["base_sequence"], name + ": base_sequence"
    assert batch.leader_epoch == fields["partition_leader_epoch"], name + ": leader epoch"
    assert batch.records_count == len(expected), name + ": records_count"
    assert batch.last_offset == expected[-1][0], name + ": last_offset_delta"
    assert batch.first_timestamp == expected[0][1], name + ": first_timestamp"
    assert batch.max_timestamp == max(r[1] for r in expected), name + ": max_timestamp"
    actual = [
        (r.offset, r.timestamp, r.key, r.value, [(k.encode("utf-8"), v) for k, v in r.headers])
        for r in batch
    ]
    assert len(actual) == len(expected), name + ": record count"
    for index, (got, want) in enumerate(zip(actual, expected)):
        assert got == want, "%s: record %d: decoded %r, descriptor %r" % (name, index, got, want)
    assert [r[0] for r in expected] == list(range(batch.base_offset, batch.base_offset + len(expected)))
    # Data written by the script matches the spec it came from, not just the .txt.
    spec = FIXTURES[name]()
    assert [tuple(r[1:]) for r in actual] == [
        (t, k, v, [(hk.encode("utf-8"), hv) for hk, hv in h]) for t, k, v, h in spec["records"]
    ], name + ": spec"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; fail if files on disk are missing, stale or wrong")
    args = parser.parse_args(argv)

    for name in FIXTURES:
        data, text = render(name)
        bin_path = os.path.join(HERE, name + ".bin")
        txt_path = os.path.join(HERE, name + ".txt")
        if args.check:
            with open(bin_path, "rb") as f:
                on_disk_bin = f.read()
            with open(txt_path, "r", encoding="ascii", newline="") as f:
                on_disk_txt = f.read()
            if on_disk_bin != data or on_disk_txt != text:
                sys.exit("%s: files on disk differ from what the script generates; re-run it" % name)
        else:
            with open(bin_path, "wb") as f:
                f.write(data)
            with open(txt_path, "w", encoding="ascii", newline="\n") as f:
                f.write(text)
        # Verify what is on disk, read back independently of the writer.
        with open(bin_path, "rb") as f:
            on_disk_bin = f.read()
        with open(txt_path, "r", encoding="ascii", newline="") as f:
            on_disk_txt = f.read()
        verify(name, on_disk_bin, on_disk_txt)
        print("%-10s %6d bytes, %3d records  ok" % (name, len(on_disk_bin), len(FIXTURES[name]()["records"])))


if __name__ == "__main__":
    main(sys.argv[1:])
