"""The short version of the connections harness (tests/python/connections.py)
in README's test command: 1,000 idle connections, the limit enforced with a
clear refusal, a good client served throughout."""

import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import connections  # noqa: E402

COUNT = int(os.environ.get("RINGMQ_CONNECTIONS", "1000"))
# What one idle connection may cost the server: a read buffer, a task, a
# writer task and their channel (docs/RELIABILITY.md gives the measured figure).
BYTES_PER_IDLE_CONNECTION_MAX = 512 * 1024


class ManyConnections(unittest.TestCase):
    def test_idle_connections_fit_the_limit_is_enforced_and_a_client_is_served(self):
        binary = os.environ.get("RINGMQ_BIN", str(connections.REPO_ROOT / "target" / "debug" / "ringmq"))
        self.assertTrue(os.path.exists(binary), "no ringmq server at %s" % binary)
        result = connections.run(COUNT, binary, log=lambda line: print(line, file=sys.stderr))
        self.assertEqual(result["connections"], COUNT)
        self.assertLess(result["bytes_per_connection"], BYTES_PER_IDLE_CONNECTION_MAX)


if __name__ == "__main__":
    unittest.main()
