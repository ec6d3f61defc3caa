#!/usr/bin/env bash
# Debian's RabbitMQ (package rabbitmq-server, 3.10) for development and CI, set up for stockup-tui:
# virtual host `stocks`, least-privilege user `stockup` (permissions on `stocks` only, no tags).
#
#   scripts/rabbitmq.sh start      start the node (rabbitmq-server -detached) unless it runs, wait, set up
#   scripts/rabbitmq.sh stop       stop the node
#   scripts/rabbitmq.sh status     exit 0 when RabbitMQ runs and 127.0.0.1:5672 answers
#   scripts/rabbitmq.sh stop_app   stop the RabbitMQ application, the Erlang node stays (fault tests)
#   scripts/rabbitmq.sh start_app  start it again and wait
#
# The password of `stockup` is STOCKUP_RABBITMQ__PASSWORD, or the development default `stockup-dev`
# (the one tests/services.py expects); it is passed on standard input, never on a command line.
# The server keeps Debian's layout (data in /var/lib/rabbitmq, logs in /var/log/rabbitmq) and runs
# as the `rabbitmq` user; its commands need root, so sudo is used when not root. A lock in
# .services/rabbitmq/ serializes start and stop.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR disable=SC1091  # `shellcheck -x` follows it
. "$ROOT/scripts/lib.sh"
# shellcheck disable=SC2034  # read by scripts/lib.sh, which only `shellcheck -x` sees
SERVICE=rabbitmq
LOCK_DIR="${STOCKUP_SERVICES_DIR:-$ROOT/.services}/rabbitmq"
VHOST=stocks
USER_NAME=stockup
PASSWORD="${STOCKUP_RABBITMQ__PASSWORD:-stockup-dev}"
HOST=127.0.0.1
PORT=5672
START_TIMEOUT="${RABBITMQ_START_TIMEOUT:-90}"
LOG_DIR=/var/log/rabbitmq
PYTHON="${PYTHON:-python3}"

SUDO=()
if [[ "$(id -u)" -ne 0 ]] && [[ "$(id -un)" != rabbitmq ]]; then
    command -v sudo >/dev/null || die "RabbitMQ's commands must run as root or rabbitmq, and sudo is missing"
    SUDO=(sudo)
fi

# Erlang's port mapper (epmd), started by the first Erlang command below (a CLI tool or the node),
# listens on loopback only instead of every interface. The Debian wrappers switch to the rabbitmq
# user with `su`, which keeps the environment.
export ERL_EPMD_ADDRESS=127.0.0.1

ctl() { "${SUDO[@]}" rabbitmqctl -q "$@"; }

require_installed() {
    PATH="$PATH:/usr/sbin"
    if ! command -v rabbitmq-server >/dev/null || ! command -v rabbitmqctl >/dev/null; then
        die "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
    fi
}

# The RabbitMQ application runs on the node (false while the node is down or after stop_app).
app_running() {
    "${SUDO[@]}" rabbitmq-diagnostics -q check_running >/dev/null 2>&1
}

node_running() {
    "${SUDO[@]}" rabbitmq-diagnostics -q ping >/dev/null 2>&1
}

# The application runs and $HOST:$PORT accepts connections.
app_listening() {
    app_running && port_open "$PORT"
}

wait_app() {
    poll_until "$START_TIMEOUT" 1 "" app_listening ||
        die "RabbitMQ did not start within $START_TIMEOUT s; see $LOG_DIR/ (rabbit@$(hostname -s).log)"
    # await_startup also waits for the boot steps that follow the listener (plugins, definitions).
    ctl await_startup --timeout "$START_TIMEOUT" >/dev/null ||
        die "RabbitMQ did not finish booting within $START_TIMEOUT s; see $LOG_DIR/"
}

setup() {
    if ! ctl list_vhosts --no-table-headers | grep -qx "$VHOST"; then
        ctl add_vhost "$VHOST" >/dev/null
        say "created vhost $VHOST"
    fi
    if ctl list_users --no-table-headers | cut -f1 | grep -qx "$USER_NAME"; then
        if ! printf '%s\n' "$PASSWORD" | ctl authenticate_user "$USER_NAME" >/dev/null 2>&1; then
            printf '%s\n' "$PASSWORD" | ctl change_password "$USER_NAME" >/dev/null
            say "updated the password of user $USER_NAME"
        fi
    else
        printf '%s\n' "$PASSWORD" | ctl add_user "$USER_NAME" >/dev/null
        say "created user $USER_NAME"
    fi
    # Least privilege: no tags (no management or administrator rights), rights on $VHOST only.
    ctl set_user_tags "$USER_NAME" >/dev/null
    ctl set_permissions -p "$VHOST" "$USER_NAME" '.*' '.*' '.*' >/dev/null
    local vhost
    while read -r vhost _; do
        if [[ -n "$vhost" && "$vhost" != "$VHOST" ]]; then
            ctl clear_permissions -p "$vhost" "$USER_NAME" >/dev/null
            say "removed the permissions of $USER_NAME on vhost $vhost"
        fi
    done < <(ctl list_user_permissions --no-table-headers "$USER_NAME")
    # Streams are core in 3.10 behind the stream_queue feature flag (on for new nodes; an
    # upgraded node may still have it off). The rabbitmq_stream plugin (stream protocol) is not needed.
    if ! ctl list_feature_flags --no-table-headers | grep -Eq '^stream_queue[[:space:]]+enabled'; then
        ctl enable_feature_flag stream_queue >/dev/null
        say "enabled feature flag stream_queue"
    fi
    check_stream
}

# Declares and deletes a stream queue as the stockup user over AMQP (with pika when installed).
check_stream() {
    local out
    if ! "$PYTHON" -c 'import pika' >/dev/null 2>&1; then
        say "pika is not installed: skipped the stream queue check (feature flag stream_queue is on)"
        return 0
    fi
    if ! out="$(STOCKUP_RMQ_PW="$PASSWORD" "$PYTHON" - "$HOST" "$PORT" "$VHOST" "$USER_NAME" 2>&1 <<'PY'
import os, sys, uuid
import pika
host, port, vhost, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
params = pika.ConnectionParameters(
    host, port, vhost, pika.PlainCredentials(user, os.environ["STOCKUP_RMQ_PW"]),
    connection_attempts=3, retry_delay=1,
)
connection = pika.BlockingConnection(params)
channel = connection.channel()
name = f"stockup.services-check.{uuid.uuid4().hex[:8]}"
channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream", "x-max-age": "1m"})
channel.queue_delete(name)
connection.close()
PY
)"; then
        printf '%s\n' "$out" | tail -n 5 >&2
        die "could not declare a stream queue on vhost $VHOST as $USER_NAME"
    fi
    say "stream queues work on vhost $VHOST for $USER_NAME"
}

start() {
    require_installed
    take_lock "$LOCK_DIR"
    if app_running; then
        say "already running"
    else
        if node_running; then
            say "the node runs but the application is stopped: starting it"
            ctl start_app >/dev/null
        else
            if port_open "$PORT"; then
                die "$HOST:$PORT is in use by another program; stop it first"
            fi
            say "starting (rabbitmq-server -detached); logs in $LOG_DIR/"
            if ! getent hosts "$(hostname -s)" >/dev/null; then
                say "warning: the host name $(hostname -s) does not resolve; the Erlang node rabbit@$(hostname -s) needs it (add it to /etc/hosts)"
            fi
            "${SUDO[@]}" rabbitmq-server -detached 9>&-
        fi
        wait_app
    fi
    setup
    say "up on $HOST:$PORT, vhost $VHOST, user $USER_NAME"
}

stop() {
    require_installed
    take_lock "$LOCK_DIR"
    if ! node_running; then
        drop_epmd
        say "not running"
        return 0
    fi
    say "stopping"
    # shutdown waits until the node's process has exited.
    ctl shutdown >/dev/null
    drop_epmd
    say "stopped"
}

# Erlang's port mapper outlives the node that started it; once no Erlang node is left, it goes too.
drop_epmd() {
    if command -v epmd >/dev/null && ! epmd -names 2>/dev/null | grep -q "^name "; then
        "${SUDO[@]}" epmd -kill >/dev/null 2>&1 || true
    fi
}

status() {
    require_installed
    if app_listening; then
        say "up on $HOST:$PORT"
        return 0
    fi
    if node_running; then
        say "the node runs but the application is stopped (start_app starts it)"
    else
        drop_epmd
        say "down"
    fi
    return 1
}

stop_app() {
    require_installed
    take_lock "$LOCK_DIR"
    node_running || die "the node is not running"
    ctl stop_app >/dev/null
    say "application stopped (the node still runs; start_app starts it)"
}

start_app() {
    require_installed
    take_lock "$LOCK_DIR"
    node_running || die "the node is not running (start starts it)"
    ctl start_app >/dev/null
    wait_app
    say "application started"
}

dispatch "" "start stop status stop_app start_app" "$@"
