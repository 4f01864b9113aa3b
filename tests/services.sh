#!/usr/bin/env bash
# Private PostgreSQL cluster and Redis on loopback for the tests (Debian; as root or with sudo, as make test does).
#   tests/services.sh start DIR   -> prints IDP_TEST_DATABASE_URL / IDP_TEST_REDIS_URL / IDP_TEST_PG_CLUSTER exports
#   tests/services.sh start-postgres DIR -> the same for PostgreSQL alone (no Redis; `make bench` uses it)
#   tests/services.sh stop  DIR   -> stops what `start DIR` started, and nothing else
# Every run asks the OS for free ports and creates a cluster under a new name with a new password, so two runs side
# by side never meet, and the machine's own PostgreSQL and Redis are never touched. `start` records what it created
# in DIR/services.env as it goes; `stop` reads that record and drops only that cluster and stops only that Redis.
set -euo pipefail
cmd=${1:?start|start-postgres|stop}; dir=$(readlink -f "${2:?DIR}")
state=$dir/services.env
# pg_createcluster and psql read these; this script always says explicitly which cluster and port it means.
unset PGCLUSTER PGPORT PGHOST PGDATABASE PGUSER PGPASSWORD
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

# A port nothing listens on now: bind port 0 on loopback and let the OS choose. Another process may take it before
# our server binds it, so each server's start below checks it really got the port and retries otherwise.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
random_hex() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
record() { echo "$1" >>"$state"; }

# Is PID a redis-server this run started? Ours run in DIR/redis (--dir); a stale pid file may name a pid the system
# has since given to another process.
is_our_redis() {
  local pid=$1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '^redis-server ' || return 1
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$dir/redis" ]
}

start_postgres() {
  local ver=$1 cluster port password attempt
  password=$(random_hex)
  for attempt in 1 2 3 4 5; do
    cluster="idptest_$(random_hex)"
    port=$(free_port)
    # refuses (and changes nothing) if a cluster of that name exists; then try another name
    $SUDO pg_createcluster "$ver" "$cluster" -p "$port" -d "$dir/pg/data" -l "$dir/pg/pg.log" --start-conf manual \
        -- --auth-local=trust --auth-host=scram-sha-256 >/dev/null || continue
    record "PG_CLUSTER=$ver/$cluster"
    if $SUDO pg_ctlcluster "$ver" "$cluster" start >&2; then
      $SUDO runuser -u postgres -- psql -q -p "$port" \
          -c "CREATE ROLE idp LOGIN PASSWORD '$password' CREATEDB" -c "CREATE DATABASE idp OWNER idp" >/dev/null
      echo "export IDP_TEST_DATABASE_URL=postgresql+psycopg://idp:$password@127.0.0.1:$port/idp"
      echo "export IDP_TEST_PG_CLUSTER=$ver/$cluster"
      return 0
    fi
    # the port was taken between choosing and starting: drop the cluster this run just created, try again
    echo "PostgreSQL did not start on port $port; trying another port" >&2
    $SUDO pg_dropcluster --stop "$ver" "$cluster" >/dev/null 2>&1 || true
    sed -i "\|^PG_CLUSTER=$ver/$cluster\$|d" "$state"
  done
  echo "could not start a private PostgreSQL cluster" >&2; return 1
}

start_redis() {
  local port pid attempt
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    rm -f "$dir/redis/redis.pid"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" --dir "$dir/redis" >/dev/null || true
    # the pid file appears once the server listens; it must be our server that answers on the port
    for _ in $(seq 50); do
      pid=$(cat "$dir/redis/redis.pid" 2>/dev/null || true)
      if [ -n "$pid" ] && [ "$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' \
                                | sed -n 's/^process_id://p')" = "$pid" ]; then
        record "REDIS_PORT=$port"
        echo "export IDP_TEST_REDIS_URL=redis://127.0.0.1:$port/0"
        return 0
      fi
      sleep 0.1
    done
    echo "Redis did not start on port $port; trying another port" >&2
    pid=$(cat "$dir/redis/redis.pid" 2>/dev/null || true)
    if is_our_redis "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  echo "could not start a private Redis" >&2; return 1
}

case $cmd in
start|start-postgres)
  missing=""
  if ! command -v pg_createcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    missing="postgresql"
  fi
  if [ "$cmd" = start ]; then command -v redis-server >/dev/null || missing="$missing redis-server"; fi
  if [ -n "$missing" ]; then
    echo "installing Debian packages: $missing" >&2
    $SUDO apt-get update -qq >&2
    # shellcheck disable=SC2086  # a list of package names
    $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 $missing >/dev/null
  fi
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  mkdir -p "$dir/pg" "$dir/redis"; chmod o+x "$dir"; $SUDO chown postgres:postgres "$dir/pg"
  : >"$state"
  start_postgres "$ver"
  if [ "$cmd" = start ]; then start_redis; fi
  ;;
stop)
  [ -f "$state" ] || { echo "nothing recorded in $state: nothing to stop" >&2; exit 0; }
  PG_CLUSTER=""; REDIS_PORT=""
  # shellcheck disable=SC1090  # written by `start` above
  . "$state"
  pid=$(cat "$dir/redis/redis.pid" 2>/dev/null || true)
  if is_our_redis "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  if [ -n "$REDIS_PORT" ]; then
    # tests/scaleout/test_faults.py shuts Redis down and starts a new one on this run's port without a pid file:
    # whatever serves this run's port now is that one
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  if [ -n "$PG_CLUSTER" ]; then
    ver=${PG_CLUSTER%%/*}; cluster=${PG_CLUSTER#*/}
    # only the cluster whose data lives in this run's folder
    if pg_lsclusters -h "$ver" "$cluster" 2>/dev/null | awk '{print $6}' | grep -qxF "$dir/pg/data"; then
      $SUDO pg_dropcluster --stop "$ver" "$cluster" >/dev/null 2>&1 || true
    else
      echo "cluster $PG_CLUSTER does not keep its data in $dir/pg/data: left alone" >&2
    fi
  fi
  $SUDO rm -rf "$dir/pg" "$dir/redis" "$state"
  rmdir "$dir" 2>/dev/null || true
  ;;
*)
  echo "usage: $0 start|start-postgres|stop DIR" >&2; exit 2
  ;;
esac
