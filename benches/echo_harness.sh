# Shared by instructions.sh and kernel_calls.sh (sourced, not run): builds
# the echo benchmark and examples/echo_client, and starts and stops one
# echo server process as the benchmark runs it (`echo --serve NAME
# --cpu 0`). The caller has `cd`ed to the repository root and set `-eu`.

# Every echo-benchmark server, the scripts' default list.
ALL_SERVERS=ringloop-proto-uring,ringloop-proto-epoll,ringloop-streams-uring,ringloop-streams-epoll,bare-uring,bare-epoll,tokio

# round_trips CONNS: round trips per connection measured at CONNS
# connections (20,000 at one, 300 each otherwise: a few seconds each).
round_trips() {
    if [ "$1" -eq 1 ]; then echo 20000; else echo 300; fi
}

# Builds both binaries; sets `bench` and `client` to their paths.
build_echo() {
    echo "building the echo benchmark and examples/echo_client (release)..." >&2
    bench=$(cargo bench -p ringloop-benches --bench echo --no-run 2>&1 |
        sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
    cargo build --quiet --release --example echo_client
    client=target/release/examples/echo_client
    [ -x "$bench" ] || { echo "$0: echo benchmark binary not found" >&2; exit 1; }
    harness_work=$(mktemp -d)
    server_pid=""
    holder_pid=""
    trap stop_server_and_clean EXIT
}

# start_server NAME [WRAPPER...]: starts server NAME, under WRAPPER if
# given (e.g. valgrind ...); sets `server_pid` and `port` once it listens.
start_server() {
    local name=$1
    shift
    local fifo=$harness_work/stdin
    rm -f "$fifo"
    mkfifo "$fifo"
    # The server exits when its stdin closes; keep it open meanwhile.
    sleep 3600 > "$fifo" &
    holder_pid=$!
    "$@" "$bench" --serve "$name" --cpu 0 < "$fifo" \
        > "$harness_work/stdout" 2> "$harness_work/stderr" &
    server_pid=$!
    port=""
    for _ in $(seq 1 300); do
        port=$(awk '/^ready/ {print $2}' "$harness_work/stdout" 2> /dev/null)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || {
        echo "$0: $name did not start" >&2
        cat "$harness_work/stderr" >&2
        exit 1
    }
}

# Ends the server and its stdin holder, by pid (only what we started).
stop_server() {
    if [ -n "$server_pid" ]; then
        kill -9 "$server_pid" 2> /dev/null || true
        wait "$server_pid" 2> /dev/null || true
        server_pid=""
    fi
    if [ -n "$holder_pid" ]; then
        kill "$holder_pid" 2> /dev/null || true
        wait "$holder_pid" 2> /dev/null || true
        holder_pid=""
    fi
}

stop_server_and_clean() {
    [ -n "${harness_cleanup:-}" ] && "$harness_cleanup"
    stop_server
    rm -rf "$harness_work"
}
