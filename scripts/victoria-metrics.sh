#!/usr/bin/env bash
# Debian's VictoriaMetrics (package victoria-metrics) for development and CI. It accepts InfluxDB
# line protocol on /write and /api/v2/write, so it stands in for an InfluxDB 2.x write endpoint.
#
#   scripts/victoria-metrics.sh start    start it, wait until /health answers
#   scripts/victoria-metrics.sh stop     SIGTERM, wait, then SIGKILL
#   scripts/victoria-metrics.sh status   exit 0 when http://127.0.0.1:8428/health answers
#
# Data in .services/victoria-metrics/data (STOCKUP_SERVICES_DIR moves .services), log in
# .services/victoria-metrics/victoria-metrics.log. VM_PORT moves the port.
# -search.latencyOffset=0s: a point is visible to /api/v1/query as soon as it is stored (about a
# second after the write) instead of 30 s later, which tests need.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES_DIR="${STOCKUP_SERVICES_DIR:-$ROOT/.services}"
DIR="$SERVICES_DIR/victoria-metrics"
LOG="$DIR/victoria-metrics.log"
PIDFILE="$DIR/victoria-metrics.pid"
HOST=127.0.0.1
PORT="${VM_PORT:-8428}"
URL="http://$HOST:$PORT"
START_TIMEOUT="${VM_START_TIMEOUT:-60}"
STOP_TIMEOUT="${VM_STOP_TIMEOUT:-30}"
PYTHON="${PYTHON:-python3}"

say() { printf 'victoria-metrics: %s\n' "$*"; }
die() { printf 'victoria-metrics: %s\n' "$*" >&2; exit 1; }

# True while process $1 runs; a zombie (exited, not yet reaped by its parent) counts as gone.
running() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
    [[ -n "$state" && "$state" != Z ]]
}

pid_alive() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && running "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q victoria-metrics
}

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Exit 0 when GET /health answers 200 "OK".
healthy() {
    "$PYTHON" - "$URL/health" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if response.status == 200 and response.read().strip() == b"OK" else 1)
PY
}

# Serializes start and stop of this server (several shells, or tests, may call them at once).
take_lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w "$((START_TIMEOUT + 30))" 9 || die "another start or stop is still running (lock: $DIR/.lock)"
}

start() {
    local pid deadline
    take_lock
    if pid_alive && healthy; then
        say "already running (pid $(cat "$PIDFILE")) on $URL"
        return 0
    fi
    if ! pid_alive; then
        rm -f "$PIDFILE"
        if healthy; then
            say "a victoria-metrics already answers on $URL (not started by this script); using it"
            return 0
        fi
        if port_open "$PORT"; then
            die "$HOST:$PORT is in use by another program; stop it first"
        fi
        command -v victoria-metrics >/dev/null ||
            die "victoria-metrics is not installed (apt-get install victoria-metrics)"
        mkdir -p "$DIR/data"
        say "starting; log: $LOG"
        # setsid: the server outlives the shell that started it and gets none of its signals.
        setsid victoria-metrics -storageDataPath="$DIR/data" -httpListenAddr="$HOST:$PORT" \
            -retentionPeriod=7d -search.latencyOffset=0s -loggerLevel=INFO \
            </dev/null >>"$LOG" 2>&1 9>&- &
        printf '%s\n' "$!" >"$PIDFILE"
    fi
    pid="$(cat "$PIDFILE")"
    deadline=$((SECONDS + START_TIMEOUT))
    until healthy; do
        if ! running "$pid"; then
            rm -f "$PIDFILE"
            tail -n 20 "$LOG" >&2 || true
            die "victoria-metrics exited during start-up; see $LOG"
        fi
        if ((SECONDS >= deadline)); then
            die "victoria-metrics did not answer on $URL/health within $START_TIMEOUT s; see $LOG (still running as pid $pid)"
        fi
        sleep 0.5
    done
    say "up on $URL (pid $pid)"
}

stop() {
    local pid deadline
    take_lock
    if ! pid_alive; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    pid="$(cat "$PIDFILE")"
    say "stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while running "$pid"; do
        if ((SECONDS >= deadline)); then
            say "still running after $STOP_TIMEOUT s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
    rm -f "$PIDFILE"
    say "stopped"
}

status() {
    if healthy; then
        if pid_alive; then
            say "up on $URL (pid $(cat "$PIDFILE"))"
        else
            say "a victoria-metrics answers on $URL, but not one this script started"
        fi
        return 0
    fi
    if pid_alive; then
        say "running (pid $(cat "$PIDFILE")) but $URL/health does not answer; see $LOG"
    else
        say "down"
    fi
    return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
    ;;
esac
