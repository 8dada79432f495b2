"""The full-disk harness (tests/python/full_disk.py) in README's test
command: a 32 MiB tmpfs filled by durable producers. Needs root (mount), as
README's test command has on the project's machines; without it this fails,
it is not skipped."""

import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import full_disk  # noqa: E402


class FullDisk(unittest.TestCase):
    def test_a_full_disk_is_refused_with_no_space_loses_nothing_and_recovers_by_itself(self):
        binary = os.environ.get("RINGMQ_BIN", str(full_disk.REPO_ROOT / "target" / "debug" / "ringmq"))
        self.assertTrue(os.path.exists(binary), "no ringmq server at %s" % binary)
        result = full_disk.run(binary, size_mib=32, log=lambda line: print(line, file=sys.stderr))
        self.assertGreater(result["acknowledged"], 1000)


if __name__ == "__main__":
    unittest.main()
