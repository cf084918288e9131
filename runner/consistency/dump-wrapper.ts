/**
 * The script every pre-backup dump init container runs (the chart embeds it verbatim as the
 * container's command: dumpContainerCommand() in dumps.ts). Kept as text here, not as a file of
 * its own, so it travels with the runner's sources and the chart's synthesis alike.
 */
export const DUMP_WRAPPER_SCRIPT = `# pvc-backup pre-backup dump: runs one dump command in the dump's init container.
#   sh -c "<this script>" pvc-backup-dump COMMAND [ARG]...
# with PVC_BACKUP_DUMP_NAME and PVC_BACKUP_DUMP_DIR (= <scratch volume>/<name>) set.
# COMMAND runs in an empty $PVC_BACKUP_DUMP_DIR (its working directory) and writes its files
# there; its standard input is empty. Only when it exits 0 is $PVC_BACKUP_DUMP_DIR.complete
# written; the runner archives the dump only with that marker and at least one non-empty file.
# POSIX sh (dash, busybox ash, bash). Arguments are never printed: they may hold secrets.
set -u
name="\${PVC_BACKUP_DUMP_NAME:?PVC_BACKUP_DUMP_NAME is not set}"
dir="\${PVC_BACKUP_DUMP_DIR:?PVC_BACKUP_DUMP_DIR is not set}"
say() { printf 'pvc-backup dump %s: %s\\n' "$name" "$*" >&2; }

if [ "$#" -eq 0 ]; then
  say "no command given: set the dump's command"
  exit 2
fi
rm -rf -- "$dir" "$dir.complete" "$dir.complete.partial" || { say "cannot clear $dir"; exit 1; }
mkdir -p -- "$dir" || { say "cannot create $dir"; exit 1; }
cd "$dir" || { say "cannot enter $dir"; exit 1; }

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
say "running $1 in $dir"
# In the background, so that a TERM sent to this shell (PID 1 of the container, which ignores
# signals it has no handler for) reaches the dump, which then fails and leaves no marker.
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done
if [ "$status" -ne 0 ]; then
  say "$1 exited with status $status; no backup is made"
  exit "$status"
fi
finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '{"name":"%s","startedAt":"%s","finishedAt":"%s"}\\n' "$name" "$started" "$finished" > "$dir.complete.partial" &&
  mv -f -- "$dir.complete.partial" "$dir.complete" || { say "cannot write $dir.complete"; exit 1; }
say "done"
`;
