#!/usr/bin/env bash
# A throwaway PostgreSQL server for the integration tier (and for trying multi-host studies locally).
#   scripts/pg_server.sh start DIR [PORT]   initdb in DIR, start on 127.0.0.1:PORT (default: a free one),
#                                           create databases hpo and mlflow; prints the URL of hpo (role hpo,
#                                           password $HPO_PG_PASSWORD, default hpo-secret-pw)
#   scripts/pg_server.sh stop DIR           stop it (fast shutdown)
#   scripts/pg_server.sh restart DIR        pg_ctl restart -m fast on the same data dir and port (chaos tests:
#                                           every connection is cut, the server is back within seconds)
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` user (created if missing).
set -euo pipefail
cmd=${1:?start|stop|restart}; dir=${2:?data dir}
port=${3:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
PG_BIN=${PG_BIN:-$(dirname "$(command -v pg_ctl || echo /usr/local/bin/pg_ctl)")}
PASSWORD=${HPO_PG_PASSWORD:-hpo-secret-pw}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  chmod 700 "$dir"
  pwfile="$dir.pw"; printf '%s\n' "$PASSWORD" > "$pwfile"; chmod 600 "$pwfile"
  [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
  as_owner "$PG_BIN/initdb" -D "$dir/data" -U hpo --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 >"$dir.initdb.log"
  rm -f "$pwfile"
  for db in hpo mlflow; do  # no psql here: single-user mode before the server starts
    echo "CREATE DATABASE $db" | as_owner "$PG_BIN/postgres" --single -D "$dir/data" postgres >/dev/null 2>&1
  done
  as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c max_connections=100" start >/dev/null
  echo "postgresql://hpo:$PASSWORD@127.0.0.1:$port/hpo"
  ;;
stop)
  as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  ;;
restart)  # pg_ctl reuses the options of the running server (postmaster.opts): same port and socket dir
  as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -m fast -w -t 60 restart >/dev/null
  ;;
*) echo "usage: $0 start|stop|restart DIR [PORT]" >&2; exit 2 ;;
esac
