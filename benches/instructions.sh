#!/usr/bin/env bash
# Server instructions per echo round trip, counted by callgrind.
#
#   bash benches/instructions.sh [SERVERS] [CONNS]
#
# SERVERS: comma-separated echo-benchmark server names (default
# ringloop-proto-uring,ringloop-proto-epoll,ringloop-streams-uring,
# ringloop-streams-epoll,bare-uring,bare-epoll,tokio); CONNS:
# comma-separated connection counts (default 1,100).
#
# Each server runs as the echo benchmark runs it (`echo --serve NAME`),
# under `valgrind --tool=callgrind`; `examples/echo_client` (on epoll, not
# measured) sends 64-byte messages, one at a time per connection (20,000
# round trips at 1 connection, 300 per connection at 100). Counters are
# zeroed after a warm-up of 200 round trips per connection, and the
# figure is user-space instructions (callgrind's Ir) over round trips.
#
# Unlike CPU time on a shared machine this does not move from run to run
# (two runs of the same binary agree within about 1 %), so it shows what
# a change to the loop's own code costs or saves. It does not see the
# kernel, cache misses or waiting: it complements the echo benchmark, it
# does not replace it. Needs valgrind; takes about a minute per server
# and connection count. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/echo_harness.sh

servers=${1:-$ALL_SERVERS}
conns_list=${2:-1,100}

command -v valgrind > /dev/null || {
    echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2
    exit 2
}

build_echo

# One measurement: server $1, $2 connections, $3 round trips each.
measure() {
    local server=$1 conns=$2 count=$3
    local out=$harness_work/cg.out
    rm -f "$out"*
    start_server "$server" valgrind --tool=callgrind --callgrind-out-file="$out"
    "$client" --port "$port" --connections "$conns" --count 200 --backend epoll > /dev/null
    callgrind_control -z "$server_pid" > /dev/null
    "$client" --port "$port" --connections "$conns" --count "$count" --backend epoll > /dev/null
    callgrind_control -d "$server_pid" > /dev/null
    sleep 0.5
    stop_server
    local dump ir
    dump=$(ls -t "$out".* | head -1)
    ir=$(awk '/^summary:/ {print $2; exit}' "$dump")
    echo $((ir / (conns * count)))
}

IFS=, read -r -a server_arr <<< "$servers"
IFS=, read -r -a conns_arr <<< "$conns_list"
header="| server |"
rule="| --- |"
for c in "${conns_arr[@]}"; do
    header+=" $c conn(s) |"
    rule+=" ---: |"
done
echo "$header"
echo "$rule"
for s in "${server_arr[@]}"; do
    row="| $s |"
    for c in "${conns_arr[@]}"; do
        n=$(round_trips "$c")
        # Not in $(...): in this shell, so the exit trap sees its pids.
        measure "$s" "$c" "$n" > "$harness_work/row"
        row+=" $(cat "$harness_work/row") |"
    done
    echo "$row"
done
