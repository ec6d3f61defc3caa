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
# shellcheck source=lib.sh source-path=SCRIPTDIR disable=SC1091  # `shellcheck -x` follows it
. "$ROOT/scripts/lib.sh"
SERVICES_DIR="${STOCKUP_SERVICES_DIR:-$ROOT/.services}"
DIR="$SERVICES_DIR/victoria-metrics"
LOG="$DIR/victoria-metrics.log"
HOST=127.0.0.1
PORT="${VM_PORT:-8428}"
URL="http://$HOST:$PORT"
PYTHON="${PYTHON:-python3}"

# Read by scripts/lib.sh (described at its top).
# shellcheck disable=SC2034  # used there, which only `shellcheck -x` sees
{
    SERVICE=victoria-metrics
    PIDFILE="$DIR/victoria-metrics.pid"
    START_TIMEOUT="${VM_START_TIMEOUT:-60}"
    STOP_TIMEOUT="${VM_STOP_TIMEOUT:-30}"
    CMDLINE_PATTERN=victoria-metrics
    POLL_INTERVAL=0.5
    LOGS=("$LOG")
    WHERE="$URL"
    FOREIGN="a victoria-metrics"
    EXITED=victoria-metrics
    NO_ANSWER="victoria-metrics did not answer on $URL/health"
    NOT_ANSWERING="$URL/health does not answer"
}

# Exit 0 when GET /health answers 200 "OK".
server_answers() {
    "$PYTHON" - "$URL/health" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if response.status == 200 and response.read().strip() == b"OK" else 1)
PY
}

# Launches victoria-metrics on its data directory.
server_launch() {
    if port_open "$PORT"; then
        die "$HOST:$PORT is in use by another program; stop it first"
    fi
    command -v victoria-metrics >/dev/null ||
        die "victoria-metrics is not installed (apt-get install victoria-metrics)"
    mkdir -p "$DIR/data"
    say "starting; log: $LOG"
    spawn "$LOG" victoria-metrics -storageDataPath="$DIR/data" -httpListenAddr="$HOST:$PORT" \
        -retentionPeriod=7d -search.latencyOffset=0s -loggerLevel=INFO
}

dispatch pidfile_ "start stop status" "$@"
