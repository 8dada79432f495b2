"""A failing disk under a real ``ringmq serve``: EIO injected into the real
I/O backend (``RINGMQ_INJECT_FAULTS``, since this machine's kernel has no
device mapper for dm-error). A failed fdatasync is never retried: the
partition is poisoned, the producers waiting on it get StorageError, reads go
on, nothing acknowledged before is lost, and a restart recovers. A failed
write refuses that produce with StorageError and loses nothing acknowledged.
Part of README's test command (issue 16, item 6)."""

import os
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bindings" / "python"))
import ringmq  # noqa: E402

# Operations that succeed before the injected faults begin: enough for the
# start-up, the topic and some acknowledged records.
FAULT_AFTER = 40
PRODUCES_MAX = 500


def start(binary, data_dir, log_path, faults=None):
    env = dict(os.environ)
    env.pop("RINGMQ_INJECT_FAULTS", None)
    if faults:
        env["RINGMQ_INJECT_FAULTS"] = faults
    process = subprocess.Popen(
        [binary, "serve", "--shards", "2", "--listen", "127.0.0.1:0", "--kafka-listen", "off",
         "--data-dir", data_dir],
        stdout=subprocess.PIPE, stderr=open(log_path, "ab"), text=True, env=env,
    )
    line = process.stdout.readline()
    assert line.startswith("ringmq listening on "), "%r (see %s)" % (line, log_path)
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, line.split()[3]


def stop(process):
    process.terminate()
    process.wait(timeout=30)


class FailingDisk(unittest.TestCase):
    def run_until_refused(self, fault, expected_log):
        binary = os.environ.get("RINGMQ_BIN", str(REPO_ROOT / "target" / "debug" / "ringmq"))
        directory = tempfile.mkdtemp(prefix="ringmq-failing-disk-")
        data_dir, log_path = os.path.join(directory, "data"), os.path.join(directory, "serve.log")
        process, address = start(binary, data_dir, log_path)
        client = ringmq.connect(address)
        client.create_topic("t", 1)
        client.close()
        stop(process)

        process, address = start(binary, data_dir, log_path, "%s=%d" % (fault, FAULT_AFTER))
        client = ringmq.connect(address)
        acked = []
        refusal = None
        for i in range(PRODUCES_MAX):
            try:
                acked.append((client.produce("t", b"r%d" % i, partition=0, acks="durable"), b"r%d" % i))
            except ringmq.Error as error:
                refusal = error
                break
        self.assertIsInstance(refusal, ringmq.StorageError, "the failing disk was not reported as a storage failure")
        self.assertGreater(len(acked), 0, "nothing was acknowledged before the faults began")
        # Refused again (not retried into a success), and reads go on.
        with self.assertRaises(ringmq.StorageError):
            client.produce("t", b"after", partition=0, acks="durable")
        values = [r.value for r in client.fetch("t", 0, 0) if r.offset < len(acked)]
        self.assertEqual(values, [v for _, v in acked])
        client.close()
        stop(process)
        with open(log_path) as log:
            self.assertIn(expected_log, log.read())

        # A restart without faults: every acknowledged record, and writes again.
        process, address = start(binary, data_dir, log_path)
        client = ringmq.connect(address)
        try:
            records = client.fetch("t", 0, 0)
            for offset, value in acked:
                self.assertEqual(records[offset].value, value)
            offset = client.produce("t", b"recovered", partition=0, acks="durable")
            self.assertGreaterEqual(offset, len(acked))
        finally:
            client.close()
            stop(process)
        return len(acked)

    def test_a_failed_fdatasync_poisons_the_partition_and_a_restart_recovers(self):
        self.run_until_refused("fdatasync-eio-after", "refuses writes until reopened")

    def test_a_failed_write_refuses_the_produce_and_loses_nothing(self):
        self.run_until_refused("write-eio-after", "injecting I/O faults")


if __name__ == "__main__":
    unittest.main()
