#!/usr/bin/env bash
# Where an echo server's CPU goes under pipelined load: a flat profile
# (perf record) of the server process, kernel and user space together.
#
#   bash benches/kernel_profile.sh [SERVERS] [SIZE] [CONNS] [LINES]
#
# SERVERS: comma-separated echo-benchmark server names (default
# ringloop-proto-uring,ringloop-proto-epoll,bare-uring,bare-epoll,tokio);
# SIZE: message size in bytes (default 16384); CONNS: connections
# (default 100); LINES: profile lines shown per server (default 12).
#
# Per server, the echo benchmark runs that one cell alone (`echo
# --servers NAME --sizes SIZE --conns CONNS --runs 1 --secs 6 --idle 0`:
# its first phase is the pipelined one, 6.3 s), and `perf record -F 5000`
# samples the server process (a child of that benchmark, found by its
# parent's pid) from 1.5 s to 4.5 s into it. Printed: the pipelined row
# of that run (round trips/s, server and client CPU load) and the
# symbols with the largest share of the server's samples.
#
# It answers "what does this server do that the other does not" where
# the CPU time alone only says "more": the share of `_copy_from_iter`
# (a send's copy) showed that proto-epoll sent buffers received an
# iteration earlier, out of cache (docs/benchmarks.md, "Where ringloop
# loses"). Shares move by a point or two between runs; compare servers,
# or binaries, alternated in one session. Needs perf and root (or
# perf_event_paranoid <= 1); about 10 s per server.
set -euo pipefail
cd "$(dirname "$0")/.."

servers=${1:-ringloop-proto-uring,ringloop-proto-epoll,bare-uring,bare-epoll,tokio}
size=${2:-16384}
conns=${3:-100}
lines=${4:-12}

command -v perf > /dev/null || {
    echo "kernel_profile.sh: needs perf (linux-tools)" >&2
    exit 2
}

echo "building the echo benchmark (release)..." >&2
bench=$(cargo bench -p ringloop-benches --bench echo --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
[ -x "$bench" ] || { echo "$0: echo benchmark binary not found" >&2; exit 1; }
case $bench in /*) ;; *) bench=$PWD/$bench ;; esac

work=$(mktemp -d)
bench_pid=""
cleanup() {
    # Only what this script started: the benchmark (it ends its servers).
    if [ -n "$bench_pid" ]; then
        kill "$bench_pid" 2> /dev/null || true
        wait "$bench_pid" 2> /dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

IFS=, read -r -a server_arr <<< "$servers"
for s in "${server_arr[@]}"; do
    (cd benches && exec "$bench" --servers "$s" --sizes "$size" --conns "$conns" \
        --runs 1 --secs 6 --warmup 0.3 --idle 0) > "$work/out" 2>&1 &
    bench_pid=$!
    pid=""
    for _ in $(seq 1 100); do
        pid=$(pgrep -P "$bench_pid" -f -- "--serve $s" | head -1 || true)
        [ -n "$pid" ] && break
        sleep 0.1
    done
    [ -n "$pid" ] || { echo "$0: no server process for $s" >&2; cat "$work/out" >&2; exit 1; }
    sleep 1.5
    perf record -q -F 5000 -o "$work/perf.data" -p "$pid" -- sleep 3 > /dev/null 2>&1
    wait "$bench_pid" || { echo "$0: the benchmark failed for $s" >&2; cat "$work/out" >&2; exit 1; }
    bench_pid=""
    echo "== $s, $size B x $conns connections, pipelined"
    awk '/^### Pipelined round trips/ { p = 1; next } /^###/ { p = 0 } p && /^\| [0-9]/' "$work/out"
    perf report -i "$work/perf.data" --no-children --sort sym 2> /dev/null |
        grep -v '^#' | grep -v '^$' | head -"$lines" || true # head ends the pipe early
done
