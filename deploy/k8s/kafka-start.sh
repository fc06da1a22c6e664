#!/usr/bin/env bash
# Start the official apache/kafka image with SCRAM users created when the storage is formatted.
#
# The image renders server.properties from the KAFKA_* variables and formats the storage in
# its entrypoint (/etc/kafka/docker/run), but its format step takes no SCRAM credentials, and
# the broker's own login (inter-broker SCRAM as admin) must exist before the first start. So,
# on the first start only, this formats the storage itself, from the same KAFKA_* variables,
# with one --add-scram per password file in $RESPUBLICA_KAFKA_USERS (file name = user name);
# then it hands over to the image's entrypoint, whose format finds "already formatted" and
# goes on. Later starts skip straight to the entrypoint: users added afterwards are managed
# with `respublica users` as the admin. Used by deploy/docker-compose.yml and, through the
# ConfigMap kustomize generates from it, by deploy/k8s/statefulset-kafka.yaml.
set -euo pipefail

users_dir="${RESPUBLICA_KAFKA_USERS:-/etc/kafka/respublica/users}"
log_dir="${KAFKA_LOG_DIRS:?KAFKA_LOG_DIRS must name the data directory}"

if [[ ! -e "${log_dir}/meta.properties" ]]; then
  umask 077   # the format file holds the broker's JAAS passwords
  props="$(mktemp)"
  trap 'rm -f "${props}"' EXIT
  # The image's mapping (kafka.docker.KafkaDockerWrapper): drop KAFKA_, lower-case, then
  # ___ -> '-', __ -> '_', _ -> '.'. Launcher variables are not properties.
  while IFS='=' read -r name _; do
    case "${name}" in
      KAFKA_VERSION|KAFKA_HEAP_OPTS|KAFKA_LOG4J_OPTS|KAFKA_OPTS|KAFKA_JMX_OPTS|\
      KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_GC_LOG_OPTS|KAFKA_LOG4J_ROOT_LOGLEVEL|\
      KAFKA_LOG4J_LOGGERS|KAFKA_TOOLS_LOG4J_LOGLEVEL|KAFKA_JMX_HOSTNAME) continue ;;
    esac
    key="$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' \
      | sed -e 's/___/-/g' -e 's/__/\x01/g' -e 's/_/./g' -e 's/\x01/_/g')"
    printf '%s=%s\n' "${key}" "${!name}" >> "${props}"
  done < <(env | grep -E '^KAFKA_[A-Z0-9_]+=' || true)

  scram=()
  for file in "${users_dir}"/*; do
    [[ -f "${file}" ]] || continue
    scram+=(--add-scram "SCRAM-SHA-512=[name=$(basename "${file}"),password=$(<"${file}")]")
  done
  if [[ ${#scram[@]} -eq 0 ]]; then
    echo "kafka-start: no SCRAM user in ${users_dir}: run deploy/make_secrets.py" >&2
    exit 1
  fi
  echo "kafka-start: formatting ${log_dir} with $(( ${#scram[@]} / 2 )) SCRAM users"
  /opt/kafka/bin/kafka-storage.sh format --cluster-id "${CLUSTER_ID:?}" \
    --config "${props}" "${scram[@]}"
  rm -f "${props}"
  trap - EXIT
  umask 022
fi

exec /etc/kafka/docker/run
