"""Many concurrent connections against a real ``ringmq serve --shards 2``.

Opens ``--connections`` idle client connections (each says Hello and waits),
measures the server's RSS before and after (memory per idle connection), and
checks that

1. every one of them was accepted and answered (spread over the main port
   and both shard ports);
2. with ``--max-connections`` set to exactly that many, one more is refused
   with ``ResourceLimit`` through the Python client (a clear error, not a hang
   or a reset), and the refusal is counted in the metrics;
3. a client produces and fetches normally throughout (it holds one of the
   slots), and after the idle connections close it still does.

Run by hand (the long version)::

    python3 tests/python/connections.py --connections 10000

The fd limit of this process (and so of the server it starts) is raised to
fit. ``test_connections.py`` runs it with 1,000 in README's test command.
"""

import argparse
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bindings" / "python"))
import ringmq  # noqa: E402

SHARDS = 2
API_HELLO = 0
ERROR_NONE = 0
START_TIMEOUT_S = 20.0
ANSWER_TIMEOUT_S = 60.0
# Connections the good client may hold (main port and one per shard).
GOOD_CLIENT_SLOTS = 1 + SHARDS
# File descriptors beyond the connections (the server's files, the client's own).
FD_HEADROOM = 1024


class Failure(AssertionError):
    pass


def hello_frame(correlation_id):
    name = b"connections-harness"
    body = struct.pack(">H", len(name)) + name
    header = struct.pack(">HHI", API_HELLO, 0, correlation_id)
    return struct.pack(">I", len(header) + len(body)) + header + body


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise Failure("no VmRSS for pid %d" % pid)


def fetch_metrics(url):
    return urllib.request.urlopen(url, timeout=10).read().decode().splitlines()


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError) as error:
        raise Failure("cannot raise the fd limit to %d (%s): run as root or raise it first" % (wanted, error))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_idle(addresses, count):
    """`count` connections round-robin over `addresses`, each answered Hello."""
    selector = selectors.DefaultSelector()
    sockets = []
    pending = {}
    for i in range(count):
        host, port = addresses[i % len(addresses)]
        s = socket.create_connection((host, port), timeout=10)
        s.setblocking(False)
        s.sendall(hello_frame(i))
        sockets.append(s)
        pending[s.fileno()] = (s, b"")
        selector.register(s, selectors.EVENT_READ)
    deadline = time.time() + ANSWER_TIMEOUT_S
    while pending and time.time() < deadline:
        for key, _ in selector.select(timeout=1):
            s, got = pending[key.fd]
            chunk = s.recv(65536)
            if not chunk:
                raise Failure("connection %d closed before its Hello answer" % sockets.index(s))
            got += chunk
            if len(got) >= 4 and len(got) >= 4 + struct.unpack(">I", got[:4])[0]:
                _, error = struct.unpack(">IH", got[4:10])
                if error != ERROR_NONE:
                    raise Failure("connection %d: Hello answered with error %d" % (sockets.index(s), error))
                selector.unregister(s)
                del pending[key.fd]
            else:
                pending[key.fd] = (s, got)
    selector.close()
    if pending:
        raise Failure("%d of %d connections got no Hello answer within %.0f s"
                      % (len(pending), count, ANSWER_TIMEOUT_S))
    return sockets


def run(count, binary, log=print):
    raise_fd_limit(count + FD_HEADROOM)
    directory = tempfile.mkdtemp(prefix="ringmq-connections-")
    port = free_port()
    metrics_port = free_port()
    # The good client holds a few connections (the main port, then a pool per
    # shard); the limit leaves room for them, and the slots they leave are
    # filled before the limit is tested.
    limit = count + GOOD_CLIENT_SLOTS
    server = subprocess.Popen(
        [binary, "serve", "--shards", str(SHARDS), "--listen", "127.0.0.1:0", "--kafka-listen", "off",
         "--max-connections", str(limit), "--metrics-listen", "127.0.0.1:%d" % metrics_port,
         "--data-dir", os.path.join(directory, "data")],
        stdout=subprocess.PIPE, stderr=open(os.path.join(directory, "serve.log"), "wb"), text=True,
    )
    try:
        line = server.stdout.readline()
        if not line.startswith("ringmq listening on "):
            raise Failure("the server did not start: %r (see %s/serve.log)" % (line, directory))
        main = line.split()[3]
        shard_ports = [int(p) for p in line.split("shard ports [")[1].split("]")[0].split(",")]
        host, port = main.rsplit(":", 1)
        addresses = [(host, int(port))] + [(host, p) for p in shard_ports]
        good = ringmq.connect(main)
        good.create_topic("alive", 1)
        assert good.produce("alive", b"before") == 0
        time.sleep(0.2)
        before = rss_bytes(server.pid)
        started = time.time()
        idle = open_idle(addresses, count)
        opened_s = time.time() - started
        time.sleep(0.5)
        after = rss_bytes(server.pid)
        per_connection = (after - before) / count
        log("connections: %d idle connections open in %.1f s; server RSS %.1f MiB -> %.1f MiB, %.1f KiB each"
            % (count, opened_s, before / 2**20, after / 2**20, per_connection / 1024))

        metrics_url = "http://127.0.0.1:%d/metrics" % metrics_port
        open_now = sum(int(l.split()[1]) for l in fetch_metrics(metrics_url) if l.startswith("ringmq_connections{"))
        if open_now < count + 1 or open_now > limit:
            raise Failure("the server counts %d open connections, with %d idle and the good client" % (open_now, count))
        idle += open_idle(addresses, limit - open_now)  # the limit reached exactly

        # Full: one more connection is refused, clearly.
        try:
            extra = ringmq.connect(main)
            try:
                extra.topics()
            finally:
                extra.close()
            raise Failure("connection %d of a limit of %d was served" % (limit + 1, limit))
        except ringmq.Error as error:
            if "resource limit" not in str(error):
                raise Failure("the refusal is not clear: %r" % (error,))
            log("connections: the one past the limit was refused: %s" % error)
        refused = [l for l in fetch_metrics(metrics_url) if l.startswith("ringmq_refused_connections_total ")]
        if not refused or int(refused[0].split()[1]) < 1:
            raise Failure("the refusal was not counted: %r" % refused)

        # The good client kept working, and works after the idle ones go.
        if good.produce("alive", b"during") != 1:
            raise Failure("the good client's produce got the wrong offset")
        for s in idle:
            s.close()
        if good.produce("alive", b"after") != 2:
            raise Failure("the good client's produce got the wrong offset")
        values = [r.value for r in good.fetch("alive", 0, 0)]
        if values != [b"before", b"during", b"after"]:
            raise Failure("the good client's records: %r" % values)
        good.close()
        return {"connections": count, "rss_before": before, "rss_after": after,
                "bytes_per_connection": per_connection, "open_seconds": opened_s}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--bin", default=os.environ.get("RINGMQ_BIN", str(REPO_ROOT / "target" / "release" / "ringmq")))
    args = parser.parse_args()
    try:
        run(args.connections, args.bin)
    except Failure as failure:
        print("connections: FAILED: %s" % failure, file=sys.stderr)
        return 1
    print("connections: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
