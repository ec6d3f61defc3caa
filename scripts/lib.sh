# shellcheck shell=bash
# Shared by scripts/kafka.sh, rabbitmq.sh, influxdb.sh and victoria-metrics.sh: sourced, never run.
# It only defines functions; the sourcing script sets `set -euo pipefail` and these variables:
#
#   SERVICE          the name every message starts with ("kafka: up on ...")
#   HOST             the address the server listens on (port_open)
#   START_TIMEOUT    seconds a start may take (the lock waits this plus 30 s)
#
# A server the script starts itself and tracks with a pid file (kafka, influxdb, victoria-metrics:
# the pidfile_* functions) also sets
#
#   DIR              its directory under .services (the lock lives there)
#   PIDFILE, LOG     its pid file and its log
#   STOP_TIMEOUT     seconds between SIGTERM and SIGKILL
#   POLL_INTERVAL    seconds between two readiness checks while it starts
#   CMDLINE_PATTERN  a grep pattern its command line matches (a reused pid is not the server)
#   LOGS             array: the logs shown (tail) and named when it exits during start-up, LOG first
#   the words of its messages:
#   WHERE            where it answers        "up on $WHERE (pid N)"
#   FOREIGN          one it did not start    "$FOREIGN answers on $WHERE, but not one this script started"
#   EXITED           what exits              "$EXITED exited during start-up; see ..."
#   NO_ANSWER        the start-up timeout    "$NO_ANSWER within N s; see $LOG (still running as pid N)"
#   NOT_ANSWERING    a live pid, no answer   "running (pid N) but $NOT_ANSWERING; see $LOG"
#
# and defines two functions:
#
#   server_answers   exit 0 when the server answers (its readiness check)
#   server_launch    check what a launch needs, prepare, say "starting ...", then `spawn` the server
#
# shellcheck disable=SC2154  # the variables above are set by the sourcing script

# Prints a status message on stdout.
say() { printf '%s: %s\n' "$SERVICE" "$*"; }

# Prints an error message on stderr and exits 1.
die() {
    printf '%s: %s\n' "$SERVICE" "$*" >&2
    exit 1
}

# The command line: runs the function "$1<action>" when the action ($3) is one of the words in $2,
# else prints the usage line and exits 2. The script's exit status is the action's.
dispatch() {
    local prefix="$1" actions="$2" action="${3:-}"
    if [[ -z "$action" || " $actions " != *" $action "* ]]; then
        echo "usage: $0 {${actions// /|}}" >&2
        exit 2
    fi
    "$prefix$action"
}

# Serializes start and stop of one server (several shells, or tests, may call them at once): holds
# an flock on $1/.lock through fd 9 until the script exits (whatever it starts must close fd 9).
take_lock() {
    mkdir -p "$1"
    exec 9>"$1/.lock"
    flock -w "$((START_TIMEOUT + 30))" 9 || die "another start or stop is still running (lock: $1/.lock)"
}

# True when something accepts TCP connections on $HOST:$1.
port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# True while process $1 runs; a zombie (exited, not yet reaped by its parent) counts as gone.
running() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
    [[ -n "$state" && "$state" != Z ]]
}

# Runs the command "${@:4}" every $2 s until it succeeds (returns 0). Returns 1 once $1 s have
# passed, or 2 as soon as process $3 has exited (no process to watch when $3 is empty).
poll_until() {
    local deadline=$((SECONDS + $1)) interval="$2" pid="$3"
    shift 3
    until "$@"; do
        if [[ -n "$pid" ]] && ! running "$pid"; then
            return 2
        fi
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep "$interval"
    done
}

# SIGTERM to process $1, then SIGKILL if it still runs after $2 s.
terminate() {
    local pid="$1" timeout="$2" deadline
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while running "$pid"; do
        if ((SECONDS >= deadline)); then
            say "still running after $timeout s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
}

# --- servers tracked with a pid file ------------------------------------------------------------

# True when PIDFILE names a running process whose command line matches CMDLINE_PATTERN (the pid
# may have been reused by another program after a reboot).
pid_alive() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && running "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$CMDLINE_PATTERN"
}

# Starts "${@:2}" in the background in a session of its own (it outlives the shell that started it
# and gets none of its signals), stdin from /dev/null, stdout and stderr appended to $1, the lock's
# fd 9 closed; writes its pid to PIDFILE.
spawn() {
    local out="$1"
    shift
    setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
    printf '%s\n' "$!" >"$PIDFILE"
}

# `start`: nothing to do when our server answers, or a foreign one does (used as is); else
# server_launch (unless our process is still starting), then wait until it answers.
pidfile_start() {
    take_lock "$DIR"
    if pid_alive && server_answers; then
        say "already running (pid $(cat "$PIDFILE")) on $WHERE"
        return 0
    fi
    if ! pid_alive; then
        rm -f "$PIDFILE"
        if server_answers; then
            say "$FOREIGN already answers on $WHERE (not started by this script); using it"
            return 0
        fi
        server_launch
    fi
    wait_until_answers
}

# Waits until server_answers. Dies (with the tail of LOGS) when the process exits first, and when
# START_TIMEOUT s pass (the process is left running).
wait_until_answers() {
    local pid rc=0 see log
    pid="$(cat "$PIDFILE")"
    poll_until "$START_TIMEOUT" "$POLL_INTERVAL" "$pid" server_answers || rc=$?
    if ((rc == 2)); then
        rm -f "$PIDFILE"
        tail -n 20 "${LOGS[@]}" >&2 2>/dev/null || true
        see="${LOGS[0]}"
        for log in "${LOGS[@]:1}"; do see+=" and $log"; done
        die "$EXITED exited during start-up; see $see"
    elif ((rc != 0)); then
        die "$NO_ANSWER within $START_TIMEOUT s; see $LOG (still running as pid $pid)"
    fi
    say "up on $WHERE (pid $pid)"
}

# `stop`: SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL; removes the pid file.
pidfile_stop() {
    local pid
    take_lock "$DIR"
    if ! pid_alive; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    pid="$(cat "$PIDFILE")"
    say "stopping (pid $pid)"
    terminate "$pid" "$STOP_TIMEOUT"
    rm -f "$PIDFILE"
    say "stopped"
}

# `status`: exit 0 when the server answers (ours or a foreign one), 1 otherwise.
pidfile_status() {
    if server_answers; then
        if pid_alive; then
            say "up on $WHERE (pid $(cat "$PIDFILE"))"
        else
            say "$FOREIGN answers on $WHERE, but not one this script started"
        fi
        return 0
    fi
    if pid_alive; then
        say "running (pid $(cat "$PIDFILE")) but $NOT_ANSWERING; see $LOG"
    else
        say "down"
    fi
    return 1
}
