#!/usr/bin/env bash
# Thin wrapper around `ray job submit` for a run config, e.g.
#   RAY_API_SERVER_ADDRESS=http://127.0.0.1:8265 jobs/submit.sh jobs/example_run.yaml
# The submission id is derived from the config name and time (RAY_BENCH_SUBMISSION_ID overrides
# it), so the same submission is refused by Ray instead of running twice; a resubmit after
# `ray job stop` resumes from the finished shards.
#
# Token authentication: the cluster (cluster.yaml) refuses requests without its token, so
# `ray job submit` runs with RAY_AUTH_MODE=token and the token from, in Ray's own order,
#   1. RAY_AUTH_TOKEN (the token itself),
#   2. RAY_AUTH_TOKEN_PATH (a file holding it),
#   3. ~/.ray/auth_token (written by `ray get-auth-token --generate` before `ray up`).
# Without one this script stops before anything is sent. The token is never put into the
# job's runtime env (it would show in the job's details): the driver on the head reads the
# head's own copy.
set -euo pipefail

fail() {
  printf 'jobs/submit.sh: %s\n' "$1" >&2
  exit 2
}

config=${1:?usage: jobs/submit.sh RUN_CONFIG.yaml [extra ray-bench run flags]}
shift

case "${RAY_AUTH_MODE:-token}" in
  [Tt][Oo][Kk][Ee][Nn]) ;;  # Ray compares the mode case-insensitively
  *) fail "RAY_AUTH_MODE is '${RAY_AUTH_MODE}': this script submits only with token authentication (the cluster requires it). Unset RAY_AUTH_MODE or set it to token." ;;
esac

if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
  : # Ray sends RAY_AUTH_TOKEN itself; it wins over any token file.
elif [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
  [[ -f "$RAY_AUTH_TOKEN_PATH" && -r "$RAY_AUTH_TOKEN_PATH" && -s "$RAY_AUTH_TOKEN_PATH" ]] \
    || fail "RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH is not a readable, non-empty file: point it at the cluster's token file, or unset it to use ~/.ray/auth_token."
else
  default_token="${HOME:-}/.ray/auth_token"
  if [[ -z "${HOME:-}" || ! -f "$default_token" || ! -r "$default_token" || ! -s "$default_token" ]]; then
    fail "no Ray auth token: RAY_AUTH_TOKEN and RAY_AUTH_TOKEN_PATH are unset and ${default_token} is missing or empty. On the machine that ran \`ray up\`, \`ray get-auth-token\` prints the cluster's token: export it as RAY_AUTH_TOKEN, or save it to ~/.ray/auth_token."
  fi
  # Name the file just checked, so Ray reads exactly it (and fails loudly if it goes away).
  export RAY_AUTH_TOKEN_PATH="$default_token"
fi
export RAY_AUTH_MODE=token

# Relative paths in the config (data_dir, out_dir, ./models) resolve against this directory, not
# against Ray's temporary copy of the working directory that the job runs in (results written
# there would vanish with the job). With a local head it is the directory you submit from; on a
# remote cluster set RAY_BENCH_ROOT to a path the cluster's nodes share (e.g. /mnt/shared/study).
root="${RAY_BENCH_ROOT:-$PWD}"
id="${RAY_BENCH_SUBMISSION_ID:-ray-bench-$(basename "${config%.*}")-$(date +%Y%m%d-%H%M%S)}"
exec ray job submit --submission-id "$id" --working-dir . \
  --runtime-env-json '{"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}}' \
  -- ray-bench run --config "$config" --root "$root" --quiet "$@"
