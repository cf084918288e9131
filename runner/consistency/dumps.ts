import fs from 'node:fs';
import path from 'node:path';
import { displayName } from '../archive/names.js';
import { walkTree } from '../archive/walk.js';
import { OperationError, UsageError } from '../errors.js';
import { DUMP_WRAPPER_SCRIPT } from './dump-wrapper.js';

/**
 * Pre-backup dumps: the contract between the dump init containers and the runner.
 *
 *   <scratch>/                 one volume (an emptyDir), mounted at DUMPS_MOUNT_PATH in every
 *                              dump init container and in the runner
 *     <name>/                  written only by dump <name>: its command runs here
 *     <name>.complete          written by the wrapper after the command exited 0
 *
 * Each init container runs the dump wrapper (dumpContainerCommand(), the user's command as its
 * arguments, dumpContainerEnv(name)); the runner then requires, for every configured dump, the
 * directory, the marker, and at least one non-empty file (checkDumps), and archives the
 * directory as `./.pvc-backup-dumps/<name>/…` (dumpArchiveDir).
 */

export const DUMPS_MOUNT_PATH = '/dumps';
/** Where dumps appear in an archive, relative to its root. */
export const DUMPS_ARCHIVE_DIR = '.pvc-backup-dumps';
export const DUMP_COMPLETE_SUFFIX = '.complete';

/** A dump's name: a DNS label short enough to prefix ("dump-") as an init container name. */
const NAME = /^[a-z0-9]([-a-z0-9]{0,56}[a-z0-9])?$/;

export function validateDumpName(name: string): void {
  if (!NAME.test(name)) {
    throw new UsageError(`dump name ${JSON.stringify(name)} is not valid: use 1-58 lowercase letters, digits and "-", starting and ending with a letter or digit`, 'DUMP_NAME');
  }
}

/** The init container's command; the dump's own command follows as its arguments (container `args`). */
export function dumpContainerCommand(): string[] {
  return ['/bin/sh', '-c', DUMP_WRAPPER_SCRIPT, 'pvc-backup-dump'];
}

/** The environment the wrapper needs, besides the dump's own. */
export function dumpContainerEnv(name: string, dumpsDir = DUMPS_MOUNT_PATH): { name: string; value: string }[] {
  validateDumpName(name);
  return [
    { name: 'PVC_BACKUP_DUMP_NAME', value: name },
    { name: 'PVC_BACKUP_DUMP_DIR', value: path.posix.join(dumpsDir, name) },
  ];
}

/** Where dump `name`'s file `rel` (relative to its directory) goes in the archive. */
export function dumpArchivePath(name: string, rel = ''): string {
  return rel === '' ? `${DUMPS_ARCHIVE_DIR}/${name}` : `${DUMPS_ARCHIVE_DIR}/${name}/${rel}`;
}

export interface CheckedDump {
  name: string;
  /** The dump's directory in the scratch volume (archive it as dumpArchivePath(name)). */
  dir: string;
  files: number;
  bytes: number;
  startedAt: string;
  finishedAt: string;
}

interface Marker {
  name?: unknown;
  startedAt?: unknown;
  finishedAt?: unknown;
}

/** The problem with one dump, or its summary. */
function checkDump(dumpsDir: string, name: string): CheckedDump | string {
  const dir = path.join(dumpsDir, name);
  const markerFile = dir + DUMP_COMPLETE_SUFFIX;
  const dirStat = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (!dirStat?.isDirectory()) {
    return `is missing: ${dir} ${dirStat ? 'is not a directory' : 'does not exist'} (did its init container run, with the scratch volume mounted at ${dumpsDir}?)`;
  }
  let marker: Marker;
  try {
    marker = JSON.parse(fs.readFileSync(markerFile, 'utf8')) as Marker;
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    return `did not complete: ${markerFile} is ${missing ? 'missing' : 'unreadable'} (its command failed or was stopped; see the logs of its init container)`;
  }
  if (marker.name !== name || typeof marker.startedAt !== 'string' || typeof marker.finishedAt !== 'string') {
    return `did not complete: ${markerFile} does not describe dump "${name}" (written by something other than the dump wrapper)`;
  }
  let files = 0;
  let bytes = 0;
  let dataFiles = 0;
  for (const entry of walkTree(dir, () => false)) {
    if (entry.error) return `cannot be read: ${path.join(dir, displayName(entry.rel))}: ${entry.error.message}`;
    if (!entry.stat?.isFile()) continue;
    files++;
    bytes += Number(entry.stat.size);
    if (entry.stat.size > 0n) dataFiles++;
  }
  if (dataFiles === 0) {
    return `is empty: its command exited 0 but wrote ${files === 0 ? 'no file' : 'only empty files'} into ${dir} (make it write its output into its working directory, $PVC_BACKUP_DUMP_DIR)`;
  }
  return { name, dir, files, bytes, startedAt: marker.startedAt, finishedAt: marker.finishedAt };
}

/**
 * Checks every configured dump in `dumpsDir` before anything is archived. Throws one
 * OperationError whose single line names each failing dump and what is wrong with it.
 */
export function checkDumps(dumpsDir: string, names: readonly string[]): CheckedDump[] {
  const seen = new Set<string>();
  for (const name of names) {
    validateDumpName(name);
    if (seen.has(name)) throw new UsageError(`dump name "${name}" is given twice; each dump needs its own name`, 'DUMP_NAME');
    seen.add(name);
  }
  const checked: CheckedDump[] = [];
  const problems: string[] = [];
  for (const name of names) {
    const result = checkDump(dumpsDir, name);
    if (typeof result === 'string') problems.push(`pre-backup dump "${name}" ${result}`);
    else checked.push(result);
  }
  if (problems.length > 0) throw new OperationError(`${problems.join('; ')}; no backup is made`, 'DUMP_FAILED');
  return checked;
}
