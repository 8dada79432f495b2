#!/usr/bin/env bash
# Measures the performance targets of issue #4 next to their references, each
# reference taken in the same run. Prints one line per measurement.
# Usage: bench/targets.sh [T1 T2 ...]   (default: all)   Needs: fio iperf3 sockperf.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/ringmq
DATA=${RINGMQ_TARGETS_DIR:-target/targets-data}
PORT=9400
ADDR=127.0.0.1:$PORT
targets=${*:-T1 T2 T3 T4 T5 T6 T7 T8}
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

start_server() { # data dir
  $BIN serve --listen $ADDR --kafka-listen off --data-dir "$1" > /tmp/targets-serve.log 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do grep -q listening /tmp/targets-serve.log && return; sleep 0.05; done
  echo "server did not start"; cat /tmp/targets-serve.log; exit 1
}
stop_server() { kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; }
bench() { $BIN --bootstrap $ADDR bench "$@" --json; }

for t in $targets; do
case $t in
T1)
  rm -rf "$DATA"; start_server "$DATA"
  iperf3 -s -1 -B 127.0.0.1 -p 5201 >/dev/null 2>&1 & sleep 0.3
  ref=$(iperf3 -c 127.0.0.1 -p 5201 -t 5 -J | jq_ "d['end']['sum_received']['bits_per_second']/8/1e6")
  got=$(bench produce --producers 1 --partitions 1 --message-size 1024 --batch-records 1000 --acks written --duration 5 --warmup 2 | jq_ "d['mb_per_sec']")
  echo "T1 produce 1KiBx1000 acks=written TCP: ${got} MB/s; iperf3 ${ref} MB/s; ratio $(python3 -c "print(round($got/$ref,3))")"
  stop_server ;;
T2)
  rm -rf "$DATA" target/fio; mkdir -p target/fio; start_server "$DATA"
  ref=$(fio --name=x --directory=target/fio --rw=write --bs=1M --size=2G --fdatasync=1 --output-format=json 2>/dev/null | jq_ "d['jobs'][0]['write']['bw_bytes']/1e6"); rm -rf target/fio
  got=$(bench produce --producers 4 --partitions 4 --message-size 1024 --batch-records 1000 --acks durable --duration 5 --warmup 1 | jq_ "d['mb_per_sec']")
  echo "T2 produce 1KiBx1000 acks=durable 4 producers/4 partitions: ${got} MB/s; fio 1M fdatasync ${ref} MB/s; ratio $(python3 -c "print(round($got/$ref,3))")"
  stop_server ;;
T3)
  rm -rf "$DATA"; start_server "$DATA"
  for p in 1 2 4; do
    got=$(bench produce --producers $p --partitions $p --message-size 100 --batch-records 1000 --acks written --duration 5 --warmup 1 | jq_ "round(d['records_per_sec'])")
    echo "T3 100 B records acks=written TCP, $p producer(s): ${got} records/s (target 5,000,000)"
  done
  stop_server ;;
T4)
  rm -rf "$DATA" target/fio; mkdir -p target/fio; start_server "$DATA"
  ref=$(fio --name=x --directory=target/fio --rw=write --bs=4k --size=64M --runtime=6 --time_based --ioengine=psync --fdatasync=1 --output-format=json 2>/dev/null | jq_ "d['jobs'][0]['sync']['lat_ns']['percentile']['50.000000']/1000"); rm -rf target/fio
  got=$(bench produce --producers 1 --partitions 1 --message-size 100 --batch-records 1 --acks durable --duration 5 --warmup 1 | jq_ "(d['latency_us']['p50'], d['latency_us']['p99'])")
  echo "T4 one 100 B record per request acks=durable, 4 in flight: p50/p99 ${got} us; fio 4k fdatasync p50 ${ref} us; target p50 <= fio + 50"
  got=$(bench produce --producers 1 --partitions 1 --message-size 100 --batch-records 1 --acks durable --duration 5 --warmup 1 --in-flight 1 --reference "$DATA" | jq_ "(d['latency_us']['p50'], d['latency_us']['p99'], d['reference']['fdatasync_p50_us'], d['reference']['p50_minus_fdatasync_p50_us'])")
  echo "T4 one request at a time: p50/p99, 4 KiB append+fdatasync p50 (same run), p50 over it: ${got} us"
  stop_server ;;
T5)
  rm -rf "$DATA"; start_server "$DATA"
  sockperf sr --tcp -i 127.0.0.1 -p 11111 >/dev/null 2>&1 & SP=$!; sleep 0.5
  ref=$(sockperf pp --tcp -i 127.0.0.1 -p 11111 -m 64 -t 5 2>&1 | grep -E "percentile 50.000|avg-latency" | tr '\n' ' ')
  kill $SP
  got=$(bench e2e --producers 1 --consumers 1 --partitions 1 --message-size 64 --batch-records 1 --acks written --rate 10000 --duration 5 --warmup 1 | jq_ "(d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p999'])")
  echo "T5 e2e TCP 10,000/s: p50/p99/p99.9 ${got} us; sockperf 64 B ping-pong: ${ref}"
  stop_server ;;
T6)
  got=$($BIN bench e2e --embedded --busy-poll --shards 1 --producers 1 --consumers 1 --partitions 1 --message-size 64 --batch-records 1 --acks written --rate 10000 --duration 5 --warmup 1 --json | jq_ "(d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p999'])")
  echo "T6 e2e embedded busy-poll 10,000/s: p50/p99/p99.9 ${got} us (target p50 <= 2, p99 <= 10)"
  got=$($BIN bench e2e --embedded --shards 1 --producers 1 --consumers 1 --partitions 1 --message-size 64 --batch-records 1 --acks written --rate 10000 --duration 5 --warmup 1 --json | jq_ "(d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p999'])")
  echo "T6 (same without busy-poll): p50/p99/p99.9 ${got} us"
  got=$($BIN bench e2e --embedded --busy-poll --same-thread --shards 1 --producers 1 --consumers 1 --partitions 1 --message-size 64 --batch-records 1 --acks written --rate 10000 --duration 5 --warmup 1 --json | jq_ "(d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p999'])")
  echo "T6 (busy-poll, producer and consumer on one client thread): p50/p99/p99.9 ${got} us"
  # The application's threads on the core the shard is not pinned to (shard 0
  # pins itself to core 0), and a producer that does not wait for its ack.
  got=$(taskset -c 1 $BIN bench e2e --embedded --busy-poll --shards 1 --producers 1 --consumers 1 --partitions 1 --message-size 64 --batch-records 1 --acks none --rate 10000 --duration 5 --warmup 1 --json | jq_ "(d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p999'])")
  echo "T6 (busy-poll, acks none, client threads on core 1): p50/p99/p99.9 ${got} us"
  got=$(taskset -c 1 $BIN bench e2e --embedded --busy-poll --shards 1 --producers 1 --consumers 1 --partitions 1 --message-size 64 --batch-records 1 --acks written --rate 10000 --duration 5 --warmup 1 --json | jq_ "(d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p999'])")
  echo "T6 (busy-poll, acks written, client threads on core 1): p50/p99/p99.9 ${got} us" ;;
T7)
  rm -rf "$DATA"; start_server "$DATA"
  bench produce --topic t7 --producers 4 --partitions 100 --message-size 1024 --batch-records 1000 --acks written --count 10000000 >/dev/null
  du -sh "$DATA" | sed 's/^/T7 data: /'
  kill -9 $SERVER; wait $SERVER 2>/dev/null
  # The killed process's ports are released once the kernel has torn down its
  # io_uring; an operator restarts after that, so the clock starts then.
  while ss -ltn | grep -q ":$((PORT+1)) "; do sleep 0.1; done
  for run in 1 2; do
    start=$(date +%s.%N); start_server "$DATA"; end=$(date +%s.%N)
    echo "T7 reopen after kill -9 (run $run), 100 partitions: ready in $(python3 -c "print(round($end-$start,3))") s (target <= 1)"
    kill -9 $SERVER; wait $SERVER 2>/dev/null
    # The killed process's ports are released only once it has fully exited.
    while ss -ltn | grep -q ":$PORT "; do sleep 0.1; done
  done
  rm -rf "$DATA" ;;
T8)
  rm -rf "$DATA"; start_server "$DATA"
  for i in $(seq 10); do $BIN --bootstrap $ADDR topic create "idle$i" --partitions 1000 >/dev/null || echo "create failed"; done
  sleep 2
  echo "T8 10,000 idle partitions: server RSS $(awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$SERVER/status), descriptors $(ls /proc/$SERVER/fd | wc -l) (target RSS <= 256 MB)"
  stop_server; rm -rf "$DATA" ;;
esac
done
