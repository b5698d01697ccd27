#!/usr/bin/env bash
# A private nats-server (with JetStream) for courier's NATS bridge tests and benchmarks, on
# 127.0.0.1 only. The interface of every scripts/services/<service>.sh (see redis.sh):
#
#   nats.sh start   STATEDIR [PORT]  start it on PORT or a free port, JetStream store in
#                                    STATEDIR/js; wait until it answers; write the port to
#                                    STATEDIR/port. A running server of STATEDIR is left as it is.
#   nats.sh stop    STATEDIR         stop it and delete STATEDIR (never fails when nothing runs)
#   nats.sh pause   STATEDIR         stop it, keeping its port and JetStream store (a restart)
#   nats.sh resume  STATEDIR         start it again on the same port with the same store
#   nats.sh restart STATEDIR         pause + resume
#   nats.sh status  STATEDIR         exit 0 when the server answers
#
# JetStream stores under STATEDIR/js (`-sd`): without it nats-server uses /tmp/nats and streams
# would survive from one test run to the next. Durable consumers and streams survive pause/resume.
# Files in STATEDIR: port, server.pid, server.log, js/, start_ms.
# COURIER_NATS_START_TIMEOUT (seconds, default 20) bounds the wait for the server to answer.
set -euo pipefail

usage() { echo "usage: $0 start|stop|pause|resume|restart|status STATEDIR [PORT]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd="$1"
state="$2"
want_port="${3:-}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"

log() { echo "nats.sh: $*" >&2; }

NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
if [ ! -x "$NATS_SERVER" ]; then
    # Debian's package; installed here only when missing.
    source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
    courier_ensure_packages nats-server
    NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
fi

# free_port: a TCP port that is free on 127.0.0.1 right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# nats_answers PORT: the server greets a new connection with its INFO line.
nats_answers() (
    line=""
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || exit 1
    IFS= read -r -t 1 line <&3 || true
    [[ "$line" == INFO* ]]
)

port_in_use() { ( { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null ); }

do_stop() {
    [ -f "$state/server.pid" ] || return 0
    local pid
    pid="$(cat "$state/server.pid")"
    rm -f "$state/server.pid"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "nats-server $pid ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

running() { [ -f "$state/server.pid" ] && kill -0 "$(cat "$state/server.pid")" 2>/dev/null; }

do_start() {
    local t0 t1 port
    t0=$(date +%s%N)
    do_stop
    if [ -n "$want_port" ]; then
        echo "$want_port" > "$state/port"
    elif [ ! -f "$state/port" ]; then
        free_port > "$state/port"
    fi
    port="$(cat "$state/port")"
    if port_in_use "$port"; then
        log "port $port recorded in $state is taken by another process"
        return 1
    fi
    mkdir -p "$state/js"
    "$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$state/js" -l "$state/server.log" </dev/null >/dev/null 2>&1 &
    echo $! > "$state/server.pid"
    local deadline=$(( $(date +%s) + ${COURIER_NATS_START_TIMEOUT:-20} ))
    until nats_answers "$port"; do
        if ! kill -0 "$(cat "$state/server.pid")" 2>/dev/null; then
            log "nats-server exited during start; last lines of its log:"
            tail -n 20 "$state/server.log" >&2 || true
            return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "nats-server did not answer on 127.0.0.1:$port within ${COURIER_NATS_START_TIMEOUT:-20} s"
            return 1
        fi
        sleep 0.02
    done
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 )) > "$state/start_ms"
    log "nats-server answers on 127.0.0.1:$port after $(cat "$state/start_ms") ms (JetStream store $state/js)"
}

start_or_fail() {
    # On any failure, nothing is left running.
    if ! do_start; then
        do_stop || true
        exit 1
    fi
}

case "$cmd" in
    start)
        if running && nats_answers "$(cat "$state/port")"; then exit 0; fi
        start_or_fail
        ;;
    resume|restart) start_or_fail ;;
    pause) do_stop ;;
    stop)
        do_stop
        rm -rf "$state"
        ;;
    status) [ -f "$state/port" ] && nats_answers "$(cat "$state/port")" ;;
    *) usage ;;
esac
