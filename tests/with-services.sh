#!/usr/bin/env bash
# Run a command with PostgreSQL and Redis available to the tests.
# Uses IDP_TEST_DATABASE_URL / IDP_TEST_REDIS_URL when given; otherwise starts private ones on
# loopback (tests/services.sh: free ports, a cluster of this run's own) and stops exactly those afterwards, whatever
# the command's outcome (also on Ctrl-C or SIGTERM).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${IDP_TEST_DATABASE_URL:-}" ] && [ -n "${IDP_TEST_REDIS_URL:-}" ]; then
  exec "$@"
fi
dir=$(mktemp -d /tmp/idp-test-services.XXXXXX)
cleanup() { "$here/services.sh" stop "$dir" || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
exports=$("$here/services.sh" start "$dir")  # a failed start stops here (eval "$(...)" would hide it)
eval "$exports"
"$@"
