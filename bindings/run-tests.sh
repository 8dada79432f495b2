#!/usr/bin/env bash
# Builds and runs the C and C++ bindings tests against the already built
# library (target/debug/libringmq.so) and server (target/debug/ringmq):
#   - bindings/c/embedded.c  embedded broker from C, under valgrind
#   - bindings/c/client.c    a server over TCP from C, under valgrind
#   - bindings/c/groups.c    consumer groups, share groups and group descriptions
#                            from C on an embedded broker, under valgrind
#   - bindings/cpp/test.cpp  the C++ wrapper, embedded and against the server, under valgrind
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
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
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

# --- server ----------------------------------------------------------------------
# The bootstrap user lets the programs check credentials (authentication is
# off, so connections without them are trusted; credentials given are checked).
RINGMQ_BOOTSTRAP_USER=bindings:bindings-pw \
"$server" serve --listen 127.0.0.1:0 --kafka-listen off --shards 2 --data-dir "$tmp/server-data" \
    >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
address=
for _ in $(seq 100); do
    if [[ -s $tmp/server.out ]]; then
        line=$(head -n 1 "$tmp/server.out")
        if [[ $line =~ ^ringmq\ listening\ on\ ([^ ]+)\ \( ]]; then
            address=${BASH_REMATCH[1]}
            break
        fi
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $address ]]; then
    cat "$tmp/server.out" "$tmp/server.err" >&2 || true
    fail "the server did not report its address"
fi
echo "server listening on $address (pid $server_pid)"

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
run c-client "${valgrind[@]}" "$out/client" "$address"
run c-groups "${valgrind[@]}" "$out/groups" "$tmp/groups-data"
run cpp-test "${valgrind[@]}" "$out/cpp-test" "$address"

# --- stop the server: SIGTERM, a clean exit --------------------------------------
kill -TERM "$server_pid"
for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
    cat "$tmp/server.err" >&2
    fail "the server did not stop within 10 s of SIGTERM"
fi
server_status=0
wait "$server_pid" || server_status=$?
server_pid=
if [[ $server_status -ne 0 ]]; then
    cat "$tmp/server.err" >&2
    fail "the server exited with status $server_status after SIGTERM"
fi
echo "server stopped cleanly"

echo "bindings: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
