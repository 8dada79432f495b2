"""The short version of the kill -9 loop (tests/python/kill9.py) in README's
test command: 20 cycles against the debug server, with 3 idempotent durable
producers, a consumer group committing and a share group accepting. Any
broken promise fails the test with the seed that found it."""

import os
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kill9  # noqa: E402

CYCLES = int(os.environ.get("RINGMQ_KILL9_CYCLES", "20"))


class KillNine(unittest.TestCase):
    def test_no_acknowledged_record_commit_or_acceptance_is_lost_across_kill_9(self):
        binary = os.environ.get("RINGMQ_BIN", str(kill9.REPO_ROOT / "target" / "debug" / "ringmq"))
        self.assertTrue(os.path.exists(binary), "no ringmq server at %s (build it, or set RINGMQ_BIN)" % binary)
        result = kill9.run(CYCLES, binary, log=lambda line: print(line, file=sys.stderr))
        self.assertEqual(result["cycles"], CYCLES)
        self.assertGreater(result["acknowledged"], 0, "the load acknowledged nothing: the loop tested nothing")
        self.assertGreater(result["accepted"], 0, "the share group accepted nothing")

    def test_the_checker_catches_lost_reused_foreign_and_backward_state(self):
        # The loop proves something only if its checks can fail: each broken
        # promise below, staged against a real server, must be reported.
        binary = os.environ.get("RINGMQ_BIN", str(kill9.REPO_ROOT / "target" / "debug" / "ringmq"))
        directory = tempfile.mkdtemp(prefix="ringmq-kill9-check-")
        server = kill9.Server(binary, directory, kill9.free_base_port(1 + kill9.SHARDS))
        server.start()
        try:
            client = kill9.ringmq.connect(server.address)
            client.create_topic(kill9.TOPIC, kill9.PARTITIONS)
            values = [b"v0", b"v1", b"v2"]
            self.assertEqual(client.produce_many(kill9.TOPIC, values, partition=1), 0)
            member = client.group_consumer(kill9.GROUP, [kill9.TOPIC], manual_commit=True)
            while not member.poll(0.2):
                pass
            member.commit_offset(kill9.TOPIC, 1, 2)
            member.close()
            client.close()

            def ledger(acked=None, produced=values, commits=None):
                book = kill9.Ledger()
                book.acked = {v: (1, i) for i, v in enumerate(values)} if acked is None else acked
                book.produced = set(produced)
                book.commits = {1: 2} if commits is None else commits
                return book

            self.assertEqual(kill9.check(server.address, ledger(), {}, True)[1], 3, "the true ledger passes")
            cases = {
                # An acknowledged record whose offset another record holds.
                "offset reused": ledger(acked={b"v9": (1, 1)}, produced=values + [b"v9"]),
                # One past the end of the log: lost with its offset.
                "ends at": ledger(acked={b"v3": (1, 3)}, produced=values + [b"v3"]),
                "never produced": ledger(produced=[b"v0", b"v2"]),
                "went back": ledger(commits={1: 3}),
            }
            for expected, book in cases.items():
                with self.assertRaises(kill9.Defect, msg=expected) as raised:
                    kill9.check(server.address, book, {}, True)
                self.assertIn(expected, str(raised.exception))
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
