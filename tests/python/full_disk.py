"""A full disk under a real ``ringmq serve --shards 2``.

The data directory is a tmpfs mounted with ``size=`` (root only). Producers
(acks durable, through the Python binding) write until the file system is
full, and the harness checks that

1. the refusal is ``NoSpaceError`` (RMQ_ERROR_NO_SPACE), not a storage
   failure, a hang or a crash, and it stays that while the disk is full;
2. every acknowledged record is readable, intact, at its offset;
3. committing group offsets on the full disk is refused cleanly too;
4. a restart on the full disk starts, serves every acknowledged record, and
   refuses writes with the same code;
5. when space returns (the tmpfs is remounted larger) producing works again
   by itself, without a restart;
6. after a restart every acknowledged record is still there.

Run by hand::

    python3 tests/python/full_disk.py [--size-mib 64]

``test_full_disk.py`` runs it in README's test command.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bindings" / "python"))
import ringmq  # noqa: E402

TOPIC = "fill"
PARTITIONS = 2
RECORD_BYTES = 1024
BATCH_RECORDS = 16
# Batches that may still fit once the producers were refused: the blocks a
# partition zeroed ahead of its end (256 KiB, ZERO_AHEAD_BYTES) are allocated.
SLACK_BATCHES_MAX = 64
# How long the producers may take to fill the file system.
FILL_TIMEOUT_S = 120.0
# How long producing may take to work again once space returns.
RECOVER_TIMEOUT_S = 20.0


class Failure(AssertionError):
    pass


def mount_tmpfs(path, size_mib):
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mib, "tmpfs", path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise Failure("cannot mount a tmpfs at %s (root is needed): %s" % (path, result.stderr.strip()))


def resize_tmpfs(path, size_mib):
    subprocess.run(["mount", "-o", "remount,size=%dm" % size_mib, path], check=True)


class Server:
    def __init__(self, binary, data_dir, log_path):
        self.binary, self.data_dir, self.log_path = binary, data_dir, log_path
        self.process = None
        self.address = None

    def start(self):
        # The log goes outside the full file system, so it can say why.
        self.process = subprocess.Popen(
            [self.binary, "serve", "--shards", "2", "--listen", "127.0.0.1:0", "--kafka-listen", "off",
             "--segment-bytes", str(4 << 20), "--data-dir", self.data_dir],
            stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"), text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("ringmq listening on "):
            raise Failure("the server did not start: %r (see %s)" % (line, self.log_path))
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.address = line.split()[3]

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def fill(address, acked, errors, partition, stop):
    client = ringmq.connect(address)
    sequence = 0
    try:
        deadline = time.time() + FILL_TIMEOUT_S
        while not stop.is_set() and time.time() < deadline:
            values = [b"%d-%d-" % (partition, sequence + i) + b"x" * RECORD_BYTES for i in range(BATCH_RECORDS)]
            sequence += BATCH_RECORDS
            try:
                offset = client.produce_many(TOPIC, values, partition=partition, acks="durable")
            except ringmq.NoSpaceError:
                return
            for i, value in enumerate(values):
                acked[(partition, offset + i)] = value
        errors.append("partition %d: the disk never filled within %.0f s" % (partition, FILL_TIMEOUT_S))
    except ringmq.Error as error:
        errors.append("partition %d: a full disk gave %r, not NoSpaceError" % (partition, error))
    finally:
        client.close()


def check_acked(address, acked):
    client = ringmq.connect(address)
    try:
        for partition in range(PARTITIONS):
            expected = {o: v for (p, o), v in acked.items() if p == partition}
            offset, end = 0, max(expected, default=-1) + 1
            while offset < end:
                records = [r for r in client.fetch(TOPIC, partition, offset) if r.offset >= offset]
                if not records:
                    raise Failure("partition %d: nothing at offset %d below %d" % (partition, offset, end))
                for record in records:
                    if record.offset != offset:
                        raise Failure("partition %d: offset %d after %d" % (partition, record.offset, offset - 1))
                    if offset in expected and record.value != expected[offset]:
                        raise Failure("partition %d offset %d: not the acknowledged record" % (partition, offset))
                    offset += 1
    finally:
        client.close()


def run(binary, size_mib=48, log=print):
    mount_point = tempfile.mkdtemp(prefix="ringmq-full-disk-")
    log_path = mount_point + ".serve.log"
    mount_tmpfs(mount_point, size_mib)
    server = Server(binary, os.path.join(mount_point, "data"), log_path)
    try:
        server.start()
        setup = ringmq.connect(server.address)
        setup.create_topic(TOPIC, PARTITIONS)
        setup.close()
        acked, errors, stop = {}, [], threading.Event()
        threads = [threading.Thread(target=fill, args=(server.address, acked, errors, p, stop))
                   for p in range(PARTITIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise Failure("; ".join(errors))
        if not server.alive():
            raise Failure("the server exited on a full disk (see %s)" % log_path)
        log("full disk: %d records acknowledged before the %d MiB file system was full"
            % (len(acked), size_mib))
        check_acked(server.address, acked)

        client = ringmq.connect(server.address)
        # Blocks a partition zeroed ahead of its end are already allocated, so
        # a few more batches may fit; then the refusal must come again.
        for attempt in range(SLACK_BATCHES_MAX + 1):
            values = [b"slack-%d-%d-" % (attempt, i) + b"x" * RECORD_BYTES for i in range(BATCH_RECORDS)]
            try:
                offset = client.produce_many(TOPIC, values, partition=0, acks="durable")
            except ringmq.NoSpaceError as error:
                log("full disk: still refused: %s" % error)
                break
            for i, value in enumerate(values):
                acked[(0, offset + i)] = value
        else:
            raise Failure("%d more batches were acknowledged on the full disk" % (SLACK_BATCHES_MAX + 1))
        member = client.group_consumer("fill-readers", [TOPIC], manual_commit=True)
        try:
            member.poll(1.0)
            member.commit_offset(TOPIC, 0, 1)
        except (ringmq.NoSpaceError, ringmq.InvalidStateError):
            pass  # refused cleanly (or the group was still joining)
        finally:
            member.close()
        if not server.alive():
            raise Failure("the server exited on a commit to a full disk (see %s)" % log_path)

        client.close()

        # A restart on the full disk: the broker starts, serves what it has,
        # and refuses writes with the same code.
        server.stop()
        server.start()
        check_acked(server.address, acked)
        client = ringmq.connect(server.address)
        for attempt in range(SLACK_BATCHES_MAX + 1):
            try:
                offset = client.produce_many(TOPIC, [b"restarted-%d" % attempt + b"x" * RECORD_BYTES] * 1,
                                             partition=1, acks="durable")
                acked[(1, offset)] = b"restarted-%d" % attempt + b"x" * RECORD_BYTES
            except ringmq.NoSpaceError:
                break
        else:
            raise Failure("the restarted broker kept acknowledging on the full disk")
        log("full disk: a restart on the full disk serves every acknowledged record and still refuses writes")

        resize_tmpfs(mount_point, size_mib * 2)
        deadline = time.time() + RECOVER_TIMEOUT_S
        while True:
            try:
                offset = client.produce(TOPIC, b"space is back", partition=0)
                acked[(0, offset)] = b"space is back"
                break
            except ringmq.NoSpaceError:
                if time.time() > deadline:
                    raise Failure("producing did not recover within %.0f s of space returning" % RECOVER_TIMEOUT_S)
                time.sleep(0.1)
        log("full disk: producing works again once space returned (offset %d)" % offset)
        client.close()
        check_acked(server.address, acked)

        server.stop()
        server.start()
        check_acked(server.address, acked)
        log("full disk: all %d acknowledged records intact after a restart" % len(acked))
        return {"acknowledged": len(acked)}
    finally:
        server.stop()
        subprocess.run(["umount", mount_point], check=False)
        os.rmdir(mount_point)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--bin", default=os.environ.get("RINGMQ_BIN", str(REPO_ROOT / "target" / "release" / "ringmq")))
    args = parser.parse_args()
    try:
        run(args.bin, args.size_mib)
    except Failure as failure:
        print("full disk: FAILED: %s" % failure, file=sys.stderr)
        return 1
    print("full disk: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
