#!/usr/bin/env bash
# Run a command with PostgreSQL and Redis available to the tests.
# Uses IDP_TEST_DATABASE_URL / IDP_TEST_REDIS_URL when given; otherwise starts private ones on
# loopback (tests/services.sh) and stops them afterwards, whatever the command's outcome.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${IDP_TEST_DATABASE_URL:-}" ] && [ -n "${IDP_TEST_REDIS_URL:-}" ]; then
  exec "$@"
fi
dir=$(mktemp -d /tmp/idp-test-services.XXXXXX)
cleanup() { "$here/services.sh" stop "$dir" || true; }
trap cleanup EXIT
eval "$("$here/services.sh" start "$dir")"
"$@"
