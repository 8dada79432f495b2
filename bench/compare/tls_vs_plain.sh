#!/usr/bin/env bash
# What TLS costs: the same `ringmq bench` workloads against two servers, one
# plain and one with TLS (certificates made here with openssl), one at a
# time, alternating, each round on fresh topics. Each server runs one shard
# pinned to CPU 0; the client is pinned to CPU 1 (PIN=0: no pinning).
#
#   throughput: 1 producer, 1 partition, 1 KiB records x 1000 per request, acks written
#   consume:    the same records read back by 1 consumer
#   latency:    one 100 B record per request, acks written, 1 client
#
#   [PIN=0] bench/compare/tls_vs_plain.sh [RECORDS] [ROUNDS]     (defaults 2000000, 2)
#
# Needs the release build (cargo build --release) and openssl.
set -euo pipefail
cd "$(dirname "$0")/../.."
RECORDS=${1:-2000000}
ROUNDS=${2:-2}
BIN=target/release/ringmq
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringmq-tls-vs-plain.XXXXXX")
PLAIN=127.0.0.1:19800
TLS=127.0.0.1:19900
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ "${PIN:-1}" = 1 ]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); else server_cpu=(); client_cpu=(); fi

pki=$WORK/pki
mkdir -p "$pki"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 30 -subj /CN=bench-ca 2>/dev/null
openssl req "${ec[@]}" -keyout "$pki/server.key" -out "$pki/server.csr" -subj /CN=server 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" >"$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -out "$pki/server.pem" -days 30 -extfile "$pki/ext" 2>/dev/null

serve() {
  local address=$1 name=$2
  shift 2
  "${server_cpu[@]}" "$BIN" serve --listen "$address" --kafka-listen off --shards 1 --data-dir "$WORK/$name" "$@" \
    >"$WORK/$name.out" 2>&1 &
  pids+=($!)
}
serve "$PLAIN" plain
serve "$TLS" tls --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
sleep 1

# cli KIND ADDRESS ARGS...: the CLI against the plain or the TLS server.
cli() {
  local kind=$1 address=$2
  shift 2
  local flags=(--bootstrap "$address")
  [ "$kind" = tls ] && flags+=(--tls-ca "$pki/ca.pem")
  "${client_cpu[@]}" "$BIN" "${flags[@]}" "$@"
}

# bench KIND ADDRESS WORKLOAD ARGS...: prints "MB/s p50_us" of the run.
bench() {
  local kind=$1 address=$2
  shift 2
  cli "$kind" "$address" bench "$@" 2>&1 |
    awk '/^ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9.]+ \|/ { print $5, $7; exit }'
}

printf '%-6s %-5s %14s %14s %16s\n' round kind "produce MB/s" "consume MB/s" "1-record p50 us"
for round in $(seq "$ROUNDS"); do
  order=(plain tls)
  [ $((round % 2)) = 0 ] && order=(tls plain)
  for kind in "${order[@]}"; do
    address=$PLAIN
    [ "$kind" = tls ] && address=$TLS
    topic=t-$kind-$round
    produce=$(bench "$kind" "$address" produce --topic "$topic" --count "$RECORDS" --batch-records 1000 --message-size 1024)
    consume=$(bench "$kind" "$address" consume --topic "$topic-c" --count "$RECORDS" --batch-records 1000 --message-size 1024)
    latency=$(bench "$kind" "$address" produce --topic "$topic-l" --count 20000 --batch-records 1 --message-size 100 --in-flight 1)
    printf '%-6s %-5s %14s %14s %16s\n' "$round" "$kind" "${produce%% *}" "${consume%% *}" "${latency##* }"
    for t in "$topic" "$topic-c" "$topic-l"; do cli "$kind" "$address" topic delete "$t" >/dev/null 2>&1 || true; done
  done
done
