"""The wheel of the Python binding, with libringmq inside it, so that
``pip install`` is the whole install:

    pip wheel bindings/python -w dist/      # runs `cargo build --release --lib`
    pip install dist/ringmq-*.whl

``RINGMQ_WHEEL_LIB=/path/to/libringmq.so`` bundles a library built already
(the tests use the debug build). The metadata is in pyproject.toml; this file
only adds the library and marks the wheel as platform-specific.
"""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

LIBRARY = "libringmq.so"
REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class BuildWithLibrary(build_py):
    """build_py, then libringmq copied next to the package's modules."""

    def run(self):
        super().run()
        source = os.environ.get("RINGMQ_WHEEL_LIB")
        if not source:
            manifest = os.path.join(REPOSITORY, "Cargo.toml")
            subprocess.run(["cargo", "build", "--release", "--lib", "--manifest-path", manifest], check=True)
            source = os.path.join(REPOSITORY, "target", "release", LIBRARY)
        if not os.path.isfile(source):
            raise SystemExit("ringmq wheel: no library at %s (set RINGMQ_WHEEL_LIB or build it)" % source)
        shutil.copyfile(source, os.path.join(self.build_lib, "ringmq", LIBRARY))


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
