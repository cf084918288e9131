import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { type AgeIdentity, type AgeRecipient, parseRecipient, readIdentityFile, readRecipientsFile } from './archive/age/index.js';
import { UsageError } from './errors.js';
import { validateSchedule } from './freshness.js';
import { type RetentionPolicy, TIERS, normalizePolicy } from './retention.js';
import { SERVICE_ACCOUNT_DIR, inClusterApiUrl } from './kube/client.js';
import { type S3Settings, parseS3Settings } from './repository/s3-settings.js';
import { type NotifyTarget, parseNotifyTarget } from './monitoring/notify.js';
import { DUMPS_MOUNT_PATH, validateDumpName } from './consistency/dumps.js';
import { PathSelection, parseRestorePath } from './restore/selection.js';
import { WORKLOAD_KINDS, type Workload, type WorkloadKind, validateWorkloads } from './consistency/scale-down.js';

/**
 * The runner's whole configuration surface: every command, every flag, its environment
 * variable and its help text, in one table. Flags and variables are parsed here once into
 * typed configs; nothing past this module reads argv or process.env.
 */

export type Compression = 'gzip' | 'zstd' | 'none';
export type LogFormat = 'text' | 'json';
export type RestoreMode = 'replace' | 'merge';

export const COMPRESSIONS: readonly Compression[] = ['gzip', 'zstd', 'none'];
export const LEVEL_RANGE: Record<Compression, { min: number; max: number; default: number } | undefined> = {
  gzip: { min: 1, max: 9, default: 6 },
  zstd: { min: 1, max: 19, default: 3 },
  none: undefined,
};

export interface CommonConfig {
  dest: string;
  prefix: string;
  /** Set when neither --prefix nor PVC_BACKUP_PREFIX was given: `prefix` is the default, and list, verify and restore may pick the only prefix DEST holds. */
  prefixDefaulted?: boolean;
  logFormat: LogFormat;
  /** A lock whose heartbeat is older than this is broken with a warning. */
  lockStaleSeconds: number;
  /** Seconds between progress lines on long runs. */
  progressSeconds: number;
}

export interface BackupConfig extends CommonConfig {
  command: 'backup';
  /** The directory archived; undefined for a backup of pre-backup dumps only. */
  source: string | undefined;
  compression: Compression;
  level: number | undefined;
  excludes: string[];
  /** Pruning after a verified backup; undefined: no pruning. */
  retention: RetentionPolicy | undefined;
  allowEmpty: boolean;
  skipUnreadable: boolean;
  /** age recipients the archive and its manifest are encrypted to; undefined: not encrypted. */
  recipients?: readonly AgeRecipient[];
  /** Archive extended attributes, POSIX ACLs and file capabilities. */
  xattrs: boolean;
  /** --sqlite patterns: databases archived as consistent online copies. */
  sqlite: string[];
  /** Pre-backup dumps to archive from dumpsDir; undefined when there are none. */
  dumps: { dir: string; names: string[] } | undefined;
  /** --remote with --dest: the verified archive is then copied to the bucket. */
  offsite?: OffsiteConfig;
}

/** The bucket of --remote, and the retention applied there after a verified upload. */
export interface OffsiteConfig {
  settings: S3Settings;
  /** --remote-keep-last (default --keep-last) with the other --keep-* tiers; undefined: no pruning in the bucket. */
  retention: RetentionPolicy | undefined;
}

/** `backup --remote` without --dest: the archive streams straight into the bucket. */
export type BucketBackupConfig = Omit<BackupConfig, 'dest' | 'offsite'> & { dest: undefined; offsite: OffsiteConfig };

/**
 * list, verify, prune and restore with --remote act on the bucket: `remote` is set and `dest`
 * is undefined (restore keeps DEST when given: its snapshot and journal go there).
 */
export type OnBucket<C extends CommonConfig> = Omit<C, 'dest'> & { dest: undefined; remote: S3Settings };

export type VerifySelection = { kind: 'latest' } | { kind: 'all' } | { kind: 'archive'; name: string };

export interface FreshnessConfig {
  schedule: string;
  timeZone: string;
  graceSeconds: number;
}

export interface VerifyConfig extends CommonConfig {
  command: 'verify';
  selection: VerifySelection;
  freshness: FreshnessConfig | undefined;
  /** Judge restorability as a restore with --allow-absolute-symlinks would. */
  allowAbsoluteSymlinks: boolean;
  /** age identities for encrypted archives; without them those are checked by checksum only. */
  identities?: readonly AgeIdentity[];
}

export interface ListConfig extends CommonConfig {
  command: 'list';
  json: boolean;
}

export interface PruneConfig extends CommonConfig {
  command: 'prune';
  retention: RetentionPolicy;
  dryRun: boolean;
  /** Print the plan as one JSON document on stdout. */
  json: boolean;
}

export interface RestoreConfig extends CommonConfig {
  command: 'restore';
  archive: string;
  target: string;
  mode: RestoreMode;
  dryRun: boolean;
  snapshot: boolean;
  allowUnverified: boolean;
  /** Recreate absolute symlink targets verbatim instead of refusing the archive. */
  allowAbsoluteSymlinks: boolean;
  /** Restore extended attributes, POSIX ACLs and file capabilities stored in the archive. */
  xattrs: boolean;
  /** Identifies one restore request; a request DEST records as done is never run again. */
  requestId: string | undefined;
  /** Only these archive paths (files or directory subtrees), root-relative; undefined restores everything. */
  paths: PathSelection | undefined;
  /** The Kubernetes Job running this request: a retry of the Job that completed it exits 0. */
  jobUid: string | undefined;
  /** Workloads stopped for the restore (runner/consistency/scale-down.ts); undefined when none. */
  scaleDown: ScaleDownConfig | undefined;
  /** age identities to decrypt an encrypted archive with. */
  identities?: readonly AgeIdentity[];
}

export interface ScaleDownConfig {
  workloads: Workload[];
  namespace: string;
  /** undefined outside a cluster: then the restore fails before anything changes. */
  apiUrl: string | undefined;
  credentialsDir: string;
  timeoutSeconds: number;
}

/** `pvc-backup cat ARCHIVE PATH`: one regular file of an archive to stdout, checked against the manifest first. */
export interface CatConfig extends CommonConfig {
  command: 'cat';
  /** An archive file name, or latest. */
  archive: string;
  /** The file, root-relative as the archive stores it. */
  path: string;
  identities?: AgeIdentity[];
}

/** `restore --remote`: the archive streams from the bucket; DEST, when given, holds the snapshot and journal (restore/source.ts says where they go without it). */
export type BucketRestoreConfig = Omit<RestoreConfig, 'dest'> & { dest: string | undefined; remote: S3Settings };

export type RunnerConfig =
  | BackupConfig
  | BucketBackupConfig
  | VerifyConfig
  | OnBucket<VerifyConfig>
  | ListConfig
  | OnBucket<ListConfig>
  | PruneConfig
  | OnBucket<PruneConfig>
  | RestoreConfig
  | BucketRestoreConfig
  | CatConfig
  | OnBucket<CatConfig>;
export type CommandName = RunnerConfig['command'];

/** The commands that report their outcome (metrics, Events, notifications, ping). */
export type MonitoredCommand = 'backup' | 'verify' | 'restore';
export const MONITORED_COMMANDS: readonly MonitoredCommand[] = ['backup', 'verify', 'restore'];
export function isMonitored(command: string): command is MonitoredCommand {
  return MONITORED_COMMANDS.includes(command as MonitoredCommand);
}

export type NotifyOn = 'failure' | 'always';

/** Where a backup, verify or restore run reports its outcome; undefined when it reports nowhere. */
export interface MonitoringConfig {
  /** Kubernetes namespace: the metrics' namespace label and the Events' namespace. */
  namespace: string | undefined;
  /** The claim the run reads or writes, named in Events and notifications. */
  claimName: string | undefined;
  pushgatewayUrl: URL | undefined;
  /** backup only: the schedule it runs on, so the metrics say when the next backup is due. */
  schedule: { schedule: string; timeZone: string } | undefined;
  /** Post Events on this claim; the API address is undefined outside a cluster (a warning then). */
  events: { claimName: string; namespace: string; apiUrl: string | undefined; credentialsDir: string } | undefined;
  notify: NotifyTarget[];
  notifyOn: NotifyOn;
  pingUrl: URL | undefined;
  /** Most time each delivery may take, retries included. */
  timeoutSeconds: number;
}

export type ParsedCommandLine =
  | { kind: 'help'; command: CommandName | undefined }
  | { kind: 'version' }
  | { kind: 'run'; config: RunnerConfig; monitoring: MonitoringConfig | undefined };

type FlagKind = 'string' | 'dir' | 'int' | 'bool' | 'list' | 'duration';

interface FlagSpec {
  /** Long flag name without dashes. */
  name: string;
  kind: FlagKind;
  help: string;
  /** Environment variable; defaults to PVC_BACKUP_<NAME>. `null` means none. */
  env?: string | null;
  /** Shown in --help; the typed default itself lives in the builder. */
  defaultText?: string;
  /** For bool flags: the `--no-x` form sets false. */
  negatable?: boolean;
  metavar?: string;
}

const commonFlags: FlagSpec[] = [
  { name: 'dest', kind: 'dir', metavar: 'DIR', help: 'backup directory (the mounted backup volume)' },
  { name: 'prefix', kind: 'string', metavar: 'NAME', help: 'archive name prefix; latest and keep-last are per prefix', defaultText: 'backup' },
  { name: 'log-format', kind: 'string', metavar: 'text|json', help: 'log line format', defaultText: 'text' },
  { name: 'lock-stale-after', kind: 'duration', metavar: 'DURATION', help: 'break a lock whose heartbeat is older than this (e.g. 600, 10m, 1h)', defaultText: '10m' },
  { name: 'progress-interval', kind: 'duration', metavar: 'DURATION', help: 'time between progress lines', defaultText: '10s' },
];

/** --keep-* flags, shared by backup (after a verified backup) and prune; one policy with restic's semantics. */
function retentionFlags(lastHelp: string): FlagSpec[] {
  const newestOfEach = (period: string) => `keep the newest archive of each of the last N ${period} that have archives (UTC)`;
  return [
    { name: 'keep-last', kind: 'int', metavar: 'N', help: lastHelp },
    { name: 'keep-hourly', kind: 'int', metavar: 'N', help: newestOfEach('hours') },
    { name: 'keep-daily', kind: 'int', metavar: 'N', help: newestOfEach('days') },
    { name: 'keep-weekly', kind: 'int', metavar: 'N', help: newestOfEach('ISO weeks (Monday to Sunday)') },
    { name: 'keep-monthly', kind: 'int', metavar: 'N', help: newestOfEach('months') },
    { name: 'keep-yearly', kind: 'int', metavar: 'N', help: newestOfEach('years') },
  ];
}
/** Where backup, verify and restore report their outcome (runner/monitoring). */
const monitoringFlags: FlagSpec[] = [
  { name: 'pushgateway-url', kind: 'string', metavar: 'URL', help: 'after the run, push its metrics to this Prometheus Pushgateway (one group per job, namespace, prefix and command)' },
  {
    name: 'notify-url',
    kind: 'list',
    metavar: 'URL',
    help: 'send the outcome to this webhook (repeatable; variable: one per line): a JSON POST, Slack format for hooks.slack.com or slack+https://..., ntfy format for ntfy.sh or ntfy+https://...',
  },
  { name: 'notify-on', kind: 'string', metavar: 'failure|always', help: 'which outcomes --notify-url is told about', defaultText: 'failure' },
  { name: 'ping-url', kind: 'string', metavar: 'URL', help: "dead-man's switch (healthchecks.io style): URL/start when the run starts, then URL on success or URL/fail on failure" },
  { name: 'events', kind: 'bool', help: "post a Kubernetes Event (events.k8s.io/v1) about the outcome on --claim-name, with the pod's service-account token" },
  { name: 'claim-name', kind: 'string', metavar: 'NAME', help: 'the PersistentVolumeClaim the Events are about (the source for backup and verify, the target for restore)' },
  { name: 'namespace', kind: 'string', metavar: 'NS', help: 'Kubernetes namespace: the namespace label of the metrics, the namespace of the Events (and, for restore, of the --scale-down workloads)', defaultText: 'the service account\'s namespace file' },
  { name: 'kube-api', kind: 'string', metavar: 'URL', help: 'Kubernetes API server for --events (and restore --scale-down)', defaultText: 'https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT' },
  { name: 'service-account-dir', kind: 'string', metavar: 'DIR', help: 'directory holding the service-account token, ca.crt and namespace files', defaultText: SERVICE_ACCOUNT_DIR },
  { name: 'monitoring-timeout', kind: 'duration', metavar: 'DURATION', help: 'most time each metrics push, Event, notification and ping may take, retries included; they are sent in parallel', defaultText: '5s' },
];

/** --remote and the bucket's settings (S3-compatible stores), shared by every command. */
const remoteFlags: FlagSpec[] = [
  { name: 'remote', kind: 'string', metavar: 's3://BUCKET[/KEY-PREFIX]', help: 'S3-compatible bucket; credentials come only from the AWS SDK chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, web identity, shared files)' },
  { name: 's3-endpoint', kind: 'string', metavar: 'URL', help: 'endpoint of an S3-compatible store (MinIO, Ceph RGW, R2...)', defaultText: 'AWS_ENDPOINT_URL, else AWS' },
  { name: 's3-region', kind: 'string', metavar: 'REGION', help: 'bucket region', defaultText: 'AWS_REGION, then us-east-1' },
  { name: 's3-path-style', kind: 'bool', negatable: true, help: 'path-style addressing (endpoint/bucket/key) instead of virtual-host (bucket.endpoint/key)', defaultText: 'on when an endpoint is given' },
  { name: 's3-storage-class', kind: 'string', metavar: 'CLASS', help: 'storage class of the uploaded objects (e.g. STANDARD_IA)' },
  { name: 's3-sse', kind: 'string', metavar: 'AES256|aws:kms', help: 'server-side encryption header sent with every upload' },
  { name: 's3-sse-kms-key-id', kind: 'string', metavar: 'KEY', help: 'KMS key id for --s3-sse aws:kms' },
  { name: 's3-max-parts', kind: 'int', metavar: 'N', help: "the store's limit of parts per multipart upload (some stores allow 1000); part sizes are chosen to fit", defaultText: '10000' },
];

/** backup only: the schedule it runs on, for the metrics' next-due time. */
const backupScheduleFlags: FlagSpec[] = [
  { name: 'schedule', kind: 'string', metavar: 'CRON', help: 'the schedule this backup runs on; with --pushgateway-url the push includes when the next backup is due' },
  { name: 'time-zone', kind: 'string', metavar: 'TZ', help: 'time zone of --schedule', defaultText: 'Etc/UTC' },
];

/** verify and restore: the age identity file for encrypted archives. */
function ageIdentityFlag(use: string): FlagSpec {
  return { name: 'age-identity-file', kind: 'string', metavar: 'FILE', help: `age identity file (age -i format, as age-keygen writes it) for encrypted archives; ${use}` };
}

const commandFlags: Record<CommandName, { summary: string; usage: string; flags: FlagSpec[]; positional?: string }> = {
  backup: {
    summary: 'stream SOURCE into one new verified archive in DEST, then prune',
    usage: 'backup --source DIR|--dump NAME (--dest DIR [--remote s3://BUCKET/PATH] | --remote s3://BUCKET/PATH) [--prefix NAME] [--compression gzip|zstd|none] [--level N] [--exclude GLOB]... [--keep-last N] [--keep-hourly|daily|weekly|monthly|yearly N]... [--age-recipient age1…]... [--age-recipients-file FILE]',
    flags: [
      { name: 'source', kind: 'dir', metavar: 'DIR', help: 'directory to back up (the mounted source volume)' },
      { name: 'compression', kind: 'string', metavar: 'gzip|zstd|none', help: 'archive compression', defaultText: 'gzip' },
      { name: 'level', kind: 'int', metavar: 'N', help: 'compression level (gzip 1-9, zstd 1-19)', defaultText: 'gzip 6, zstd 3' },
      { name: 'exclude', kind: 'list', metavar: 'GLOB', help: 'skip paths matching GLOB (relative to SOURCE, repeatable; variable: one per line)' },
      ...retentionFlags('after a verified backup, prune this prefix, keeping the newest N archives (and what the other --keep-* flags keep)').map((f) =>
        f.name === 'keep-last' ? { ...f, defaultText: 'no pruning' } : f,
      ),
      { name: 'allow-empty', kind: 'bool', help: 'allow backing up an empty source (refused by default: it usually means a wrong mount)' },
      { name: 'skip-unreadable', kind: 'bool', help: 'skip files that cannot be archived (permission denied, sockets, FIFOs, devices) with a warning instead of failing' },
      {
        name: 'age-recipient',
        kind: 'list',
        metavar: 'age1…',
        help: 'encrypt the archive and its manifest with age to this X25519 public key (repeatable; variable: one per line); the archive is then NAME.tar.*.age',
      },
      { name: 'age-recipients-file', kind: 'string', metavar: 'FILE', help: 'encrypt to every recipient in FILE (age -R format: one age1… per line, # comments)' },
      { name: 'xattrs', kind: 'bool', negatable: true, help: 'archive extended attributes, POSIX ACLs and file capabilities (--no-xattrs to leave them out)', defaultText: 'on' },
      {
        name: 'sqlite',
        kind: 'list',
        metavar: 'GLOB',
        help: 'archive SQLite databases matching GLOB (the --exclude rules) as consistent online copies checked with PRAGMA integrity_check, without their -wal/-shm/-journal (repeatable; variable: one per line)',
      },
      { name: 'dump', kind: 'list', metavar: 'NAME', help: 'archive the pre-backup dump NAME from --dumps-dir under ./.pvc-backup-dumps/NAME/; a missing, failed or empty dump fails the backup (repeatable; variable: one per line)' },
      { name: 'dumps-dir', kind: 'dir', metavar: 'DIR', help: 'the scratch directory the dump init containers wrote into', defaultText: DUMPS_MOUNT_PATH },
      { name: 'remote-keep-last', kind: 'int', metavar: 'N', help: 'after a verified upload, keep the newest N archives of the prefix in the bucket (the other --keep-* tiers apply there too)', defaultText: '--keep-last' },
      ...remoteFlags,
      ...monitoringFlags,
      ...backupScheduleFlags,
    ],
  },
  verify: {
    summary: 'fully re-read archives: checksum, decompression, every entry, manifest',
    usage: 'verify (--dest DIR | --remote s3://BUCKET/PATH) [--prefix NAME] [ARCHIVE | --latest | --all] [--schedule CRON [--time-zone TZ] [--grace DURATION]] [--age-identity-file FILE]',
    positional: 'ARCHIVE',
    flags: [
      { name: 'latest', kind: 'bool', env: null, help: 'verify the newest archive of the prefix (the default)' },
      { name: 'all', kind: 'bool', env: null, help: 'verify every archive of the prefix' },
      { name: 'schedule', kind: 'string', metavar: 'CRON', help: 'backup schedule; fail when the newest archive is older than the last expected run plus the grace period' },
      { name: 'time-zone', kind: 'string', metavar: 'TZ', help: 'time zone of --schedule', defaultText: 'Etc/UTC' },
      { name: 'grace', kind: 'duration', metavar: 'DURATION', help: 'how late a backup may finish before it counts as missing', defaultText: '1h' },
      { name: 'allow-absolute-symlinks', kind: 'bool', help: 'count absolute symlink targets as restorable, as restore --allow-absolute-symlinks does' },
      ageIdentityFlag('without it, encrypted archives are checked by checksum (and age header) only'),
      ...remoteFlags,
      ...monitoringFlags,
    ],
  },
  list: {
    summary: 'list archives, newest first',
    usage: 'list (--dest DIR | --remote s3://BUCKET/PATH) [--prefix NAME] [--json]',
    flags: [{ name: 'json', kind: 'bool', help: 'print a JSON array instead of a table' }, ...remoteFlags],
  },
  prune: {
    summary: 'delete the archives of the prefix that no --keep-* rule keeps',
    usage: 'prune (--dest DIR | --remote s3://BUCKET/PATH) [--prefix NAME] [--keep-last N] [--keep-hourly|daily|weekly|monthly|yearly N]... [--dry-run] [--json]',
    flags: [
      ...retentionFlags('keep the newest N archives'),
      { name: 'dry-run', kind: 'bool', help: 'print per archive keep or delete and the rules that keep it; delete nothing' },
      { name: 'json', kind: 'bool', help: 'print the plan (per archive: keep or delete, rules) as one JSON document; log lines go to stderr' },
      ...remoteFlags,
    ],
  },
  restore: {
    summary: 'verify an archive, snapshot the target, then restore into it',
    usage: 'restore (--dest DIR [--remote s3://BUCKET/PATH] | --remote s3://BUCKET/PATH) [--prefix NAME] --archive NAME|latest --target DIR [--mode replace|merge] [--path P]... [--dry-run] [--no-snapshot] [--allow-unverified] [--allow-absolute-symlinks] [--age-identity-file FILE] [--scale-down KIND/NAME]...',
    flags: [
      { name: 'archive', kind: 'string', metavar: 'NAME|latest', help: 'archive file name in DEST, or latest', defaultText: 'latest' },
      { name: 'target', kind: 'dir', metavar: 'DIR', help: 'directory to restore into (the mounted volume; never removed itself)' },
      { name: 'mode', kind: 'string', metavar: 'replace|merge', help: 'replace: target ends up exactly the archive; merge: extract over it', defaultText: 'replace (merge with --path)' },
      {
        name: 'path',
        kind: 'list',
        metavar: 'P',
        help: 'restore only this file or directory subtree of the archive, as stored in it (./etc/app.conf or etc/app.conf), merged into the target; a path not in the archive fails before anything is written (repeatable; variable: one per line)',
      },
      { name: 'dry-run', kind: 'bool', help: 'print what would be added, replaced and removed; change nothing' },
      { name: 'snapshot', kind: 'bool', negatable: true, help: 'archive the current target into DEST before restoring (--no-snapshot to skip)', defaultText: 'on' },
      { name: 'allow-unverified', kind: 'bool', help: 'restore an archive that has no checksum/manifest sidecars (made by another tool)' },
      { name: 'allow-absolute-symlinks', kind: 'bool', help: 'recreate symlinks with absolute targets verbatim (they are never followed while restoring) instead of refusing the archive' },
      { name: 'xattrs', kind: 'bool', negatable: true, help: 'restore extended attributes, POSIX ACLs and file capabilities from the archive (--no-xattrs to skip them)', defaultText: 'on' },
      { name: 'request-id', kind: 'string', metavar: 'ID', help: 'run this restore request once: DEST records it when done, and running it again fails (exit 2) unless it is a retry of the same --job-uid' },
      { name: 'job-uid', kind: 'string', metavar: 'UID', help: 'the Kubernetes Job running the request (the chart passes its UID): a retry of the Job that completed the request exits 0' },
      {
        name: 'scale-down',
        kind: 'list',
        metavar: 'KIND/NAME',
        help: 'scale this Deployment or StatefulSet (deployment/NAME, statefulset/NAME) to 0 and wait for its pods to stop before restoring, and back afterwards, also on failure (repeatable; variable: one per line)',
      },
      { name: 'scale-down-timeout', kind: 'duration', metavar: 'DURATION', help: 'how long to wait for the --scale-down pods to stop', defaultText: '5m' },
      ageIdentityFlag('needed to restore an encrypted archive'),
      ...remoteFlags,
      ...monitoringFlags,
    ],
  },
  cat: {
    summary: 'write one file of an archive to stdout, after checking it against the manifest (SHA-256 and size)',
    usage: 'cat (--dest DIR | --remote s3://BUCKET/PATH) [--prefix NAME] ARCHIVE|latest PATH [--age-identity-file FILE]',
    positional: 'ARCHIVE PATH',
    flags: [ageIdentityFlag('needed for an encrypted archive'), ...remoteFlags],
  },
};

export const COMMANDS = Object.keys(commandFlags) as CommandName[];

function envName(spec: FlagSpec): string | null {
  if (spec.env === null) return null;
  return spec.env ?? `PVC_BACKUP_${spec.name.toUpperCase().replace(/-/g, '_')}`;
}

type RawValues = Map<string, string | string[] | boolean>;

const ENV_PREFIX = 'PVC_BACKUP_';

/** Every variable some command reads. A variable of another command is not an error: the chart's extraEnv reaches every pod. */
function knownVariables(): Set<string> {
  const known = new Set<string>();
  for (const spec of [...commonFlags, ...COMMANDS.flatMap((c) => commandFlags[c].flags)]) {
    const variable = envName(spec);
    if (variable) known.add(variable);
  }
  return known;
}

/**
 * Variables Kubernetes itself sets in every pod of a namespace that has a Service named
 * pvc-backup (service links: PVC_BACKUP_SERVICE_HOST, PVC_BACKUP_PORT_8080_TCP_ADDR, …).
 */
const SERVICE_LINK = /^PVC_BACKUP_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$/;

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** A misspelled PVC_BACKUP_* variable would be ignored without a word; it is a usage error instead. */
function checkVariableNames(env: Record<string, string | undefined>): void {
  const known = knownVariables();
  const unknown = Object.keys(env)
    .filter((name) => name.startsWith(ENV_PREFIX) && env[name] !== undefined && !known.has(name) && !SERVICE_LINK.test(name))
    .sort();
  if (unknown.length === 0) return;
  const name = unknown[0]!;
  const squash = (n: string) => n.replace(/_/g, '');
  const closest = [...known].sort((a, b) => editDistance(squash(name), squash(a)) - editDistance(squash(name), squash(b)) || (a < b ? -1 : 1))[0]!;
  const others = unknown.length > 1 ? ` (also unknown: ${unknown.slice(1).join(', ')})` : '';
  throw new UsageError(
    `unknown variable ${name}${others}: the closest known one is ${closest}; rename or unset it (pvc-backup <command> --help lists every variable)`,
  );
}

function parseDuration(flag: string, text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new UsageError(`--${flag} must be a duration like 30s, 10m, 1h or a number of seconds, got "${text}"`);
  const value = Number(match[1]);
  const unit = match[2] ?? 's';
  const seconds = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[unit]!;
  return value * seconds;
}

function parseInteger(flag: string, text: string): number {
  if (!/^-?\d+$/.test(text.trim())) throw new UsageError(`--${flag} must be a whole number, got "${text}"`);
  return Number(text.trim());
}

function parseBool(flag: string, text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(t)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(t)) return false;
  throw new UsageError(`${flag} must be true or false, got "${text}"`);
}

/** Reads flags first, then fills what is still unset from the environment. */
function collect(command: CommandName, args: string[], env: Record<string, string | undefined>) {
  const specs = [...commonFlags, ...commandFlags[command].flags];
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values: RawValues = new Map();
  const positionals: string[] = [];
  /** Flags given on the command line (not from variables). */
  const given = new Set<string>();

  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown flag "${arg}" for ${command}; see pvc-backup ${command} --help`);
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let inline = eq === -1 ? undefined : arg.slice(eq + 1);
    let spec = byName.get(name);
    let negated = false;
    if (!spec && name.startsWith('no-')) {
      const base = byName.get(name.slice(3));
      if (base?.negatable) {
        spec = base;
        negated = true;
        name = base.name;
      }
    }
    if (!spec) throw new UsageError(`unknown flag "--${name}" for ${command}; see pvc-backup ${command} --help`);
    given.add(spec.name);
    if (spec.kind === 'bool') {
      if (inline !== undefined) {
        const v = parseBool(`--${name}`, inline);
        values.set(name, negated ? !v : v);
      } else {
        values.set(name, !negated);
      }
      continue;
    }
    if (inline === undefined) {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        throw new UsageError(`--${name} needs a value (${spec.metavar ?? 'VALUE'})`);
      }
      inline = next;
      i++;
    }
    if (spec.kind === 'list') {
      const list = (values.get(name) as string[] | undefined) ?? [];
      list.push(inline);
      values.set(name, list);
    } else {
      values.set(name, inline);
    }
  }

  for (const spec of specs) {
    if (values.has(spec.name)) continue;
    const variable = envName(spec);
    const raw = variable ? env[variable] : undefined;
    if (raw === undefined || raw === '') continue;
    if (spec.kind === 'bool') values.set(spec.name, parseBool(variable!, raw));
    else if (spec.kind === 'list') values.set(spec.name, raw.split('\n').map((s) => s.trim()).filter(Boolean));
    else values.set(spec.name, raw);
  }
  return { values, positionals, given };
}

function str(values: RawValues, name: string): string | undefined {
  const v = values.get(name);
  return typeof v === 'string' ? v : undefined;
}

function bool(values: RawValues, name: string, fallback = false): boolean {
  const v = values.get(name);
  return typeof v === 'boolean' ? v : fallback;
}

function requireValue(values: RawValues, name: string, command: CommandName): string {
  const v = str(values, name);
  if (v === undefined || v === '') {
    throw new UsageError(`${command} needs --${name} (or ${`PVC_BACKUP_${name.toUpperCase().replace(/-/g, '_')}`})`);
  }
  return v;
}

export interface ParseOptions {
  /** Relative paths are resolved against this directory. */
  cwd?: string;
  /** Check that directory flags exist (off only for checking rendered manifests away from the pod). */
  checkPaths?: boolean;
}

let checkPaths = true;

/** Resolves a directory flag to an absolute path and checks that it exists and is a directory. */
export function existingDirectory(flag: string, value: string, cwd: string): string {
  const resolved = path.resolve(cwd, value);
  if (!checkPaths) return resolved;
  if (!existsSync(resolved)) throw new UsageError(`--${flag} ${resolved} does not exist; create it or mount the volume there`);
  if (!statSync(resolved).isDirectory()) throw new UsageError(`--${flag} ${resolved} is not a directory`);
  return resolved;
}

/**
 * Whether `child` is `parent` or below it, judged on the real paths (symlinks resolved) when
 * paths are checked: a DEST that is a symlink into SOURCE is still inside it.
 */
function isInside(child: string, parent: string): boolean {
  const rel = path.relative(realPath(parent), realPath(child));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The real path of p, or, when p does not exist (yet), the real path of its deepest existing ancestor plus the rest. */
function realPath(p: string): string {
  if (!checkPaths) return p;
  try {
    return realpathSync(p);
  } catch {
    const parent = path.dirname(p);
    return parent === p ? p : path.join(realPath(parent), path.basename(p));
  }
}

const PREFIX_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

const DEFAULT_PREFIX = 'backup';

/** Prefix, log format and timings; DEST is resolved by each builder (after checking how the paths relate). */
function parseCommon(values: RawValues): Omit<CommonConfig, 'dest'> & { destText: string | undefined } {
  const given = str(values, 'prefix');
  const prefix = given ?? DEFAULT_PREFIX;
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new UsageError(`--prefix must start with a letter or digit and use only letters, digits, ".", "_" and "-", got "${prefix}"`);
  }
  const logFormat = str(values, 'log-format') ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') throw new UsageError(`--log-format must be text or json, got "${logFormat}"`);
  const lockStale = str(values, 'lock-stale-after');
  const progress = str(values, 'progress-interval');
  const lockStaleSeconds = lockStale === undefined ? 600 : parseDuration('lock-stale-after', lockStale);
  const progressSeconds = progress === undefined ? 10 : parseDuration('progress-interval', progress);
  if (lockStaleSeconds < 1) throw new UsageError('--lock-stale-after must be at least 1s');
  if (progressSeconds <= 0) throw new UsageError('--progress-interval must be more than 0');
  return {
    destText: nonEmpty(str(values, 'dest')),
    prefix,
    ...(given === undefined ? { prefixDefaulted: true } : {}),
    logFormat,
    lockStaleSeconds,
    progressSeconds,
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** What the builders read besides the flags. */
interface BuildInput {
  values: RawValues;
  positionals: string[];
  /** Flags given on the command line. */
  given: Set<string>;
  cwd: string;
  env: Record<string, string | undefined>;
}

/**
 * --remote and the --s3-* flags as the bucket's settings; undefined without --remote. An --s3-*
 * flag on the command line without --remote is a usage error (the same from a variable is not:
 * a chart may set them for every pod).
 */
function parseRemote({ values, given, env }: BuildInput): S3Settings | undefined {
  const remote = nonEmpty(str(values, 'remote'));
  if (remote === undefined) {
    const stray = [...given].find((f) => f.startsWith('s3-') || f === 'remote-keep-last');
    if (stray) throw new UsageError(`--${stray} applies only with --remote s3://BUCKET/PATH; add --remote or remove --${stray}`);
    return undefined;
  }
  const pathStyle = values.get('s3-path-style');
  return parseS3Settings(
    {
      remote,
      endpoint: str(values, 's3-endpoint'),
      region: str(values, 's3-region'),
      pathStyle: typeof pathStyle === 'boolean' ? pathStyle : undefined,
      storageClass: str(values, 's3-storage-class'),
      sse: str(values, 's3-sse'),
      sseKmsKeyId: str(values, 's3-sse-kms-key-id'),
      maxParts: str(values, 's3-max-parts'),
    },
    env,
  );
}

function needDestOrRemote(command: CommandName): UsageError {
  return new UsageError(`${command} needs --dest (or PVC_BACKUP_DEST) or --remote s3://BUCKET/PATH (or PVC_BACKUP_REMOTE)${command === 'backup' ? ', or both' : ''}`);
}

/** The --keep-* flags as one policy; undefined when none is given. Zero counts are allowed while another is above 0. */
function parseRetention(values: RawValues): RetentionPolicy | undefined {
  const policy: RetentionPolicy = {};
  for (const tier of TIERS) {
    const text = str(values, `keep-${tier}`);
    if (text !== undefined) policy[tier] = parseInteger(`keep-${tier}`, text);
  }
  if (Object.keys(policy).length === 0) return undefined;
  normalizePolicy(policy);
  return policy;
}

function noPositionals(command: CommandName, positionals: string[]) {
  if (positionals.length > 0) throw new UsageError(`${command} takes no argument "${positionals[0]}"; see pvc-backup ${command} --help`);
}

function buildBackup(input: BuildInput): BackupConfig | BucketBackupConfig {
  const { values, positionals, cwd } = input;
  noPositionals('backup', positionals);
  const { destText, ...rest } = parseCommon(values);
  const remote = parseRemote(input);
  if (destText === undefined && !remote) throw needDestOrRemote('backup');
  const dumpNames = (values.get('dump') as string[] | undefined) ?? [];
  const sqlite = (values.get('sqlite') as string[] | undefined) ?? [];
  // A backup of dumps alone has no source; without dumps the source is required as always.
  const sourceText = dumpNames.length > 0 && str(values, 'source') === undefined ? undefined : requireValue(values, 'source', 'backup');
  if (sourceText === undefined && sqlite.length > 0) throw new UsageError('--sqlite needs --source DIR: the databases are read from the source directory');
  let source: string | undefined;
  if (sourceText !== undefined && destText !== undefined) {
    // How the two relate is the real problem, also while one of them does not exist yet: checked first.
    const [destPath, sourcePath] = [path.resolve(cwd, destText), realPath(path.resolve(cwd, sourceText))];
    if (isInside(destPath, sourcePath)) {
      throw new UsageError(`--dest ${destPath} is inside --source ${sourcePath}; the backup would archive itself, use a directory outside the source`);
    }
    if (isInside(sourcePath, destPath)) {
      throw new UsageError(`--source ${sourcePath} is inside --dest ${destPath}; back up a directory outside the backup directory`);
    }
  }
  if (sourceText !== undefined) {
    // The real path: a source given as a symlink is archived as the directory it points to.
    source = realPath(existingDirectory('source', sourceText, cwd));
  }
  const dest = destText === undefined ? undefined : existingDirectory('dest', destText, cwd);
  const dumpsDirText = str(values, 'dumps-dir');
  if (dumpsDirText !== undefined && dumpNames.length === 0) throw new UsageError('--dumps-dir is given without --dump NAME; name each dump to archive');
  for (const name of dumpNames) validateDumpName(name);
  const duplicate = dumpNames.find((name, i) => dumpNames.indexOf(name) !== i);
  if (duplicate !== undefined) throw new UsageError(`--dump ${duplicate} is given twice; each dump needs its own name`);
  const dumps = dumpNames.length > 0 ? { dir: existingDirectory('dumps-dir', dumpsDirText ?? DUMPS_MOUNT_PATH, cwd), names: dumpNames } : undefined;
  const compression = str(values, 'compression') ?? 'gzip';
  if (!COMPRESSIONS.includes(compression as Compression)) {
    throw new UsageError(`--compression must be one of ${COMPRESSIONS.join(', ')}, got "${compression}"`);
  }
  const range = LEVEL_RANGE[compression as Compression];
  const levelText = str(values, 'level');
  let level: number | undefined;
  if (levelText !== undefined) {
    if (!range) throw new UsageError(`--level does not apply to --compression none; remove it`);
    level = parseInteger('level', levelText);
    if (level < range.min || level > range.max) {
      throw new UsageError(`--level for ${compression} must be ${range.min}-${range.max}, got ${level}`);
    }
  }
  const retention = parseRetention(values);
  const base = {
    command: 'backup' as const,
    ...rest,
    source,
    compression: compression as Compression,
    level: level ?? range?.default,
    excludes: (values.get('exclude') as string[] | undefined) ?? [],
    allowEmpty: bool(values, 'allow-empty'),
    skipUnreadable: bool(values, 'skip-unreadable'),
    ...parseRecipients(values, cwd),
    xattrs: bool(values, 'xattrs', true),
    sqlite,
    dumps,
  };
  const offsite = remote ? { settings: remote, retention: remoteRetention(values, retention) } : undefined;
  // Bucket only: the --keep-* policy is the bucket's (there is no directory to prune).
  if (dest === undefined) return { ...base, dest: undefined, retention: undefined, offsite: offsite! };
  return { ...base, dest, retention, offsite };
}

/** --age-recipient and --age-recipients-file, read and checked before anything is written. */
function parseRecipients(values: RawValues, cwd: string): { recipients?: AgeRecipient[] } {
  const given = (values.get('age-recipient') as string[] | undefined) ?? [];
  const file = str(values, 'age-recipients-file');
  const recipients: AgeRecipient[] = given.map((text) => naming('age-recipient', () => parseRecipient(text)));
  if (file !== undefined) recipients.push(...naming('age-recipients-file', () => readRecipientsFile(path.resolve(cwd, file))));
  return recipients.length > 0 ? { recipients } : {};
}

/** The key readers' one-line errors, prefixed with the flag they came from. */
function naming<T>(flag: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`--${flag}: ${error.message}`, error.code);
    throw error;
  }
}

/** --age-identity-file, read (and its bytes wiped) once here. */
function parseIdentities(values: RawValues, cwd: string): { identities?: AgeIdentity[] } {
  const file = str(values, 'age-identity-file');
  // Parsing a rendered command line without its pod's files (checkPaths off): the key is not read.
  if (file !== undefined && !checkPaths) return { identities: [] };
  return file === undefined ? {} : { identities: naming('age-identity-file', () => readIdentityFile(path.resolve(cwd, file))) };
}

/** The bucket's policy: the --keep-* tiers, with --remote-keep-last in place of --keep-last when given. */
function remoteRetention(values: RawValues, local: RetentionPolicy | undefined): RetentionPolicy | undefined {
  const text = str(values, 'remote-keep-last');
  if (text === undefined) return local;
  const last = parseInteger('remote-keep-last', text);
  if (last < 1) throw new UsageError(`--remote-keep-last must be at least 1, got ${last}`);
  const policy: RetentionPolicy = { ...local, last };
  normalizePolicy(policy);
  return policy;
}

/** DEST checked, or the bucket of --remote (which then wins: list/verify/prune act on it). */
function parseWhere(input: BuildInput, command: CommandName): CommonConfig | (Omit<CommonConfig, 'dest'> & { dest: undefined; remote: S3Settings }) {
  const { destText, ...rest } = parseCommon(input.values);
  const remote = parseRemote(input);
  if (remote) return { ...rest, dest: undefined, remote };
  if (destText === undefined) throw needDestOrRemote(command);
  return { ...rest, dest: existingDirectory('dest', destText, input.cwd) };
}

function buildVerify(input: BuildInput): VerifyConfig | OnBucket<VerifyConfig> {
  const { values, positionals } = input;
  const common = parseWhere(input, 'verify');
  const chosen = [bool(values, 'latest'), bool(values, 'all'), positionals.length > 0].filter(Boolean).length;
  if (chosen > 1 || positionals.length > 1) throw new UsageError('verify takes one of ARCHIVE, --latest or --all');
  let selection: VerifySelection = { kind: 'latest' };
  if (bool(values, 'all')) selection = { kind: 'all' };
  else if (positionals.length === 1) selection = { kind: 'archive', name: archiveName(positionals[0]!) };
  const schedule = str(values, 'schedule');
  const graceText = str(values, 'grace');
  const timeZone = str(values, 'time-zone') ?? 'Etc/UTC';
  if (schedule !== undefined) validateSchedule(schedule, timeZone);
  const freshness = schedule
    ? { schedule, timeZone, graceSeconds: graceText === undefined ? 3600 : parseDuration('grace', graceText) }
    : undefined;
  return { command: 'verify', ...common, selection, freshness, allowAbsoluteSymlinks: bool(values, 'allow-absolute-symlinks'), ...parseIdentities(values, input.cwd) };
}

/** Archive arguments are names inside DEST; a path is accepted when it points into DEST. */
function archiveName(value: string): string {
  const name = path.basename(value);
  if (name === '' || name === '.' || name === '..') throw new UsageError(`"${value}" is not an archive name`);
  return name;
}

function buildList(input: BuildInput): ListConfig | OnBucket<ListConfig> {
  noPositionals('list', input.positionals);
  return { command: 'list', ...parseWhere(input, 'list'), json: bool(input.values, 'json') };
}

function buildPrune(input: BuildInput): PruneConfig | OnBucket<PruneConfig> {
  const { values, positionals } = input;
  noPositionals('prune', positionals);
  const common = parseWhere(input, 'prune');
  const retention = parseRetention(values);
  if (!retention) {
    throw new UsageError(
      `prune needs --keep-last N or another --keep-* (${TIERS.filter((t) => t !== 'last').map((t) => `--keep-${t}`).join(', ')}), or their PVC_BACKUP_KEEP_* variables: prune never runs without a policy`,
    );
  }
  return { command: 'prune', ...common, retention, dryRun: bool(values, 'dry-run'), json: bool(values, 'json') };
}

function buildRestore(input: BuildInput): RestoreConfig | BucketRestoreConfig {
  const { values, positionals, cwd, env } = input;
  noPositionals('restore', positionals);
  const { destText, ...rest } = parseCommon(values);
  const remote = parseRemote(input);
  if (destText === undefined && !remote) throw needDestOrRemote('restore');
  const targetText = requireValue(values, 'target', 'restore');
  if (destText !== undefined) {
    // How the two relate first (see buildBackup), then whether they exist.
    const [destPath, targetPath] = [path.resolve(cwd, destText), path.resolve(cwd, targetText)];
    if (isInside(destPath, targetPath) && realPath(destPath) !== realPath(targetPath)) {
      // Allowed only if the backup directory is excluded from replace; refusing is the safe, simple rule.
      throw new UsageError(`--dest ${destPath} is inside --target ${targetPath}; a replace would delete the backups, use a directory outside the target`);
    }
    if (isInside(targetPath, destPath)) {
      throw new UsageError(`--target ${targetPath} is inside --dest ${destPath}; restore into a directory outside the backup directory`);
    }
  }
  const dest = destText === undefined ? undefined : existingDirectory('dest', destText, cwd);
  const target = existingDirectory('target', targetText, cwd);
  const pathTexts = (values.get('path') as string[] | undefined) ?? [];
  const paths = pathTexts.length > 0 ? new PathSelection(pathTexts.map((t) => parseRestorePath(t))) : undefined;
  const mode = str(values, 'mode') ?? (paths ? 'merge' : 'replace');
  if (mode !== 'replace' && mode !== 'merge') throw new UsageError(`--mode must be replace or merge, got "${mode}"`);
  if (paths && mode === 'replace') throw new UsageError('--mode replace cannot be combined with --path: a part of an archive is restored by merging it into the target (leave --mode out)');
  const archive = str(values, 'archive') ?? 'latest';
  const restore = {
    command: 'restore' as const,
    ...rest,
    archive: archive === 'latest' ? 'latest' : archiveName(archive),
    target,
    mode: mode as RestoreMode,
    dryRun: bool(values, 'dry-run'),
    snapshot: bool(values, 'snapshot', true),
    allowUnverified: bool(values, 'allow-unverified'),
    allowAbsoluteSymlinks: bool(values, 'allow-absolute-symlinks'),
    xattrs: bool(values, 'xattrs', true),
    requestId: parseRequestId(str(values, 'request-id')),
    jobUid: parseJobUid(str(values, 'job-uid')),
    paths,
    scaleDown: parseScaleDown(values, env),
    ...parseIdentities(values, cwd),
  };
  if (remote) return { ...restore, dest, remote };
  return { ...restore, dest: dest! };
}

/** --scale-down KIND/NAME...: the workloads, their namespace and the API to reach them. */
function parseScaleDown(values: RawValues, env: Record<string, string | undefined>): ScaleDownConfig | undefined {
  const texts = (values.get('scale-down') as string[] | undefined) ?? [];
  const timeoutText = str(values, 'scale-down-timeout');
  if (texts.length === 0) {
    if (timeoutText !== undefined) throw new UsageError('--scale-down-timeout is given without --scale-down KIND/NAME');
    return undefined;
  }
  const workloads = texts.map(parseWorkload);
  const credentialsDir = str(values, 'service-account-dir') ?? SERVICE_ACCOUNT_DIR;
  const namespace = str(values, 'namespace') ?? readNamespaceFile(credentialsDir);
  if (namespace === undefined) throw new UsageError(`--scale-down needs --namespace NS (there is no namespace file in ${credentialsDir})`);
  const kubeApi = str(values, 'kube-api');
  const timeoutSeconds = timeoutText === undefined ? 300 : parseDuration('scale-down-timeout', timeoutText);
  if (timeoutSeconds < 1) throw new UsageError('--scale-down-timeout must be at least 1s');
  validateWorkloads(namespace, workloads);
  return { workloads, namespace, apiUrl: kubeApi === undefined ? inClusterApiUrl(env) : httpUrl('kube-api', kubeApi).href, credentialsDir, timeoutSeconds };
}

function parseWorkload(text: string): Workload {
  const slash = text.indexOf('/');
  const kindText = slash === -1 ? '' : text.slice(0, slash).toLowerCase();
  const kind = WORKLOAD_KINDS.find((k) => k.toLowerCase() === kindText);
  if (kind === undefined) {
    throw new UsageError(`--scale-down must be deployment/NAME or statefulset/NAME, got "${text}"`, 'SCALE_DOWN_CONFIG');
  }
  return { kind: kind as WorkloadKind, name: text.slice(slash + 1) };
}

function parseJobUid(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/.test(value)) throw new UsageError(`--job-uid must be a Kubernetes UID (letters, digits and "-"), got "${value}"`);
  return value;
}

function parseRequestId(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value)) {
    throw new UsageError(`--request-id must be 1-64 letters, digits, ".", "_" or "-", got "${value}"`);
  }
  return value;
}

const builders: Record<CommandName, (input: BuildInput) => RunnerConfig> = {
  backup: buildBackup,
  verify: buildVerify,
  list: buildList,
  prune: buildPrune,
  restore: buildRestore,
  cat: buildCat,
};

function buildCat(input: BuildInput): CatConfig | OnBucket<CatConfig> {
  const { positionals } = input;
  const common = parseWhere(input, 'cat');
  const identities = parseIdentities(input.values, input.cwd);
  if (positionals.length !== 2) throw new UsageError('cat takes ARCHIVE (a file name or latest) and PATH (the file inside it, e.g. ./etc/app.conf)');
  const [archive, file] = positionals as [string, string];
  return { command: 'cat', ...common, archive: archive === 'latest' ? 'latest' : archiveName(archive), path: parseRestorePath(file, 'PATH'), ...identities } as CatConfig | OnBucket<CatConfig>;
}

/**
 * Parses `pvc-backup <command> [flags]` plus its environment into one typed config.
 * Throws UsageError (exit 2) with a one-line message; touches nothing on disk.
 */
export function parseCommandLine(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  options: ParseOptions = {},
): ParsedCommandLine {
  checkPaths = options.checkPaths ?? true;
  try {
    return parseWith(argv, env, options.cwd ?? process.cwd());
  } finally {
    checkPaths = true;
  }
}

function parseWith(argv: readonly string[], env: Record<string, string | undefined>, cwd: string): ParsedCommandLine {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    const topic = first === 'help' ? rest[0] : undefined;
    if (topic !== undefined && !COMMANDS.includes(topic as CommandName)) throw new UsageError(`unknown command "${topic}"; commands: ${COMMANDS.join(', ')}`);
    return { kind: 'help', command: topic as CommandName | undefined };
  }
  if (first === '--version' || first === 'version') return { kind: 'version' };
  if (!COMMANDS.includes(first as CommandName)) {
    throw new UsageError(`unknown command "${first}"; commands: ${COMMANDS.join(', ')} (see pvc-backup --help)`);
  }
  const command = first as CommandName;
  if (rest.includes('--help') || rest.includes('-h')) return { kind: 'help', command };
  checkVariableNames(env);
  const { values, positionals, given } = collect(command, rest, env);
  const config = builders[command]({ values, positionals, given, cwd, env });
  return { kind: 'run', config, monitoring: parseMonitoring(command, values, env) };
}

function flagLine(spec: FlagSpec): string {
  const name = spec.kind === 'bool' ? `--${spec.negatable ? '[no-]' : ''}${spec.name}` : `--${spec.name} ${spec.metavar ?? 'VALUE'}`;
  const variable = envName(spec);
  const extras = [spec.defaultText ? `default: ${spec.defaultText}` : '', variable ? `env ${variable}` : ''].filter(Boolean).join('; ');
  return `  ${name.padEnd(34)} ${spec.help}${extras ? ` [${extras}]` : ''}`;
}

/** Help text for one command, or the overview. Lists every flag with its environment variable. */
export function helpText(command?: CommandName): string {
  if (!command) {
    return [
      'pvc-backup — verified tar backups of a directory (a Kubernetes volume)',
      '',
      'usage: pvc-backup <command> [flags]       pvc-backup <command> --help',
      '',
      ...COMMANDS.map((c) => `  ${c.padEnd(8)} ${commandFlags[c].summary}`),
      '',
      'Every flag also has an environment variable (shown in each command\'s help); a flag beats its variable.',
      'Exit codes: 0 ok, 1 failed, 2 usage error, 3 integrity failure, 4 another run holds the lock.',
    ].join('\n');
  }
  const spec = commandFlags[command];
  return [
    `usage: pvc-backup ${spec.usage}`,
    '',
    spec.summary,
    '',
    'flags:',
    ...spec.flags.map(flagLine),
    ...commonFlags.map(flagLine),
  ].join('\n');
}

/** Every flag of a command with its variable, for documentation generators and tests. */
export function flagTable(command: CommandName): { flag: string; env: string | null; help: string; default?: string }[] {
  return [...commandFlags[command].flags, ...commonFlags].map((s) => ({
    flag: `--${s.name}`,
    env: envName(s),
    help: s.help,
    default: s.defaultText,
  }));
}

// ---------------------------------------------------------------- monitoring

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** An http(s) URL; the message never repeats it, since webhook and ping URLs are credentials. */
function httpUrl(flag: string, text: string): URL {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new UsageError(`--${flag} is not a URL (its value is not shown: it may hold a credential)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--${flag} must be an http:// or https:// URL, got a ${url.protocol} URL`);
  return url;
}

function readNamespaceFile(dir: string): string | undefined {
  if (!checkPaths) return undefined;
  try {
    return readFileSync(path.join(dir, 'namespace'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Where a backup, verify or restore reports its outcome; undefined for other commands, dry runs and when nothing is configured. */
function parseMonitoring(command: CommandName, values: RawValues, env: Record<string, string | undefined>): MonitoringConfig | undefined {
  if (!isMonitored(command) || bool(values, 'dry-run')) return undefined;
  const pushgateway = str(values, 'pushgateway-url');
  const ping = str(values, 'ping-url');
  const notifyTexts = (values.get('notify-url') as string[] | undefined) ?? [];
  const notify = notifyTexts.map((text, i) => parseNotifyTarget(text, `--notify-url (number ${i + 1})`));
  const notifyOn = str(values, 'notify-on') ?? 'failure';
  if (notifyOn !== 'failure' && notifyOn !== 'always') throw new UsageError(`--notify-on must be failure or always, got "${notifyOn}"`);
  const timeoutText = str(values, 'monitoring-timeout');
  const timeoutSeconds = timeoutText === undefined ? 5 : parseDuration('monitoring-timeout', timeoutText);
  if (timeoutSeconds < 0.1 || timeoutSeconds > 120) throw new UsageError('--monitoring-timeout must be between 100ms and 2m');

  const credentialsDir = str(values, 'service-account-dir') ?? SERVICE_ACCOUNT_DIR;
  const namespace = str(values, 'namespace') ?? readNamespaceFile(credentialsDir);
  if (namespace !== undefined && !DNS_LABEL.test(namespace)) throw new UsageError(`--namespace must be a Kubernetes namespace name, got "${namespace}"`);
  const claimName = str(values, 'claim-name');
  if (claimName !== undefined && !DNS_SUBDOMAIN.test(claimName)) throw new UsageError(`--claim-name must be a PersistentVolumeClaim name, got "${claimName}"`);
  let events: MonitoringConfig['events'];
  if (bool(values, 'events')) {
    if (claimName === undefined) throw new UsageError('--events needs --claim-name NAME, the PersistentVolumeClaim to post the Events on');
    if (namespace === undefined) throw new UsageError(`--events needs --namespace NS (there is no namespace file in ${credentialsDir})`);
    const kubeApi = str(values, 'kube-api');
    events = { claimName, namespace, apiUrl: kubeApi === undefined ? inClusterApiUrl(env) : httpUrl('kube-api', kubeApi).href, credentialsDir };
  }

  let schedule: MonitoringConfig['schedule'];
  const scheduleText = command === 'backup' ? str(values, 'schedule') : undefined;
  if (scheduleText !== undefined) {
    const timeZone = str(values, 'time-zone') ?? 'Etc/UTC';
    validateSchedule(scheduleText, timeZone);
    schedule = { schedule: scheduleText, timeZone };
  }

  if (!pushgateway && !ping && notify.length === 0 && !events) return undefined;
  return {
    namespace,
    claimName,
    pushgatewayUrl: pushgateway ? httpUrl('pushgateway-url', pushgateway) : undefined,
    schedule,
    events,
    notify,
    notifyOn,
    pingUrl: ping ? httpUrl('ping-url', ping) : undefined,
    timeoutSeconds,
  };
}

/**
 * For a command line that was refused (exit 2): where the run would have reported, so that a
 * scheduled run whose configuration is broken (a volume not mounted, a bad value) still tells
 * someone. Undefined when the command or its monitoring flags cannot be read either.
 */
export function monitoringOfRefusedRun(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): { command: MonitoredCommand; prefix: string; logFormat: LogFormat; monitoring: MonitoringConfig } | undefined {
  const [command, ...rest] = argv;
  if (command === undefined || !isMonitored(command) || rest.includes('--help') || rest.includes('-h')) return undefined;
  try {
    const { values } = collect(command, rest, env);
    const prefix = str(values, 'prefix') ?? 'backup';
    const monitoring = parseMonitoring(command, values, env);
    if (!monitoring || !PREFIX_PATTERN.test(prefix)) return undefined;
    const logFormat = str(values, 'log-format') === 'json' ? 'json' : 'text';
    return { command, prefix, logFormat, monitoring };
  } catch {
    return undefined;
  }
}
