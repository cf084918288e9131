import { existsSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from './errors.js';
import { validateSchedule } from './freshness.js';

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
  logFormat: LogFormat;
  /** A lock whose heartbeat is older than this is broken with a warning. */
  lockStaleSeconds: number;
  /** Seconds between progress lines on long runs. */
  progressSeconds: number;
}

export interface BackupConfig extends CommonConfig {
  command: 'backup';
  source: string;
  compression: Compression;
  level: number | undefined;
  excludes: string[];
  keepLast: number | undefined;
  allowEmpty: boolean;
  skipUnreadable: boolean;
  /** Archive extended attributes, POSIX ACLs and file capabilities. */
  xattrs: boolean;
}

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
}

export interface ListConfig extends CommonConfig {
  command: 'list';
  json: boolean;
}

export interface PruneConfig extends CommonConfig {
  command: 'prune';
  keepLast: number;
  dryRun: boolean;
}

export interface RestoreConfig extends CommonConfig {
  command: 'restore';
  archive: string;
  target: string;
  mode: RestoreMode;
  dryRun: boolean;
  snapshot: boolean;
  allowUnverified: boolean;
  /** Restore extended attributes, POSIX ACLs and file capabilities stored in the archive. */
  xattrs: boolean;
  /** Identifies one restore request; a request already completed in DEST is not run again. */
  requestId: string | undefined;
}

export type RunnerConfig = BackupConfig | VerifyConfig | ListConfig | PruneConfig | RestoreConfig;
export type CommandName = RunnerConfig['command'];

export type ParsedCommandLine =
  | { kind: 'help'; command: CommandName | undefined }
  | { kind: 'version' }
  | { kind: 'run'; config: RunnerConfig };

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

const commandFlags: Record<CommandName, { summary: string; usage: string; flags: FlagSpec[]; positional?: string }> = {
  backup: {
    summary: 'stream SOURCE into one new verified archive in DEST, then prune',
    usage: 'backup --source DIR --dest DIR [--prefix NAME] [--compression gzip|zstd|none] [--level N] [--exclude GLOB]... [--keep-last N]',
    flags: [
      { name: 'source', kind: 'dir', metavar: 'DIR', help: 'directory to back up (the mounted source volume)' },
      { name: 'compression', kind: 'string', metavar: 'gzip|zstd|none', help: 'archive compression', defaultText: 'gzip' },
      { name: 'level', kind: 'int', metavar: 'N', help: 'compression level (gzip 1-9, zstd 1-19)', defaultText: 'gzip 6, zstd 3' },
      { name: 'exclude', kind: 'list', metavar: 'GLOB', help: 'skip paths matching GLOB (relative to SOURCE, repeatable; variable: one per line)' },
      { name: 'keep-last', kind: 'int', metavar: 'N', help: 'after a verified backup, keep only the newest N archives of this prefix', defaultText: 'no pruning' },
      { name: 'allow-empty', kind: 'bool', help: 'allow backing up an empty source (refused by default: it usually means a wrong mount)' },
      { name: 'skip-unreadable', kind: 'bool', help: 'skip files that cannot be archived (permission denied, sockets, FIFOs, devices) with a warning instead of failing' },
      { name: 'xattrs', kind: 'bool', negatable: true, help: 'archive extended attributes, POSIX ACLs and file capabilities (--no-xattrs to leave them out)', defaultText: 'on' },
    ],
  },
  verify: {
    summary: 'fully re-read archives: checksum, decompression, every entry, manifest',
    usage: 'verify --dest DIR [--prefix NAME] [ARCHIVE | --latest | --all] [--schedule CRON [--time-zone TZ] [--grace DURATION]]',
    positional: 'ARCHIVE',
    flags: [
      { name: 'latest', kind: 'bool', env: null, help: 'verify the newest archive of the prefix (the default)' },
      { name: 'all', kind: 'bool', env: null, help: 'verify every archive of the prefix' },
      { name: 'schedule', kind: 'string', metavar: 'CRON', help: 'backup schedule; fail when the newest archive is older than the last expected run plus the grace period' },
      { name: 'time-zone', kind: 'string', metavar: 'TZ', help: 'time zone of --schedule', defaultText: 'Etc/UTC' },
      { name: 'grace', kind: 'duration', metavar: 'DURATION', help: 'how late a backup may finish before it counts as missing', defaultText: '1h' },
    ],
  },
  list: {
    summary: 'list archives, newest first',
    usage: 'list --dest DIR [--prefix NAME] [--json]',
    flags: [{ name: 'json', kind: 'bool', help: 'print a JSON array instead of a table' }],
  },
  prune: {
    summary: 'delete archives of the prefix beyond the newest N',
    usage: 'prune --dest DIR [--prefix NAME] --keep-last N [--dry-run]',
    flags: [
      { name: 'keep-last', kind: 'int', metavar: 'N', help: 'number of newest archives to keep (at least 1)' },
      { name: 'dry-run', kind: 'bool', help: 'print what would be deleted and delete nothing' },
    ],
  },
  restore: {
    summary: 'verify an archive, snapshot the target, then restore into it',
    usage: 'restore --dest DIR [--prefix NAME] --archive NAME|latest --target DIR [--mode replace|merge] [--dry-run] [--no-snapshot] [--allow-unverified]',
    flags: [
      { name: 'archive', kind: 'string', metavar: 'NAME|latest', help: 'archive file name in DEST, or latest', defaultText: 'latest' },
      { name: 'target', kind: 'dir', metavar: 'DIR', help: 'directory to restore into (the mounted volume; never removed itself)' },
      { name: 'mode', kind: 'string', metavar: 'replace|merge', help: 'replace: target ends up exactly the archive; merge: extract over it', defaultText: 'replace' },
      { name: 'dry-run', kind: 'bool', help: 'print what would be added, replaced and removed; change nothing' },
      { name: 'snapshot', kind: 'bool', negatable: true, help: 'archive the current target into DEST before restoring (--no-snapshot to skip)', defaultText: 'on' },
      { name: 'allow-unverified', kind: 'bool', help: 'restore an archive that has no checksum/manifest sidecars (made by another tool)' },
      { name: 'xattrs', kind: 'bool', negatable: true, help: 'restore extended attributes, POSIX ACLs and file capabilities from the archive (--no-xattrs to skip them)', defaultText: 'on' },
      { name: 'request-id', kind: 'string', metavar: 'ID', help: 'run this restore request once: when DEST records ID as done, exit 0 without restoring again' },
    ],
  },
};

export const COMMANDS = Object.keys(commandFlags) as CommandName[];

function envName(spec: FlagSpec): string | null {
  if (spec.env === null) return null;
  return spec.env ?? `PVC_BACKUP_${spec.name.toUpperCase().replace(/-/g, '_')}`;
}

type RawValues = Map<string, string | string[] | boolean>;

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
  return { values, positionals };
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

function realPath(p: string): string {
  if (!checkPaths) return p;
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

const PREFIX_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

function parseCommon(values: RawValues, command: CommandName, cwd: string): CommonConfig {
  const prefix = str(values, 'prefix') ?? 'backup';
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
    dest: existingDirectory('dest', requireValue(values, 'dest', command), cwd),
    prefix,
    logFormat,
    lockStaleSeconds,
    progressSeconds,
  };
}

function parseKeepLast(text: string): number {
  const n = parseInteger('keep-last', text);
  if (n < 1) throw new UsageError(`--keep-last must be at least 1 (the newest archive is always kept), got ${n}`);
  return n;
}

function noPositionals(command: CommandName, positionals: string[]) {
  if (positionals.length > 0) throw new UsageError(`${command} takes no argument "${positionals[0]}"; see pvc-backup ${command} --help`);
}

function buildBackup(values: RawValues, positionals: string[], cwd: string): BackupConfig {
  noPositionals('backup', positionals);
  const common = parseCommon(values, 'backup', cwd);
  // The real path: a source given as a symlink is archived as the directory it points to.
  const source = realPath(existingDirectory('source', requireValue(values, 'source', 'backup'), cwd));
  if (isInside(common.dest, source)) {
    throw new UsageError(`--dest ${common.dest} is inside --source ${source}; the backup would archive itself, use a directory outside the source`);
  }
  if (isInside(source, common.dest)) {
    throw new UsageError(`--source ${source} is inside --dest ${common.dest}; back up a directory outside the backup directory`);
  }
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
  const keepLastText = str(values, 'keep-last');
  return {
    command: 'backup',
    ...common,
    source,
    compression: compression as Compression,
    level: level ?? range?.default,
    excludes: (values.get('exclude') as string[] | undefined) ?? [],
    keepLast: keepLastText === undefined ? undefined : parseKeepLast(keepLastText),
    allowEmpty: bool(values, 'allow-empty'),
    skipUnreadable: bool(values, 'skip-unreadable'),
    xattrs: bool(values, 'xattrs', true),
  };
}

function buildVerify(values: RawValues, positionals: string[], cwd: string): VerifyConfig {
  const common = parseCommon(values, 'verify', cwd);
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
  return { command: 'verify', ...common, selection, freshness };
}

/** Archive arguments are names inside DEST; a path is accepted when it points into DEST. */
function archiveName(value: string): string {
  const name = path.basename(value);
  if (name === '' || name === '.' || name === '..') throw new UsageError(`"${value}" is not an archive name`);
  return name;
}

function buildList(values: RawValues, positionals: string[], cwd: string): ListConfig {
  noPositionals('list', positionals);
  return { command: 'list', ...parseCommon(values, 'list', cwd), json: bool(values, 'json') };
}

function buildPrune(values: RawValues, positionals: string[], cwd: string): PruneConfig {
  noPositionals('prune', positionals);
  const common = parseCommon(values, 'prune', cwd);
  return { command: 'prune', ...common, keepLast: parseKeepLast(requireValue(values, 'keep-last', 'prune')), dryRun: bool(values, 'dry-run') };
}

function buildRestore(values: RawValues, positionals: string[], cwd: string): RestoreConfig {
  noPositionals('restore', positionals);
  const common = parseCommon(values, 'restore', cwd);
  const target = existingDirectory('target', requireValue(values, 'target', 'restore'), cwd);
  if (isInside(common.dest, target) && realPath(common.dest) !== realPath(target)) {
    // Allowed only if the backup directory is excluded from replace; refusing is the safe, simple rule.
    throw new UsageError(`--dest ${common.dest} is inside --target ${target}; a replace would delete the backups, use a directory outside the target`);
  }
  if (realPath(common.dest) === realPath(target) || isInside(target, common.dest)) {
    throw new UsageError(`--target ${target} is inside --dest ${common.dest}; restore into a directory outside the backup directory`);
  }
  const mode = str(values, 'mode') ?? 'replace';
  if (mode !== 'replace' && mode !== 'merge') throw new UsageError(`--mode must be replace or merge, got "${mode}"`);
  const archive = str(values, 'archive') ?? 'latest';
  return {
    command: 'restore',
    ...common,
    archive: archive === 'latest' ? 'latest' : archiveName(archive),
    target,
    mode,
    dryRun: bool(values, 'dry-run'),
    snapshot: bool(values, 'snapshot', true),
    allowUnverified: bool(values, 'allow-unverified'),
    xattrs: bool(values, 'xattrs', true),
    requestId: parseRequestId(str(values, 'request-id')),
  };
}

function parseRequestId(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value)) {
    throw new UsageError(`--request-id must be 1-64 letters, digits, ".", "_" or "-", got "${value}"`);
  }
  return value;
}

const builders: Record<CommandName, (values: RawValues, positionals: string[], cwd: string) => RunnerConfig> = {
  backup: buildBackup,
  verify: buildVerify,
  list: buildList,
  prune: buildPrune,
  restore: buildRestore,
};

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
  const { values, positionals } = collect(command, rest, env);
  return { kind: 'run', config: builders[command](values, positionals, cwd) };
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
