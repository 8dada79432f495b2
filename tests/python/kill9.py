"""The kill -9 loop: a real ``ringmq serve --shards 2`` under load, killed with
SIGKILL at a random moment and restarted, cycle after cycle, and checked
against every acknowledgement it gave.

Load, through the Python binding (the C ABI, over TCP):

* ``--producers`` threads, each with its own client, produce batches of 1–5
  records with acks ``durable`` (idempotent: the client resends a batch after
  a lost connection with the same producer id and sequence, and the broker
  must answer a resend of a batch it already has with the original offset);
* a consumer-group member reads the topic and commits what it read;
* a share-group member receives records and accepts them.

Each cycle: start the load, kill -9 the server 20–800 ms later, restart it
on the same ports (so resends in flight reach the new process), stop the
load, and check:

1. every acknowledged record is in the log at the offset it was acknowledged
   with, with its value (nothing acknowledged is lost, moved or torn);
2. no value is in the log twice (a resend was never appended a second time);
3. each partition's offsets are dense from 0, every batch decodes (CRC-32C
   checked by the client), and no record outside the load is there;
4. the consumer group's committed offsets never go below an acknowledged commit;
5. no record whose acceptance the share group acknowledged is delivered again.

Run by hand (the long version, 1,000 cycles)::

    python3 tests/python/kill9.py --cycles 1000 [--seed N] [--producers 4]

It needs ``target/release/ringmq`` (or ``--bin``/``$RINGMQ_BIN``) and libringmq
(``$RINGMQ_LIB`` or the repository's target/). ``test_kill9.py`` runs a short
version in README's test command.
"""

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bindings" / "python"))
import ringmq  # noqa: E402

TOPIC = "kill9"
PARTITIONS = 4
GROUP = "kill9-readers"
SHARE_GROUP = "kill9-queue"
SHARDS = 2
# When to kill, after the load starts (seconds).
KILL_AFTER_MIN_S = 0.020
KILL_AFTER_MAX_S = 0.800
# How long the server may take to accept connections after a (re)start.
START_TIMEOUT_S = 20.0
# Records per produced batch.
BATCH_RECORDS_MAX = 5
# A full re-read of every partition every this many cycles (and at the end);
# in between, each partition is re-read from this many records below the last
# verified end.
FULL_CHECK_EVERY = 25
TAIL_RECHECK_RECORDS = 2000
FETCH_LIMIT_BYTES = 1 << 20


class Defect(AssertionError):
    """A broken promise: the message says which and where."""


def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low, high = (int(p) for p in ports.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_base_port(count):
    """A port P with P..P+count-1 free on loopback (the main listener and one
    per shard), below the ephemeral range: a connect to a port in that range
    with nothing listening can pick the same port as its source and connect
    to itself, which the start-up probe would take for the server."""
    low, _ = ephemeral_range()
    for _ in range(200):
        base = random.randint(10000, max(10001, low - count - 1))
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free run of %d loopback ports" % count)


class Server:
    """``ringmq serve`` on fixed loopback ports and one data directory."""

    def __init__(self, binary, directory, port):
        self.binary = binary
        self.directory = directory
        self.address = "127.0.0.1:%d" % port
        self.process = None
        self.log = open(os.path.join(directory, "serve.log"), "ab")

    def start(self):
        # Started when it says so: a connect probe could reach the listener of
        # the process just killed, which outlives it for a moment.
        self.process = subprocess.Popen(
            [self.binary, "serve", "--shards", str(SHARDS), "--listen", self.address,
             "--kafka-listen", "off", "--data-dir", os.path.join(self.directory, "data")],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True,
        )
        ready = []
        reader = threading.Thread(target=lambda: ready.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not ready or not ready[0].startswith("ringmq listening on %s " % self.address):
            self.process.kill()
            raise Defect("the server did not start listening within %.0f s (%r); see %s/serve.log"
                         % (START_TIMEOUT_S, ready[:1], self.directory))
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Ledger:
    """What the broker acknowledged, across every cycle (shared by the load threads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}  # value -> (partition, offset)
        self.produced = set()  # every value ever sent (acknowledged or not)
        self.commits = {}  # partition -> highest acknowledged committed offset
        self.accepted = set()  # (partition, offset) whose acceptance was acknowledged
        self.redelivered = []  # accepted records delivered again (defects)
        self.errors = []  # unexpected exceptions in the load threads
        self.batches = 0


def producer(address, ledger, cycle, index, stop, rng):
    sequence = 0
    try:
        client = ringmq.connect(address)
    except ringmq.Error:
        return
    try:
        while not stop.is_set():
            partition = rng.randrange(PARTITIONS)
            count = rng.randint(1, BATCH_RECORDS_MAX)
            values = [b"c%d-p%d-%d" % (cycle, index, sequence + i) for i in range(count)]
            sequence += count
            with ledger.lock:
                ledger.produced.update(values)
            try:
                offset = client.produce_many(TOPIC, values, partition=partition, acks="durable")
            except (ringmq.IoError, ringmq.ClosedError, ringmq.StorageError, ringmq.BrokerError, ringmq.SequenceError):
                # The server died under it (after the client's own resends):
                # not acknowledged, so nothing is promised about these values.
                return
            with ledger.lock:
                ledger.batches += 1
                for i, value in enumerate(values):
                    ledger.acked[value] = (partition, offset + i)
    except Exception as error:  # noqa: BLE001 - reported as a harness failure
        ledger.errors.append("producer %d: %r" % (index, error))
    finally:
        client.close()


def group_reader(address, ledger, stop):
    try:
        client = ringmq.connect(address)
        member = client.group_consumer(GROUP, [TOPIC], manual_commit=True)
    except ringmq.Error:
        return
    try:
        while not stop.is_set():
            records = member.poll(0.05)
            last = {}
            for record in records:
                last[record.partition] = record.offset + 1
            for partition, next_offset in last.items():
                member.commit_offset(TOPIC, partition, next_offset)
                with ledger.lock:
                    ledger.commits[partition] = max(ledger.commits.get(partition, 0), next_offset)
    except ringmq.Error:
        return  # the server died: the last commit that returned is what counts
    except Exception as error:  # noqa: BLE001
        ledger.errors.append("group reader: %r" % (error,))
    finally:
        try:
            member.close()
            client.close()
        except Exception:  # noqa: BLE001 - closing after the server died
            pass


def share_reader(address, ledger, stop):
    try:
        client = ringmq.connect(address)
        member = client.share_consumer(SHARE_GROUP, TOPIC)
    except ringmq.Error:
        return
    try:
        while not stop.is_set():
            received = member.receive(max_records=50, timeout=0.05)
            if not received:
                continue
            keys = [(r.record.partition, r.record.offset) for r in received]
            with ledger.lock:
                ledger.redelivered.extend(key for key in keys if key in ledger.accepted)
            # One acknowledgement (one fdatasync) for the whole receive.
            member.acknowledge_all(received, ringmq.Ack.ACCEPT)
            with ledger.lock:
                ledger.accepted.update(keys)
    except ringmq.Error:
        return
    except Exception as error:  # noqa: BLE001
        ledger.errors.append("share reader: %r" % (error,))
    finally:
        try:
            member.close()
            client.close()
        except Exception:  # noqa: BLE001
            pass


def read_partition(client, partition, start, end):
    """Records start..end of a partition, checked dense; returns [(offset, value)]."""
    records = []
    offset = start
    while offset < end:
        fetched = client.fetch(TOPIC, partition, offset)
        if not fetched:
            raise Defect("partition %d: no record at offset %d below the end %d" % (partition, offset, end))
        for record in fetched:
            if record.offset < offset:
                continue
            if record.offset != offset:
                raise Defect("partition %d: offset %d follows %d (a hole)" % (partition, record.offset, offset - 1))
            records.append((record.offset, record.value))
            offset += 1
            if offset == end:
                break
    return records


def check(address, ledger, verified_end, full):
    """Checks the log and the group against the ledger; returns the new verified ends."""
    client = ringmq.connect(address)
    try:
        with ledger.lock:
            acked = dict(ledger.acked)
            produced = set(ledger.produced)
            commits = dict(ledger.commits)
        by_partition = {}
        for value, (partition, offset) in acked.items():
            by_partition.setdefault(partition, {})[offset] = value
        new_end = {}
        seen_values = {}
        for partition in range(PARTITIONS):
            offsets = client.offsets(TOPIC, partition)
            if offsets.earliest != 0:
                raise Defect("partition %d starts at %d: nothing should have been deleted" % (partition, offsets.earliest))
            highest_acked = max(by_partition.get(partition, {-1: None}))
            if offsets.latest <= highest_acked:
                raise Defect("partition %d ends at %d below acknowledged offset %d"
                             % (partition, offsets.latest, highest_acked))
            start = 0 if full else max(0, verified_end.get(partition, 0) - TAIL_RECHECK_RECORDS)
            for offset, value in read_partition(client, partition, start, offsets.latest):
                if value not in produced:
                    raise Defect("partition %d offset %d: value %r was never produced (torn or foreign)"
                                 % (partition, offset, value))
                if value in seen_values:
                    raise Defect("value %r at %s and at partition %d offset %d: appended twice"
                                 % (value, seen_values[value], partition, offset))
                seen_values[value] = (partition, offset)
                expected = by_partition.get(partition, {}).get(offset)
                if expected is not None and expected != value:
                    raise Defect("partition %d offset %d holds %r, acknowledged as %r (offset reused)"
                                 % (partition, offset, value, expected))
            for offset, value in by_partition.get(partition, {}).items():
                if offset >= start and seen_values.get(value) != (partition, offset):
                    raise Defect("acknowledged %r at partition %d offset %d is not there (lost)"
                                 % (value, partition, offset))
            new_end[partition] = offsets.latest
        description = client.describe_group(GROUP) if commits else None
        if description is not None:
            committed = {p.partition: p.committed for p in description.partitions if p.topic == TOPIC}
            for partition, offset in commits.items():
                if (committed.get(partition) or 0) < offset:
                    raise Defect("group commit of partition %d went back from %d to %s"
                                 % (partition, offset, committed.get(partition)))
        return new_end
    finally:
        client.close()


def run(cycles, binary, seed=None, producers=3, log=print):
    """Runs the loop; raises Defect at the first broken promise. Returns counts."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    directory = tempfile.mkdtemp(prefix="ringmq-kill9-")
    server = Server(binary, directory, free_base_port(1 + SHARDS))
    ledger = Ledger()
    verified_end = {}
    log("kill9: seed %d, %d cycles, %d producers, data in %s" % (seed, cycles, producers, directory))
    started = time.time()
    server.start()
    try:
        setup = ringmq.connect(server.address)
        setup.create_topic(TOPIC, PARTITIONS)
        setup.close()
        for cycle in range(1, cycles + 1):
            stop = threading.Event()
            threads = [threading.Thread(target=producer, args=(server.address, ledger, cycle, i, stop,
                                                                random.Random(rng.random())))
                       for i in range(producers)]
            threads.append(threading.Thread(target=group_reader, args=(server.address, ledger, stop)))
            threads.append(threading.Thread(target=share_reader, args=(server.address, ledger, stop)))
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(KILL_AFTER_MIN_S, KILL_AFTER_MAX_S))
            server.kill9()
            server.start()
            stop.set()
            for thread in threads:
                thread.join()
            if ledger.errors:
                raise Defect("cycle %d: the load failed: %s" % (cycle, "; ".join(ledger.errors)))
            if ledger.redelivered:
                raise Defect("cycle %d: accepted records delivered again: %s" % (cycle, ledger.redelivered[:10]))
            full = cycle % FULL_CHECK_EVERY == 0 or cycle == cycles
            verified_end = check(server.address, ledger, verified_end, full)
            if cycle % 10 == 0 or cycle == cycles:
                log("kill9: cycle %d/%d: %d records acknowledged in %d batches, %d accepted, %.0f s"
                    % (cycle, cycles, len(ledger.acked), ledger.batches, len(ledger.accepted),
                       time.time() - started))
    except Defect as defect:
        raise Defect("%s (seed %d; data and serve.log kept in %s)" % (defect, seed, directory)) from None
    finally:
        server.stop()
    return {"cycles": cycles, "acknowledged": len(ledger.acked), "batches": ledger.batches,
            "accepted": len(ledger.accepted), "directory": directory, "seconds": time.time() - started}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--producers", type=int, default=3, choices=range(1, 5))
    parser.add_argument("--bin", default=os.environ.get("RINGMQ_BIN", str(REPO_ROOT / "target" / "release" / "ringmq")))
    args = parser.parse_args()
    try:
        result = run(args.cycles, args.bin, seed=args.seed, producers=args.producers)
    except Defect as defect:
        print("kill9: DEFECT: %s" % defect, file=sys.stderr)
        return 1
    print("kill9: %(cycles)d cycles passed: %(acknowledged)d records acknowledged in %(batches)d batches, "
          "%(accepted)d accepted by the share group, %(seconds).0f s" % result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
