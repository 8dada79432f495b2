#!/usr/bin/env bash
# Produce throughput through the Kafka listener against the native protocol,
# on one server, in one run, alternating: librdkafka's own benchmark producer
# (rdkafka_performance, built from Debian's librdkafka source package) against
# `ringmq bench produce`. Same workload on both: one producer, one partition,
# 1 KiB records, acks 1 / written (page cache), about 1,000 records per batch.
# A third client per round, "bench-k", is ringmq bench speaking Kafka to the
# Kafka listener: the listener against the native path with one client, as
# librdkafka's own costs (it shares the cores with the server) weigh on the
# first comparison.
#
#   [PIN=0] bench/compare/kafka_vs_native.sh [RECORDS] [ROUNDS]     (defaults 2000000, 2)
#
# Needs root on Debian (apt-get), the release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
RECORDS=${1:-2000000}
ROUNDS=${2:-2}
SIZE=1024
WORK=${WORK:-/tmp/ringmq-kafka-vs-native}
BIN=target/release/ringmq
NATIVE=127.0.0.1:19700
KAFKA=127.0.0.1:19792

perf_tool() {
  local tool=$WORK/rdkafka_performance
  if [ ! -x "$tool" ]; then {
    mkdir -p "$WORK/src"
    command -v gcc >/dev/null || apt-get install -y -qq gcc
    [ -f /usr/include/librdkafka/rdkafka.h ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librdkafka-dev
    if ! ls "$WORK"/src/librdkafka-*/examples/rdkafka_performance.c >/dev/null 2>&1; then
      sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > /etc/apt/sources.list.d/ringmq-deb-src.sources
      apt-get update -qq 2>/dev/null
      (cd "$WORK/src" && apt-get source -qq librdkafka)
    fi
    local source_dir
    source_dir=$(ls -d "$WORK"/src/librdkafka-*/ | head -1)
    (cd "$source_dir" && [ -f config.h ] || ./configure --disable-ssl --disable-gssapi --disable-sasl >/dev/null)
    gcc -O2 -I"$source_dir/src" -o "$tool" "$source_dir/examples/rdkafka_performance.c" -lrdkafka -lm -lpthread
  } >&2; fi
  echo "$tool"
}

TOOL=$(perf_tool)
[ -x "$BIN" ] || cargo build --release --bin ringmq
rm -rf "$WORK/data"
# One shard pinned to CPU 0, every client pinned to CPU 1 (PIN=0: neither
# pinned, default shards): on two cores, an unpinned client takes the server's
# core in turns, and librdkafka's client costs three times ringmq bench's CPU
# per GB, so the comparison would be of the clients.
if [ "${PIN:-1}" = 1 ]; then
  SERVER_ON=(taskset -c 0); CLIENT_ON=(taskset -c 1); SHARDS=(--shards 1)
else
  SERVER_ON=(); CLIENT_ON=(); SHARDS=()
fi
"${SERVER_ON[@]}" "$BIN" serve "${SHARDS[@]}" --listen $NATIVE --kafka-listen $KAFKA --data-dir "$WORK/data" > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "kafka listening" "$WORK/serve.log" && break; sleep 0.05; done

# The server's CPU seconds so far (user + system), from /proc.
server_cpu() { python3 -c "import os; f=open('/proc/$SERVER/stat').read().rsplit(')',1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))"; }
# Server CPU seconds per GB for the run that started at CPU $1.
cpu_per_gb() { python3 -c "print('%.2f' % (($(server_cpu) - $1) / ($RECORDS * $SIZE / 1e9)))"; }

run_kafka() {
  local round=$1
  local cpu
  cpu=$(server_cpu)
  # Its own figure (the produce phase, as ringmq bench times its own), from
  # the line "N messages produced ... in Tms: R msgs/s and M MB/s".
  "${CLIENT_ON[@]}" "$TOOL" -P -b $KAFKA -t "kafka-$round" -p 0 -s $SIZE -c "$RECORDS" -a 1 \
    -X linger.ms=5 -X batch.size=1048576 -X queue.buffering.max.kbytes=1048576 > "$WORK/kafka-$round.log" 2>&1
  python3 - "$WORK/kafka-$round.log" "$round" "$RECORDS" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
found = list(re.finditer(r"(\d+) delivered .*? in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s", text))
found = found[-1] if found else None  # the final report, not a progress line
if not found or int(found.group(1)) != int(sys.argv[3]):
    sys.exit("rdkafka_performance did not deliver every record: see " + sys.argv[1])
print("%-6s %-8s %12d %10.0f" % (sys.argv[2], "kafka", int(found.group(3)), float(found.group(4))), end="")  # MB = 10^6 bytes, as ringmq bench
PY
  printf ' %14s\n' "$(cpu_per_gb "$cpu")"
  drop_topic "kafka-$round"
}

# Deleting the topic drops its dirty pages, so later rounds are not throttled
# by the writeback of earlier ones (each round writes RECORDS KiB).
drop_topic() { "$BIN" topic --bootstrap $NATIVE delete "$1" >/dev/null; sync; }

# ringmq bench, acks written, 1,000 records per batch, 4 requests in flight:
# over the native protocol, or (run_bench_kafka) the same client speaking
# Kafka's Produce v8 to the Kafka listener, so the two differ only by the
# protocol path in the server.
run_bench() {
  local round=$1 label=$2
  shift 2
  local cpu
  cpu=$(server_cpu)
  json=$("${CLIENT_ON[@]}" "$BIN" bench produce --bootstrap $NATIVE --topic "$label-$round" --message-size $SIZE \
    --batch-records 1000 --acks written --count "$RECORDS" --json "$@")
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('%-6s %-8s %12.0f %10.0f' % ('$round', '$label', d['records_per_sec'], d['mb_per_sec']), end='')" "$json"
  printf ' %14s\n' "$(cpu_per_gb "$cpu")"
  drop_topic "$label-$round"
}
run_native() { run_bench "$1" native; }
run_bench_kafka() { run_bench "$1" bench-k --kafka $KAFKA; }

printf '%-6s %-8s %12s %10s %14s\n' round client "records/s" "MB/s" "server CPU s/GB"
# Whoever goes first in a round meets a fresher page cache: the order alternates.
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    run_kafka "$round"; run_bench_kafka "$round"; run_native "$round"
  else
    run_native "$round"; run_bench_kafka "$round"; run_kafka "$round"
  fi
done | tee "$WORK/rounds.txt"

# The machine's noise moves single rounds by 2x: medians, and their ratios.
python3 - "$WORK/rounds.txt" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
mb = {}; cpu = {}
for row in rows:
    mb.setdefault(row[1], []).append(float(row[3])); cpu.setdefault(row[1], []).append(float(row[4]))
print("median  " + "  ".join("%s %.0f MB/s %.2f s/GB" % (c, statistics.median(mb[c]), statistics.median(cpu[c])) for c in mb))
native = statistics.median(mb["native"])
print("ratio to native (medians): kafka %.2f, bench-k %.2f" % (statistics.median(mb["kafka"]) / native, statistics.median(mb["bench-k"]) / native))
PY
