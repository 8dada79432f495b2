"""The wheel: built from bindings/python with libringmq inside, installed
into a fresh virtual environment, and used from a directory outside the
repository, with no RINGMQ_LIB: ``pip install`` is the whole install."""

import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

BINDING = Path(__file__).resolve().parents[1]
REPOSITORY = BINDING.parents[1]

USE = r'''
import ringmq, tempfile
from ringmq import _ffi
assert _ffi.library_path.startswith(ringmq.__path__[0]), _ffi.library_path
with ringmq.Broker(tempfile.mkdtemp()) as broker:
    client = broker.client()
    client.create_topic("wheel", 1)
    assert client.produce("wheel", b"from the wheel") == 0
    assert [r.value for r in client.fetch("wheel", 0, 0)] == [b"from the wheel"]
    client.close()
print("ok", _ffi.library_path)
'''


class Wheel(unittest.TestCase):
    def test_the_wheel_bundles_the_library_and_works_without_the_repository(self):
        library = os.environ.get("RINGMQ_LIB", str(REPOSITORY / "target" / "debug" / "libringmq.so"))
        self.assertTrue(os.path.isfile(library), "no libringmq at %s to bundle" % library)
        work = Path(tempfile.mkdtemp(prefix="ringmq-wheel-"))
        env = dict(os.environ, RINGMQ_WHEEL_LIB=library)
        env.pop("RINGMQ_LIB", None)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", str(BINDING), "-w", str(work / "dist")],
                       check=True, env=env, cwd=work)
        wheels = list((work / "dist").glob("ringmq-*.whl"))
        self.assertEqual(len(wheels), 1, wheels)
        self.assertIn("linux", wheels[0].name, "a wheel holding a native library is platform-specific")
        subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
        python = str(work / "venv" / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index", str(wheels[0])], check=True)
        result = subprocess.run([python, "-c", USE], check=True, env=env, cwd=work, capture_output=True, text=True)
        self.assertTrue(result.stdout.startswith("ok "), result.stdout + result.stderr)
        self.assertIn("site-packages", result.stdout)


if __name__ == "__main__":
    unittest.main()
