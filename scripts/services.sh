#!/usr/bin/env bash
# Starts, stops or checks the real servers the integration tests use (no Docker needed):
#
#   scripts/services.sh start  [kafka rabbitmq influxdb victoria-metrics]   (all when none is named)
#   scripts/services.sh stop   [...]
#   scripts/services.sh status [...]    exit 0 only when every named server is up
#
#   kafka             127.0.0.1:9092   Apache Kafka (KRaft) from Maven Central jars    scripts/kafka.sh
#   rabbitmq          127.0.0.1:5672   Debian's rabbitmq-server, vhost stocks         scripts/rabbitmq.sh
#   influxdb          127.0.0.1:8086   Debian's influxdb 1.6 (v1 API)                 scripts/influxdb.sh
#   victoria-metrics  127.0.0.1:8428   Debian's victoria-metrics                      scripts/victoria-metrics.sh
#
# Needs: Java 17+ and Maven (Kafka), and the Debian packages rabbitmq-server, influxdb and
# victoria-metrics (.ci/run installs them). Data and logs live in .services/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL=(kafka rabbitmq influxdb victoria-metrics)

usage() {
    echo "usage: $0 {start|stop|status} [${ALL[*]}]" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
action="$1"
shift
case "$action" in
start | stop | status) ;;
*) usage ;;
esac

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${ALL[@]}")
for name in "${names[@]}"; do
    case " ${ALL[*]} " in
    *" $name "*) ;;
    *)
        echo "services: unknown server '$name' (known: ${ALL[*]})" >&2
        exit 2
        ;;
    esac
done
# Stop in the reverse order of start.
if [[ "$action" == stop ]]; then
    reversed=()
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do reversed+=("${names[i]}"); done
    names=("${reversed[@]}")
fi

failed=()
for name in "${names[@]}"; do
    if ! "$HERE/$name.sh" "$action"; then
        failed+=("$name")
        # A server that does not start is an error at once; stop and status go on with the others.
        if [[ "$action" == start ]]; then
            echo "services: $name did not start" >&2
            exit 1
        fi
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    if [[ "$action" == status ]]; then
        echo "services: not up: ${failed[*]}" >&2
    else
        echo "services: $action failed for: ${failed[*]}" >&2
    fi
    exit 1
fi
