#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 for the test suite.
#   scripts/services.sh up    start what is not answering (installing with apt where missing)
#   scripts/services.sh down  stop only what `up` started
set -uo pipefail
STATE=${EMBPLAT_SERVICES_STATE:-/tmp/embplat-services-started}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

pg_ok() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_ok() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

apt_install() {
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

up() {
  : > "$STATE"
  if ! pg_ok; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    if [ -n "$version" ]; then
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start && echo "postgresql $version" >> "$STATE"
    fi
    for _ in $(seq 30); do pg_ok && break; sleep 1; done
    # trust auth on loopback for the throwaway test databases
    pg_ok && $SUDO -u postgres psql -qc "select 1" >/dev/null 2>&1 || true
  fi
  if ! redis_ok; then
    command -v redis-server >/dev/null || apt_install redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile /tmp/embplat-redis.log && echo redis >> "$STATE"
    for _ in $(seq 30); do redis_ok && break; sleep 1; done
  fi
  pg_ok && echo "postgresql: up" || echo "postgresql: NOT available (services tests will skip)"
  redis_ok && echo "redis: up" || echo "redis: NOT available (services tests will skip)"
}

down() {
  [ -f "$STATE" ] || exit 0
  while read -r what version; do
    case "$what" in
      postgresql) $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main stop ;;
      redis) redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 ;;
    esac
  done < "$STATE"
  rm -f "$STATE"
}

"${1:-up}"
