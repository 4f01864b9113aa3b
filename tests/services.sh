#!/usr/bin/env bash
# Private PostgreSQL cluster and Redis on loopback for the tests (Debian; run as root, as make test does).
#   tests/services.sh start DIR   -> prints IDP_TEST_DATABASE_URL / IDP_TEST_REDIS_URL export lines
#   tests/services.sh stop  DIR
# Unusual ports so a system PostgreSQL/Redis on the standard ports is never touched.
set -euo pipefail
cmd=${1:?start|stop}; dir=$(readlink -f "${2:?DIR}")
PGPORT=${IDP_TEST_PGPORT:-54329}; REDISPORT=${IDP_TEST_REDISPORT:-56379}; CL=${IDP_TEST_PGCLUSTER:-idptest}
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
case $cmd in
start)
  if ! command -v pg_createcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 postgresql >/dev/null
  fi
  command -v redis-server >/dev/null || $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 redis-server >/dev/null
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  mkdir -p "$dir/pg" "$dir/redis"; chmod o+x "$dir"; $SUDO chown postgres:postgres "$dir/pg"
  $SUDO pg_dropcluster --stop "$ver" "$CL" >/dev/null 2>&1 || true
  $SUDO pg_createcluster "$ver" "$CL" -p "$PGPORT" -d "$dir/pg/data" -l "$dir/pg/pg.log" \
      -- --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  $SUDO pg_ctlcluster "$ver" "$CL" start
  $SUDO runuser -u postgres -- psql -q -p "$PGPORT" -c "CREATE ROLE idp LOGIN PASSWORD 'idp-test-pass' CREATEDB" \
      -c "CREATE DATABASE idp OWNER idp" >/dev/null
  redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
      --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" --dir "$dir/redis" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "export IDP_TEST_DATABASE_URL=postgresql+psycopg://idp:idp-test-pass@127.0.0.1:$PGPORT/idp"
  echo "export IDP_TEST_REDIS_URL=redis://127.0.0.1:$REDISPORT/0"
  echo "export IDP_TEST_PG_CLUSTER=$ver/$CL"
  ;;
stop)
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if [ -f "$dir/redis/redis.pid" ]; then kill -TERM "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true; fi
  # a test that restarts Redis (tests/scaleout/test_faults.py) leaves a server the pid file does not name
  redis-cli -p "$REDISPORT" shutdown nosave >/dev/null 2>&1 || true
  $SUDO pg_ctlcluster "$ver" "$CL" stop -m fast >/dev/null 2>&1 || true
  $SUDO pg_dropcluster "$ver" "$CL" >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
esac
