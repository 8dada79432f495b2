#!/usr/bin/env bash
# Builds and runs the C and C++ bindings tests against the already built
# library (target/debug/libringmq.so) and server (target/debug/ringmq):
#   - bindings/c/embedded.c  embedded broker from C, under valgrind
#   - bindings/c/client.c    a server over TCP from C, and one over TLS with
#                            client certificates, under valgrind
#   - bindings/c/groups.c    consumer groups, share groups and group descriptions
#                            from C on an embedded broker, under valgrind
#   - bindings/cpp/test.cpp  the C++ wrapper, embedded and against both servers, under valgrind
# The server runs on an ephemeral loopback port with a temporary data
# directory, and must exit 0 on SIGTERM. Build the Rust side first (this script
# never runs cargo). Last line: "bindings: N passed, M failed".
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

lib=target/debug/libringmq.so
server=target/debug/ringmq
header=include/ringmq.h
out=target/bindings

fail() {
    echo "run-tests: $*" >&2
    exit 1
}

[[ -f $lib ]] || fail "$lib is missing: build the library first (cargo build)"
[[ -x $server ]] || fail "$server is missing: build the server first (cargo build)"
[[ -f $header ]] || fail "$header is missing"
command -v gcc >/dev/null || fail "gcc not found"
command -v g++ >/dev/null || fail "g++ not found"
command -v valgrind >/dev/null || fail "valgrind not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ringmq-bindings.XXXXXX")
server_pids=()
cleanup() {
    for pid in "${server_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- build ---------------------------------------------------------------------
mkdir -p "$out"
cflags=(-std=c11 -Wall -Wextra -Werror -g -Iinclude)
cxxflags=(-std=c++17 -Wall -Wextra -Werror -g -Iinclude -Ibindings/cpp)
link=(-Ltarget/debug -lringmq)
echo "building into $out/"
gcc "${cflags[@]}" bindings/c/embedded.c "${link[@]}" -o "$out/embedded" &
gcc "${cflags[@]}" -pthread bindings/c/client.c "${link[@]}" -o "$out/client" &
gcc "${cflags[@]}" -pthread bindings/c/groups.c "${link[@]}" -o "$out/groups" &
g++ "${cxxflags[@]}" -pthread bindings/cpp/test.cpp "${link[@]}" -o "$out/cpp-test" &
for job in $(jobs -p); do
    wait "$job" || fail "compilation failed"
done

# --- servers ---------------------------------------------------------------------
# start_server NAME ARGS...: starts `ringmq serve` with ARGS, waits for its
# address (into $address) and records its pid in $server_pids.
server_pids=()
start_server() {
    local name=$1
    shift
    "$server" serve --listen 127.0.0.1:0 --kafka-listen off --shards 2 --data-dir "$tmp/$name-data" "$@" \
        >"$tmp/$name.out" 2>"$tmp/$name.err" &
    local pid=$!
    server_pids+=("$pid")
    address=
    for _ in $(seq 100); do
        if [[ -s $tmp/$name.out ]]; then
            local line
            line=$(head -n 1 "$tmp/$name.out")
            if [[ $line =~ ^ringmq\ listening\ on\ ([^ ]+)\ \( ]]; then
                address=${BASH_REMATCH[1]}
                break
            fi
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $address ]]; then
        cat "$tmp/$name.out" "$tmp/$name.err" >&2 || true
        fail "the $name server did not report its address"
    fi
    echo "$name server listening on $address (pid $pid)"
}

# The bootstrap user lets the programs check credentials (authentication is
# off, so connections without them are trusted; credentials given are checked).
RINGMQ_BOOTSTRAP_USER=bindings:bindings-pw start_server server
plain_address=$address

# A second server with TLS and client certificates required; the certificates
# (a CA, a server certificate for 127.0.0.1, a client certificate, and a CA
# nobody trusts) are made here with openssl.
command -v openssl >/dev/null || fail "openssl not found"
pki=$tmp/pki
mkdir -p "$pki"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
for ca in ca rogue-ca; do
    openssl req -x509 "${ec[@]}" -keyout "$pki/$ca.key" -out "$pki/$ca.pem" -days 30 -subj "/CN=$ca" 2>/dev/null
done
for pair in server:IP:127.0.0.1 client:DNS:client.example; do
    name=${pair%%:*}
    openssl req "${ec[@]}" -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "/CN=$name" 2>/dev/null
    echo "subjectAltName=${pair#*:}" >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
        -out "$pki/$name.pem" -days 30 -extfile "$pki/$name.ext" 2>/dev/null
done
start_server tls --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" --tls-client-ca "$pki/ca.pem"
tls_address=$address
address=$plain_address

# --- programs --------------------------------------------------------------------
export LD_LIBRARY_PATH="$PWD/target/debug${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TMPDIR="$tmp"
valgrind=(valgrind --error-exitcode=1 --leak-check=full --suppressions=bindings/c/valgrind.supp -q)
passed=0
failed=0

run() {
    local name=$1
    shift
    local start=$SECONDS status=0
    "$@" || status=$?
    if [[ $status -eq 0 ]]; then
        passed=$((passed + 1))
        echo "PASS $name ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        echo "FAIL $name (exit status $status)"
    fi
}

run c-embedded "${valgrind[@]}" "$out/embedded" "$tmp/embedded-data"
run c-client "${valgrind[@]}" "$out/client" "$address" "$tls_address" "$pki"
run c-groups "${valgrind[@]}" "$out/groups" "$tmp/groups-data"
run cpp-test "${valgrind[@]}" "$out/cpp-test" "$address" "$tls_address" "$pki"

# --- stop the servers: SIGTERM, a clean exit -------------------------------------
for pid in "${server_pids[@]}"; do
    kill -TERM "$pid"
done
for pid in "${server_pids[@]}"; do
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        cat "$tmp"/*.err >&2
        fail "server $pid did not stop within 10 s of SIGTERM"
    fi
    server_status=0
    wait "$pid" || server_status=$?
    if [[ $server_status -ne 0 ]]; then
        cat "$tmp"/*.err >&2
        fail "server $pid exited with status $server_status after SIGTERM"
    fi
done
server_pids=()
echo "servers stopped cleanly"

echo "bindings: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
