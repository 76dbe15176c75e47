#!/usr/bin/env bash
# Thin wrapper around `ray job submit` for a run config, e.g.
#   RAY_API_SERVER_ADDRESS=http://127.0.0.1:8265 jobs/submit.sh jobs/example_run.yaml
# The submission id is derived from the config name and date, so a repeated submit
# of the same job is refused by Ray instead of running twice.
set -euo pipefail
config=${1:?usage: jobs/submit.sh RUN_CONFIG.yaml [extra ray-bench run flags]}
shift
id="ray-bench-$(basename "${config%.*}")-$(date +%Y%m%d-%H%M)"
exec ray job submit --submission-id "$id" --working-dir . \
  --runtime-env-json '{"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}}' \
  -- ray-bench run --config "$config" --quiet "$@"
