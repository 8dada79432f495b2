"""Embedded broker through the Python binding: produce -> consume round trips
(one 100-byte record produced with acks=written, then polled back by a consumer,
in one thread) and produce throughput of 100-byte records, 1000 per call.
The same loops as bindings/c/bench.c and examples/embedded_roundtrip.rs.

Usage: python3 bindings/python/bench.py DATA_DIR [ROUNDS]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ringmq  # noqa: E402


def main():
    data_dir = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    value = b"v" * 100
    with ringmq.Broker(data_dir, shards=1) as broker:
        client = broker.client()
        client.create_topic("bench", partitions=1, retention_ms=-1, retention_bytes=-1)
        consumer = client.consumer("bench", partition=0, start="latest")
        latencies = []
        for _ in range(rounds):
            start = time.perf_counter()
            client.produce("bench", value, partition=0, acks="written")
            records = consumer.poll(1.0)
            assert len(records) == 1
            latencies.append((time.perf_counter() - start) * 1e6)
        latencies.sort()
        print(
            "Python embedded produce->consume (100 B, acks=written): p50 %.1f us, p99 %.1f us (%d rounds)"
            % (latencies[rounds // 2], latencies[rounds * 99 // 100], rounds)
        )
        batch = [value] * 1000
        calls = rounds // 20 + 1
        start = time.perf_counter()
        for _ in range(calls):
            client.produce_many("bench", batch, partition=0, acks="written")
        rate = calls * 1000 / (time.perf_counter() - start)
        print("Python embedded produce 100 B records, 1000 per call, acks=written: %.0f records/s" % rate)
        consumer.close()
        client.close()


if __name__ == "__main__":
    main()
