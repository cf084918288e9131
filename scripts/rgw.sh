#!/usr/bin/env bash
# rgw.sh — a throwaway single-node Ceph RADOS Gateway (S3) on 127.0.0.1, for the tests and the bench.
#
#   scripts/rgw.sh start DIR    start mon + osd + radosgw with all state in DIR (must be empty or absent);
#                               prints the S3 settings (also written to DIR/s3.env)
#   scripts/rgw.sh stop DIR     stop the daemons started in DIR (by PID file, only if they are ours) and remove DIR
#   scripts/rgw.sh admin DIR …  run radosgw-admin against that cluster (users, policies, quotas)
#
# Environment: PORT (S3, required), MON_PORT (required; the OSD picks free ports itself),
# OBJECTSTORE=memstore (data in RAM) | bluestore (sparse file DIR/osd/block), STORE_GB=4,
# ACCESS_KEY / SECRET_KEY (the first user, uid "backup"), STORAGE_CLASSES="STANDARD_IA …" (accepted
# besides STANDARD, stored alike), OWNER_PID (when set, a detached watcher runs `stop DIR` as soon as
# that process is gone — also when it was SIGKILLed and never ran its own teardown).
#
# One mon, one OSD, no cephx, pool size 1, every socket on 127.0.0.1. The Debian packages
# (ceph-mon ceph-osd radosgw ceph-common) are installed by scripts/setup.sh.
set -euo pipefail

cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop|admin DIR [args]" >&2; exit 2; }
case "$DIR" in /tmp/?*|/var/tmp/?*) ;; *) echo "rgw.sh: DIR must be below /tmp or /var/tmp, got $DIR" >&2; exit 2 ;; esac
DIR=${DIR%/}
CONF="$DIR/ceph.conf"
MARK="$DIR/.pvc-backup-rgw"

ceph_() { timeout 20 ceph -c "$CONF" --connect-timeout 15 "$@"; }

# The PID of one of our daemons, only while that process still runs with our configuration.
our_pid() {
  local file="$DIR/run/$1.pid" pid
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
  echo "$pid"
}

stop_daemon() {
  local pid i
  pid=$(our_pid "$1") || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 30); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
}

stop_all() {
  stop_daemon client.rgw
  stop_daemon osd.0
  stop_daemon mon.a
}

wait_for() { # seconds what command...
  local seconds=$1 what=$2 i
  shift 2
  for i in $(seq 1 $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "rgw.sh: timed out after ${seconds}s waiting for $what; logs in $DIR/log" >&2
  return 1
}

osd_up() { ceph_ osd dump -f json | grep -q '"up":1'; }
rgw_up() { curl -fsS -o /dev/null "http://127.0.0.1:$PORT/"; }

on_failed_start() {
  local rc=$?
  [ "$rc" = 0 ] && return
  echo "rgw.sh: start failed (exit $rc); last log lines:" >&2
  local f
  for f in "$DIR"/log/*; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }; done
  stop_all
}

start() {
  : "${PORT:?PORT is required}" "${MON_PORT:?MON_PORT is required}"
  local objectstore=${OBJECTSTORE:-memstore} bytes=$(( ${STORE_GB:-4} * 1024 * 1024 * 1024 ))
  local access=${ACCESS_KEY:-pvc-backup-test-access} secret=${SECRET_KEY:-pvc-backup-test-secret-0123456789abcdef}
  local tool
  for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool uuidgen curl; do
    command -v "$tool" >/dev/null || { echo "rgw.sh: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
  done
  if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then echo "rgw.sh: $DIR is not empty" >&2; exit 1; fi
  mkdir -p "$DIR"/{mon,osd,rgw,run,log,crash,tmp}
  touch "$MARK"
  trap on_failed_start EXIT
  local fsid
  fsid=$(uuidgen)
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_PORT
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
# without cephx, radosgw's default secure mon-client mode cannot connect
ms mon client mode = crc
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
log to stderr = false
err to stderr = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
paxos propose interval = 0.05
paxos min wait = 0.01
mon data avail warn = 2
mon data avail crit = 1
mon osd full ratio = .97
mon osd backfillfull ratio = .96
mon osd nearfull ratio = .95

[mon]
mon data = $DIR/mon

[osd]
osd data = $DIR/osd
osd objectstore = $objectstore
memstore device bytes = $bytes
bluestore block size = $bytes
bluestore block create = true
bluestore block db create = false
bluestore block wal create = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd op num shards = 2
osd op num threads per shard = 2
osd scrub min interval = 1000000000
osd scrub max interval = 1000000000
osd deep scrub interval = 1000000000

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
rgw thread pool size = 32
rgw dynamic resharding = false
rgw enable usage log = false
rgw crypt require ssl = false
rgw gc obj min wait = 10
rgw gc processor period = 10
EOF
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/tmp/monmap" >/dev/null
  ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/tmp/monmap" >"$DIR/log/mon-mkfs.out" 2>&1
  ceph-mon -c "$CONF" -i a
  wait_for 30 "the monitor" ceph_ mon stat

  local osd_uuid osd_id
  osd_uuid=$(uuidgen)
  osd_id=$(ceph_ osd new "$osd_uuid")
  [ "$osd_id" = 0 ] || { echo "rgw.sh: expected OSD id 0, got '$osd_id'" >&2; exit 1; }
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/osd-mkfs.out" 2>&1
  ceph-osd -c "$CONF" -i 0
  wait_for 60 "the OSD" osd_up

  # Extra storage classes (all in the same pool): without them RGW refuses any class but STANDARD.
  local class
  [ -z "${STORAGE_CLASSES:-}" ] || radosgw-admin -c "$CONF" user list >/dev/null # creates the default zone and zonegroup
  for class in ${STORAGE_CLASSES:-}; do
    radosgw-admin -c "$CONF" zonegroup placement add --rgw-zonegroup default --placement-id default-placement --storage-class "$class" >/dev/null
    radosgw-admin -c "$CONF" zone placement add --rgw-zone default --placement-id default-placement --storage-class "$class" \
      --data-pool default.rgw.buckets.data >/dev/null
  done

  radosgw -c "$CONF" -n client.rgw
  wait_for 90 "radosgw on 127.0.0.1:$PORT" rgw_up
  radosgw-admin -c "$CONF" user create --uid=backup --display-name="pvc-backup tests" \
    --access-key="$access" --secret-key="$secret" >/dev/null

  cat >"$DIR/s3.env" <<EOF
AWS_ACCESS_KEY_ID=$access
AWS_SECRET_ACCESS_KEY=$secret
AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
AWS_REGION=us-east-1
RGW_PIDS="$(cat "$DIR/run/mon.a.pid") $(cat "$DIR/run/osd.0.pid") $(cat "$DIR/run/client.rgw.pid")"
EOF
  cat "$DIR/s3.env"
  [ -z "${OWNER_PID:-}" ] || watch_owner "$OWNER_PID"
}

# Stops this cluster once OWNER has exited. Detached (own session, no inherited output), so the
# caller's pipes close and a kill of the caller's process group does not take the watcher along.
watch_owner() {
  setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec bash "$2" stop "$3"' \
    rgw-watch "$1" "$0" "$DIR" </dev/null >/dev/null 2>&1 &
}

case "$cmd" in
  start) start ;;
  stop)
    [ -e "$DIR" ] || exit 0
    [ -e "$MARK" ] || { echo "rgw.sh: $DIR was not made by rgw.sh; not touching it" >&2; exit 1; }
    stop_all
    rm -rf -- "$DIR"
    ;;
  admin)
    shift 2
    exec radosgw-admin -c "$CONF" "$@"
    ;;
  *) echo "usage: $0 start|stop|admin DIR [args]" >&2; exit 2 ;;
esac
