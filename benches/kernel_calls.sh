#!/usr/bin/env bash
# Server system calls and io_uring events per echo round trip, counted
# by the kernel's tracepoints (perf stat).
#
#   bash benches/kernel_calls.sh [SERVERS] [CONNS]
#
# SERVERS: comma-separated echo-benchmark server names (default
# ringloop-proto-uring,ringloop-proto-epoll,ringloop-streams-uring,
# ringloop-streams-epoll,bare-uring,bare-epoll,tokio); CONNS:
# comma-separated connection counts (default 1,100).
#
# Each server runs as the echo benchmark runs it (`echo --serve NAME
# --cpu 0`); `examples/echo_client` (on epoll, pinned to CPU 1, not
# counted) sends 64-byte messages, one at a time per connection (20,000
# round trips at 1 connection, 300 per connection otherwise), after a
# warm-up of 200 per connection. `perf stat -p` counts, in the server
# process only: every system call (`raw_syscalls:sys_enter`), the wait
# calls (`io_uring_enter`, `epoll_wait`), the submissions and completions
# of io_uring requests, and the internal poll arms of requests that found
# their socket not ready. Each count is divided by the round trips.
#
# Where instructions.sh counts the loop's own code, this counts its
# crossings into the kernel, which carry most of a round trip's CPU
# time: it shows whether a server asks the kernel for more than it must.
# Counts are exact, not timed, so they do not move with the host's load.
# Needs perf and root (or perf_event_paranoid <= -1) for the
# tracepoints; about 5 s per server and connection count.
# See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/echo_harness.sh

servers=${1:-$ALL_SERVERS}
conns_list=${2:-1,100}

command -v perf > /dev/null || {
    echo "kernel_calls.sh: needs perf (linux-tools)" >&2
    exit 2
}

events=raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait
events+=,io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_poll_arm
perf stat -x, -e "$events" true > /dev/null 2>&1 || {
    echo "kernel_calls.sh: perf cannot count the tracepoints $events (not root?)" >&2
    exit 2
}

perf_pid=""
stop_perf() {
    [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2> /dev/null || true
}
harness_cleanup=stop_perf
build_echo

# One measurement: server $1, $2 connections, $3 round trips each.
# Prints "syscalls waits submitted completed poll-arms", each per round trip.
measure() {
    local server=$1 conns=$2 count=$3
    rm -f "$harness_work/perf"
    start_server "$server"
    "$client" --port "$port" --connections "$conns" --count 200 --backend epoll > /dev/null
    perf stat -x, -p "$server_pid" -e "$events" -o "$harness_work/perf" &
    perf_pid=$!
    # perf attaches asynchronously; give it time before the counted load.
    sleep 0.5
    taskset -c 1 "$client" --port "$port" --connections "$conns" --count "$count" --backend epoll > /dev/null
    kill -INT "$perf_pid"
    wait "$perf_pid" 2> /dev/null || true
    perf_pid=""
    stop_server
    awk -F, -v rt=$((conns * count)) '
        $1 ~ /^[0-9]+$/ { n[$3] = $1 }
        END {
            printf "%.2f %.2f %.2f %.2f %.2f\n",
                n["raw_syscalls:sys_enter"] / rt,
                (n["syscalls:sys_enter_io_uring_enter"] + n["syscalls:sys_enter_epoll_wait"]) / rt,
                n["io_uring:io_uring_submit_req"] / rt,
                n["io_uring:io_uring_complete"] / rt,
                n["io_uring:io_uring_poll_arm"] / rt
        }' "$harness_work/perf"
}

IFS=, read -r -a server_arr <<< "$servers"
IFS=, read -r -a conns_arr <<< "$conns_list"
echo "| server | conns | system calls | of them waits | io_uring SQEs | io_uring CQEs | poll arms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for s in "${server_arr[@]}"; do
    for c in "${conns_arr[@]}"; do
        n=$(round_trips "$c")
        # Not in $(...): in this shell, so the exit trap sees its pids.
        measure "$s" "$c" "$n" > "$harness_work/row"
        read -r sc waits sqes cqes arms < "$harness_work/row"
        echo "| $s | $c | $sc | $waits | $sqes | $cqes | $arms |"
    done
done
