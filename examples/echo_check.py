#!/usr/bin/env python3
"""Checks an echo server (e.g. `cargo run --example sock_echo`) with many
concurrent clients.

Each client connects, sends a random payload (0 to --max-bytes bytes, in
random-sized chunks), half-closes its side (shutdown(SHUT_WR)), reads until
the server closes, and checks that it got back exactly what it sent. The
clients run concurrently in threads; the whole check is bounded by
--timeout seconds.

usage: python3 examples/echo_check.py HOST PORT [--clients N] [--max-bytes B]
                                      [--timeout SECONDS]

Exits 0 when every client got its payload back intact, 1 with a message
per failure otherwise, 2 on bad arguments.
"""

import argparse
import os
import random
import socket
import sys
import threading
import time


def run_client(host, port, payload, deadline):
    """Sends `payload`, half-closes, reads everything back. Returns an
    error message, or None when the echo is identical."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return "timed out before connecting"
    try:
        with socket.create_connection((host, port), timeout=remaining) as sock:
            received = bytearray()
            read_error = []

            # Read while writing, so a large payload cannot deadlock with
            # both sides' buffers full.
            def reader():
                try:
                    while chunk := sock.recv(65536):
                        received.extend(chunk)
                except OSError as e:
                    read_error.append(e)

            t = threading.Thread(target=reader, daemon=True)
            t.start()
            view = memoryview(payload)
            while view:
                n = random.randint(1, 64 * 1024)
                sock.sendall(view[:n])
                view = view[n:]
            sock.shutdown(socket.SHUT_WR)
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                return f"timed out reading: got {len(received)} of {len(payload)} bytes"
            if read_error:
                return f"read failed: {read_error[0]!r}"
    except OSError as e:
        return f"{e!r}"
    if bytes(received) != payload:
        first_diff = next(
            (i for i, (a, b) in enumerate(zip(received, payload)) if a != b),
            min(len(received), len(payload)),
        )
        return (
            f"echo differs: sent {len(payload)} bytes, got {len(received)}, "
            f"first difference at byte {first_diff}"
        )
    return None


def main():
    parser = argparse.ArgumentParser(
        description="Check an echo server with concurrent clients."
    )
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--max-bytes", type=int, default=256 * 1024)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    if args.clients < 1 or args.max_bytes < 0 or args.timeout <= 0:
        parser.error("--clients must be >= 1, --max-bytes >= 0, --timeout > 0")

    deadline = time.monotonic() + args.timeout
    payloads = [
        os.urandom(random.randint(0, args.max_bytes)) for _ in range(args.clients)
    ]
    # A worker that dies of an unexpected exception leaves this in place.
    results = ["did not finish"] * args.clients

    def worker(i):
        results[i] = run_client(args.host, args.port, payloads[i], deadline)

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True)
        for i in range(args.clients)
    ]
    for t in threads:
        t.start()
    for i, t in enumerate(threads):
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            results[i] = "timed out"

    failures = [(i, r) for i, r in enumerate(results) if r is not None]
    for i, r in failures:
        print(f"client {i}: {r}", file=sys.stderr)
    total = sum(len(p) for p in payloads)
    if failures:
        print(
            f"FAILED: {len(failures)} of {args.clients} clients", file=sys.stderr
        )
        return 1
    print(f"ok: {args.clients} clients, {total} bytes echoed intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
