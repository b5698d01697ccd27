#!/usr/bin/env bash
# A private rabbitmq-server for courier's AMQP bridge tests, on 127.0.0.1 only.
#
#   scripts/services/rabbitmq.sh start   STATEDIR   starts it; writes the AMQP port to STATEDIR/port
#   scripts/services/rabbitmq.sh stop    STATEDIR   stops it (also whatever is left of a failed start)
#   scripts/services/rabbitmq.sh restart STATEDIR   stop + start: same ports, same data (durable queues survive)
#   scripts/services/rabbitmq.sh status  STATEDIR   exit 0 when the broker answers AMQP
#
# Everything lives under STATEDIR: its own epmd on a chosen port, node name, mnesia, logs, config,
# enabled plugins, Erlang cookie (HOME). The /usr/sbin wrappers switch to the rabbitmq user, so the
# scripts in /usr/lib/rabbitmq/bin are called directly. A `start` after a `stop` reuses the ports
# recorded in STATEDIR, which is how a test restarts "the same broker".
#
# Files in STATEDIR: port (AMQP), management_port (HTTP API for rabbitmqadmin, when enabled),
# dist_port, epmd_port, nodename, server.pid / epmd.pid (process group leaders we started),
# console.log (the server's stdout/stderr), log/ (RabbitMQ's own log), start_ms (measured start time).
#
# COURIER_RABBITMQ_MANAGEMENT=0 skips the management plugin (no rabbitmqadmin; `stop` takes ~2.5 s
# instead of ~10 s: the management agent waits 5 s twice while it shuts down).
# COURIER_RABBITMQ_START_TIMEOUT (seconds, default 100) bounds the wait for the broker to answer:
# it boots in 12-20 s on two busy cores, and took 58 s once at a load average of 19.
set -euo pipefail

RABBITMQ_BIN=/usr/lib/rabbitmq/bin
if [ ! -x "$RABBITMQ_BIN/rabbitmq-server" ]; then
    # Debian's package; installed here only when missing.
    source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
    courier_ensure_packages rabbitmq-server
fi

usage() { echo "usage: $0 start|stop|restart|status STATEDIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd="$1"
state="$2"
mkdir -p "$state"
state="$(cd "$state" && pwd)"

log() { echo "rabbitmq.sh: $*" >&2; }

# free_ports N: N distinct TCP ports, free on 127.0.0.1 right now, below the kernel's ephemeral
# range (so an outgoing connection cannot take one between a stop and a restart) and below 55535
# (rabbitmqctl listens on the distribution port + 10000).
free_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
socks, tries = [], 0
while len(socks) < int(sys.argv[1]):
    tries += 1
    if tries > 1000:
        sys.exit("no free ports in 20000-32000")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", random.randint(20000, 32000)))
        socks.append(s)
    except OSError:
        s.close()
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# port_in_use PORT: something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# amqp_answers PORT: the broker sends connection.start to the AMQP 0-9-1 protocol header.
amqp_answers() {
    python3 - "$1" <<'EOF'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    frame = s.recv(7)
    s.close()
    # method frame (type 1) on channel 0: connection.start
    sys.exit(0 if len(frame) == 7 and frame[0] == 1 else 1)
except OSError:
    sys.exit(1)
EOF
}

# stop_system_rabbitmq: installing Debian's rabbitmq-server may start the system broker (as the
# `rabbitmq` user, on 5672, with the system epmd on 4369). Ours does not need those ports, but a
# second broker eats a CI machine's memory and CPU: stop it, and only it (processes of the
# `rabbitmq` user; ours run as the caller).
stop_system_rabbitmq() {
    [ "$(id -un)" != rabbitmq ] || return 0
    id rabbitmq >/dev/null 2>&1 || return 0
    pgrep -u rabbitmq -f beam.smp >/dev/null 2>&1 || return 0
    log "a system rabbitmq-server (user rabbitmq) is running, probably started by the package install; stopping it"
    if command -v invoke-rc.d >/dev/null 2>&1; then invoke-rc.d rabbitmq-server stop >/dev/null 2>&1 || true; fi
    pkill -TERM -u rabbitmq -f beam.smp 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        pgrep -u rabbitmq -f beam.smp >/dev/null 2>&1 || break
        sleep 0.1
    done
    pkill -KILL -u rabbitmq -f beam.smp 2>/dev/null || true
    pkill -TERM -u rabbitmq -x epmd 2>/dev/null || true
}

# setup_env: every RabbitMQ/Erlang location and port pointed into STATEDIR.
setup_env() {
    amqp_port="$(cat "$state/port")"
    dist_port="$(cat "$state/dist_port")"
    epmd_port="$(cat "$state/epmd_port")"
    mgmt_port="$(cat "$state/management_port" 2>/dev/null || true)"
    nodename="$(cat "$state/nodename")"
    export HOME="$state/home"
    export RABBITMQ_CONF_ENV_FILE="$state/rabbitmq-env.conf"
    export RABBITMQ_NODENAME="$nodename"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$amqp_port"
    export RABBITMQ_DIST_PORT="$dist_port"
    export RABBITMQ_MNESIA_BASE="$state/mnesia"
    export RABBITMQ_LOG_BASE="$state/log"
    export RABBITMQ_CONFIG_FILE="$state/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$state/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$state/enabled_plugins"
    export RABBITMQ_PLUGINS_EXPAND_DIR="$state/plugins-expand"
    export RABBITMQ_PID_FILE="$state/rabbitmq.pid"
    # Erlang distribution on loopback too (RABBITMQ_DIST_PORT alone binds every interface).
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export ERL_EPMD_PORT="$epmd_port"
    # Erlang's CLI tools must not write a crash dump into the working directory.
    export ERL_CRASH_DUMP="$state/erl_crash.dump"
    unset RABBITMQ_ENV_LOADED RABBITMQ_SCRIPTS_DIR
}

# first_start: choose ports and write the configuration (only when STATEDIR has none yet).
first_start() {
    local ports mgmt=""
    if [ "${COURIER_RABBITMQ_MANAGEMENT:-1}" = 1 ]; then
        ports=($(free_ports 4))
        mgmt="${ports[3]}"
    else
        ports=($(free_ports 3))
    fi
    mkdir -p "$state/home" "$state/mnesia" "$state/log"
    echo "${ports[1]}" > "$state/dist_port"
    echo "${ports[2]}" > "$state/epmd_port"
    echo "courier-${ports[0]}@localhost" > "$state/nodename"
    : > "$state/rabbitmq-env.conf"
    echo "[]." > "$state/advanced.config"
    {
        echo "# courier test broker: loopback only, small limits, no disk alarm on a busy CI disk"
        echo "loopback_users = none"
        echo "disk_free_limit.absolute = 1MB"
        echo "vm_memory_high_watermark.relative = 0.6"
        echo "log.file.level = info"
        echo "log.console = false"
        # Below RabbitMQ's 128 MiB default, so the adapter's size check and the broker's agree in tests.
        echo "max_message_size = 16777216"
        echo "collect_statistics_interval = 1000"
        if [ -n "$mgmt" ]; then
            echo "management.tcp.ip = 127.0.0.1"
            echo "management.tcp.port = $mgmt"
        fi
    } > "$state/rabbitmq.conf"
    if [ -n "$mgmt" ]; then
        echo "[rabbitmq_management]." > "$state/enabled_plugins"
        echo "$mgmt" > "$state/management_port"
    else
        echo "[]." > "$state/enabled_plugins"
        rm -f "$state/management_port"
    fi
    # Written last: its presence means the state folder is complete.
    echo "${ports[0]}" > "$state/port"
}

# kill_group PIDFILE: TERM, then KILL after a grace period, the process group we started.
kill_group() {
    local file="$1" pid
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    rm -f "$file"
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "process group $pid ignored SIGTERM; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || true
}

# stop_server: RabbitMQ stops gracefully on SIGTERM (its prelaunch signal handler runs the same
# shutdown as `rabbitmqctl stop`, without booting a CLI VM first: ~1 s instead of ~10 s here).
# `rabbitmqctl stop` is the fallback when the signal is not enough.
stop_server() {
    local file="$state/server.pid" pid i
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "rabbitmq-server ignored SIGTERM for 15 s; trying rabbitmqctl stop"
            timeout 20 "$RABBITMQ_BIN/rabbitmqctl" -n "$nodename" stop >>"$state/ctl.log" 2>&1 || true
        fi
    fi
    kill_group "$file"
}

do_stop() {
    [ -f "$state/port" ] || return 0
    setup_env
    stop_server
    if [ -f "$state/epmd.pid" ]; then
        epmd -port "$epmd_port" -kill >/dev/null 2>&1 || true
        kill_group "$state/epmd.pid"
    fi
}

do_start() {
    local t0 t1
    t0=$(date +%s%N)
    # A stale server from an earlier run in this folder is stopped first.
    do_stop
    stop_system_rabbitmq
    [ -f "$state/port" ] || first_start
    setup_env
    if port_in_use "$amqp_port" || port_in_use "$epmd_port" || port_in_use "$dist_port"; then
        log "a port recorded in $state is taken by another process (amqp $amqp_port, epmd $epmd_port, dist $dist_port)"
        return 1
    fi
    # Our own epmd, loopback only, in its own process group (no -daemon: we keep its pid).
    setsid epmd -address 127.0.0.1 -port "$epmd_port" </dev/null >"$state/epmd.log" 2>&1 &
    echo $! > "$state/epmd.pid"
    setsid "$RABBITMQ_BIN/rabbitmq-server" </dev/null >>"$state/console.log" 2>&1 &
    echo $! > "$state/server.pid"
    local deadline=$(( $(date +%s) + ${COURIER_RABBITMQ_START_TIMEOUT:-100} ))
    until amqp_answers "$amqp_port"; do
        if ! kill -0 "$(cat "$state/server.pid")" 2>/dev/null; then
            log "rabbitmq-server exited during start; last lines of its console:"
            tail -n 30 "$state/console.log" >&2 || true
            return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "rabbitmq-server did not answer on 127.0.0.1:$amqp_port within ${COURIER_RABBITMQ_START_TIMEOUT:-100} s"
            tail -n 30 "$state/console.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    if [ -n "$mgmt_port" ]; then
        until port_in_use "$mgmt_port"; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                log "the management plugin did not listen on 127.0.0.1:$mgmt_port in time"
                return 1
            fi
            sleep 0.1
        done
    fi
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 )) > "$state/start_ms"
    log "rabbitmq-server $nodename answers on 127.0.0.1:$amqp_port after $(cat "$state/start_ms") ms"
}

case "$cmd" in
    start)
        # On any failure, nothing is left running.
        if ! do_start; then
            do_stop || true
            exit 1
        fi
        ;;
    stop) do_stop ;;
    restart)
        do_stop
        if ! do_start; then
            do_stop || true
            exit 1
        fi
        ;;
    status) [ -f "$state/port" ] && amqp_answers "$(cat "$state/port")" ;;
    *) usage ;;
esac
