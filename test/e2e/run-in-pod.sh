#!/usr/bin/env bash
# Runs one container the way the kubelet would, on this machine and without a cluster: builds the
# container's root filesystem in ROOT (a tmpfs), mounts the image's files, the volumes and the
# emptyDirs at their paths, makes the root read-only if asked, then chroots and execs the
# container's command with exactly the given environment, user and capabilities.
#
# Start it in a private mount namespace, so nothing is mounted on the host and every mount goes
# away with the process:
#
#   unshare --mount --propagation private -- bash test/e2e/run-in-pod.sh \
#     --root EMPTYDIR \
#     --image-file HOSTPATH:PATH ...      image content, read-only (file or directory)
#     --symlink TARGET:PATH ...           symbolic links of the image
#     --volume HOSTDIR:MOUNTPATH:ro|rw ... a PersistentVolumeClaim
#     --tmpfs MOUNTPATH ...               an emptyDir
#     --env-file FILE                     NAME=value entries, NUL-separated: the whole environment
#     --workdir DIR --user UID:GID --caps cap,cap [--no-new-privs] [--read-only-root]
#     -- COMMAND ARGS...
#
# Used by test/e2e/chart-runner.test.ts (see test/helpers/pod.ts).
set -euo pipefail

die() {
  echo "run-in-pod: $*" >&2
  exit 125
}

root='' env_file='' workdir=/ user=0:0 caps='' no_new_privs=0 read_only_root=0
image_files=() symlinks=() volumes=() tmpfs=()
while (($#)); do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --image-file) image_files+=("$2"); shift 2 ;;
    --symlink) symlinks+=("$2"); shift 2 ;;
    --volume) volumes+=("$2"); shift 2 ;;
    --tmpfs) tmpfs+=("$2"); shift 2 ;;
    --env-file) env_file=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --caps) caps=$2; shift 2 ;;
    --no-new-privs) no_new_privs=1; shift ;;
    --read-only-root) read_only_root=1; shift ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
  esac
done
(($#)) || die "no command given after --"
[ -n "$root" ] && [ -d "$root" ] || die "--root must be an existing directory"
[ -z "$(ls -A "$root")" ] || die "--root $root is not empty"
[ -n "$env_file" ] && [ -f "$env_file" ] || die "--env-file must be a file"

# Refuse to touch the host's mount table: only run inside a private mount namespace of our own.
[ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] ||
  die "not in a mount namespace of its own; start with: unshare --mount --propagation private -- bash $0 ..."
[ "$(findmnt -no PROPAGATION /)" = private ] || die "mount propagation is not private; use unshare --propagation private"

ro_bind() { # SRC DEST: read-only bind mount
  mount --bind "$1" "$2"
  mount -o remount,bind,ro "$2"
}

# The root filesystem: a tmpfs with the host's /usr and /etc (read-only) standing in for the base
# image's Debian userland, and the image's own files on top.
mount -t tmpfs -o mode=0755 pod-rootfs "$root"
for dir in usr etc; do
  mkdir "$root/$dir"
  ro_bind "/$dir" "$root/$dir"
done
for dir in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$dir" ]; then
    ln -s "$(readlink "/$dir")" "$root/$dir"
  elif [ -d "/$dir" ]; then
    mkdir "$root/$dir"
    ro_bind "/$dir" "$root/$dir"
  fi
done
for dir in dev proc sys; do
  mkdir "$root/$dir"
  mount --rbind "/$dir" "$root/$dir"
done
# /usr/local belongs to the image (the node image keeps Node.js there), not to the host.
mount -t tmpfs -o mode=0755 image-usr-local "$root/usr/local"
mkdir -p "$root/usr/local/bin" "$root/usr/local/sbin" "$root/usr/local/lib"

for spec in "${image_files[@]}"; do
  host=${spec%%:*} path=${spec#*:}
  [ -e "$host" ] || die "image file $host does not exist"
  if [ -d "$host" ]; then
    mkdir -p "$root$path"
  else
    mkdir -p "$(dirname "$root$path")"
    : >"$root$path"
  fi
  ro_bind "$host" "$root$path"
done
for spec in "${symlinks[@]}"; do
  mkdir -p "$(dirname "$root${spec#*:}")"
  ln -s "${spec%%:*}" "$root${spec#*:}"
done

# Volumes: PersistentVolumeClaims (host directories) and emptyDirs (fresh tmpfs each run).
for spec in "${volumes[@]}"; do
  host=${spec%%:*} rest=${spec#*:}
  path=${rest%:*} mode=${rest##*:}
  [ -d "$host" ] || die "volume directory $host does not exist"
  mkdir -p "$root$path"
  mount --bind "$host" "$root$path"
  [ "$mode" = ro ] && mount -o remount,bind,ro "$root$path"
done
for path in "${tmpfs[@]}"; do
  mkdir -p "$root$path"
  mount -t tmpfs -o mode=1777 emptydir "$root$path"
done

if ((read_only_root)); then
  mount -o remount,ro "$root/usr/local"
  mount -o remount,ro "$root"
fi

mapfile -d '' -t environment <"$env_file"
bounding=-all
for cap in ${caps//,/ }; do bounding+=",+${cap,,}"; done
setpriv_args=(--reuid="${user%%:*}" --regid="${user##*:}" --clear-groups --inh-caps=-all --bounding-set="$bounding")
((no_new_privs)) && setpriv_args+=(--no-new-privs)

exec chroot "$root" /usr/bin/setpriv "${setpriv_args[@]}" -- /usr/bin/env -i -C "$workdir" "${environment[@]}" "$@"
