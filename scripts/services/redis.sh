#!/usr/bin/env bash
# Starts and stops a private redis-server for courier's bridge tests and benchmarks.
#
# The interface every scripts/services/<service>.sh follows (nats.sh, rabbitmq.sh, ...):
#   <script> start  <statedir> [port]  start a server on 127.0.0.1 with its data under
#                                      <statedir>/data, on `port` or else a free port; wait until
#                                      it answers (exit non-zero if it does not in time); write
#                                      the port to <statedir>/port. Idempotent: a running server
#                                      of that statedir is left as it is.
#   <script> stop   <statedir>         stop it and delete <statedir> (data included). Never fails
#                                      when nothing runs (CTest runs it after failures too).
#   <script> pause  <statedir>         stop it, keeping its data and port (a broker restart)
#   <script> resume <statedir>         start it again on the same port with the same data
# Tests find the statedir in COURIER_TEST_<SERVICE>_STATE and the script in
# COURIER_TEST_<SERVICE>_SCRIPT (set by tests/CMakeLists.txt); scripts/bench uses the same calls.
# Never touches a system-wide server (a Debian install may leave one on 6379).
set -euo pipefail

cmd="${1:-}" state="${2:-}"
[ -n "$cmd" ] && [ -n "$state" ] || { echo "usage: $0 start|stop|pause|resume <statedir> [port]" >&2; exit 2; }

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

answers() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

running() { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }

start() {
    local port="${1:-}"
    mkdir -p "$state/data"
    if running && [ -f "$state/port" ] && answers "$(cat "$state/port")"; then return 0; fi
    [ -n "$port" ] || port="$(free_port)"
    # appendonly + everysec: a restart (pause/resume shuts down cleanly, flushing the AOF)
    # keeps every stream, group and pending entry.
    redis-server --bind 127.0.0.1 --port "$port" --dir "$state/data" --daemonize yes \
        --pidfile "$state/pid" --logfile "$state/redis.log" --save "" --appendonly yes \
        --appendfsync everysec --protected-mode yes >/dev/null
    for _ in $(seq 1 200); do
        if answers "$port"; then
            echo "$port" >"$state/port"
            return 0
        fi
        sleep 0.025
    done
    echo "redis.sh: redis-server did not answer on 127.0.0.1:$port within 5 s" >&2
    tail -n 20 "$state/redis.log" >&2 || true
    exit 1
}

halt() {
    running || return 0
    local pid port
    pid="$(cat "$state/pid")"
    port="$(cat "$state/port" 2>/dev/null || true)"
    [ -z "$port" ] || redis-cli -h 127.0.0.1 -p "$port" shutdown >/dev/null 2>&1 || true
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.025
    done
    kill -9 "$pid" 2>/dev/null || true
}

case "$cmd" in
start) start "${3:-}" ;;
stop) halt; rm -rf "$state" ;;
pause) halt ;;
resume) start "$(cat "$state/port")" ;;
*) echo "usage: $0 start|stop|pause|resume <statedir> [port]" >&2; exit 2 ;;
esac
