import fs from 'node:fs';
import { decodeName } from './archive/names.js';

/**
 * The command's arguments as lossless strings (see archive/names.ts). Node decodes argv as UTF-8
 * and turns every byte that is not into U+FFFD, so a file named `caf\xe9` (Latin-1) could never be
 * given to `cat` or `restore --path`. Linux keeps the exact bytes in /proc/self/cmdline; they are
 * used when they decode to what Node gave, else Node's strings are. The runtime's one re-exec
 * (memory.ts) cannot pass bytes on, since execve takes strings: it hands them over in CARRIER.
 */

const CARRIER = 'PVC_BACKUP_INTERNAL_RAW_ARGV';

export function losslessArgs(given: readonly string[] = process.argv.slice(2)): string[] {
  const carried = process.env[CARRIER];
  delete process.env[CARRIER];
  const raw = carried !== undefined ? fromCarrier(carried) : lostBytes(given);
  return raw && matches(raw, given) ? raw.map(decodeName) : [...given];
}

/** Environment for a re-exec of this process: the raw arguments, when Node's strings lost bytes. */
export function rawArgsCarrier(given: readonly string[] = process.argv.slice(2)): Record<string, string> {
  const raw = lostBytes(given);
  return raw ? { [CARRIER]: JSON.stringify(raw.map((arg) => arg.toString('base64'))) } : {};
}

/** The exact bytes of the arguments when Node's strings lost some (and they are found), else undefined. */
function lostBytes(given: readonly string[]): Buffer[] | undefined {
  if (!given.some((arg) => arg.includes('\ufffd'))) return undefined;
  const raw = cmdlineTail(given.length);
  return raw && matches(raw, given) ? raw : undefined;
}

/** The last `count` entries of /proc/self/cmdline: node, its flags and the script come first. */
function cmdlineTail(count: number): Buffer[] | undefined {
  let cmdline: Buffer;
  try {
    cmdline = fs.readFileSync('/proc/self/cmdline');
  } catch {
    return undefined;
  }
  const parts: Buffer[] = [];
  for (let start = 0; start < cmdline.length; ) {
    const end = cmdline.indexOf(0, start);
    const stop = end === -1 ? cmdline.length : end;
    parts.push(cmdline.subarray(start, stop));
    start = stop + 1;
  }
  return parts.length >= count ? parts.slice(parts.length - count) : undefined;
}

function fromCarrier(text: string): Buffer[] | undefined {
  try {
    const list = JSON.parse(text) as unknown;
    return Array.isArray(list) && list.every((item) => typeof item === 'string') ? list.map((item: string) => Buffer.from(item, 'base64')) : undefined;
  } catch {
    return undefined;
  }
}

function matches(raw: readonly Buffer[], given: readonly string[]): boolean {
  return raw.length === given.length && raw.every((arg, i) => arg.toString('utf8') === given[i]);
}
