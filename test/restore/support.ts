import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Header, Pax } from 'tar';
import { type LogLine, jsonLines, runCli } from '../helpers/cli.js';
import { exactState } from '../helpers/tree.js';

/**
 * Helpers of the restore suite: archives written block by block (never by the runner's own
 * packer) so that hostile or odd entries can be expressed, optional pvc-backup sidecars for
 * them, CLI runs with parsed JSON logs, and tree pictures that ignore the target's own mtime.
 */

export type RawType = 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';

export interface RawEntry {
  path: string;
  type?: RawType;
  data?: string | Buffer;
  linkpath?: string;
  mode?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  uid?: number;
  gid?: number;
}

const BLOCK = 512;
const DEFAULT_MTIME = 1_600_000_000;

function header(entry: RawEntry, size: number): Buffer[] {
  const type = entry.type ?? 'File';
  const linkpath = entry.linkpath ?? '';
  const out: Buffer[] = [];
  const ascii = (s: string) => s.length < 100 && /^[\x20-\x7e]*$/.test(s);
  if (!ascii(entry.path) || !ascii(linkpath)) {
    out.push(new Pax({ path: entry.path, linkpath: linkpath || undefined }).encode());
  }
  const block = Buffer.alloc(BLOCK);
  new Header({
    path: ascii(entry.path) ? entry.path : 'pax-long-name',
    type,
    size,
    mode: entry.mode ?? (type === 'Directory' ? 0o755 : 0o644),
    uid: entry.uid ?? 0,
    gid: entry.gid ?? 0,
    mtime: new Date((entry.mtime ?? DEFAULT_MTIME) * 1000),
    linkpath: ascii(linkpath) ? linkpath : 'pax-long-link',
    uname: '',
    gname: '',
    devmaj: 0,
    devmin: 0,
  } as never).encode(block);
  out.push(block);
  return out;
}

/** A tar stream of the given entries (ustar + pax for long names), with the end-of-archive blocks unless `end: false`. */
export function buildTar(entries: readonly RawEntry[], options: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const type = entry.type ?? 'File';
    const data = type === 'File' ? Buffer.from(entry.data ?? '') : Buffer.alloc(0);
    parts.push(...header(entry, data.length), data);
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  if (options.end !== false) parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

function manifestType(type: RawType): string {
  return { File: 'file', Directory: 'dir', SymbolicLink: 'symlink', Link: 'hardlink' }[type as string] ?? type;
}

/**
 * Writes `tar` (gzip-compressed when the name ends in .gz) into DEST as `name`; with
 * `sidecars`, also a `.sha256` and a `.manifest.json` that describe it truthfully, so the
 * archive passes every integrity check and only the path-safety rules can refuse it.
 */
export function writeArchive(dest: string, name: string, entries: readonly RawEntry[], options: { sidecars?: boolean; tar?: Buffer } = {}): string {
  const tar = options.tar ?? buildTar(entries);
  const bytes = name.endsWith('.gz') ? zlib.gzipSync(tar) : tar;
  const file = path.join(dest, name);
  fs.writeFileSync(file, bytes);
  if (options.sidecars) {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    fs.writeFileSync(`${file}.sha256`, `${sha256}  ${name}\n`);
    const files = entries.map((e) => {
      const type = e.type ?? 'File';
      const data = type === 'File' ? Buffer.from(e.data ?? '') : Buffer.alloc(0);
      const f: Record<string, unknown> = {
        path: e.path,
        type: manifestType(type),
        size: data.length,
        mode: e.mode ?? (type === 'Directory' ? 0o755 : 0o644),
        mtime: e.mtime ?? DEFAULT_MTIME,
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
      };
      if (type === 'File') f.sha256 = createHash('sha256').update(data).digest('hex');
      if (type === 'SymbolicLink' || type === 'Link') f.linkTarget = e.linkpath;
      return f;
    });
    const manifest = {
      format: 1,
      prefix: 'backup',
      archive: name,
      createdAt: new Date(DEFAULT_MTIME * 1000).toISOString(),
      source: '/hand-made',
      compression: name.endsWith('.gz') ? 'gzip' : 'none',
      level: undefined,
      archiveBytes: bytes.length,
      sha256,
      tarBytes: tar.length,
      entryCount: files.length,
      totalBytes: files.reduce((s, f) => s + (f.type === 'file' ? (f.size as number) : 0), 0),
      files,
      excludes: [],
      warnings: [],
      runnerVersion: 'test',
      durationSeconds: 0,
    };
    fs.writeFileSync(`${file}.manifest.json`, JSON.stringify(manifest));
  }
  return name;
}

export interface Run {
  code: number | null;
  lines: LogLine[];
  stdout: string;
  stderr: string;
}

/** Runs the CLI with JSON logs; never rejects on a non-zero exit. */
export async function cli(args: string[], options: { uid?: number; gid?: number; env?: Record<string, string> } = {}): Promise<Run> {
  const result = await runCli([...args, '--log-format', 'json'], options);
  let lines: LogLine[] = [];
  try {
    lines = jsonLines(result.stdout);
  } catch {
    lines = [];
  }
  return { code: result.code, lines, stdout: result.stdout, stderr: result.stderr };
}

export function describe(run: Run): string {
  return `exit ${run.code}\n${run.stdout}${run.stderr}`;
}

/** Every entry of a tree (names, types, modes, owners, content, mtimes at ns precision) except the root directory's own mtime. */
export function treeState(dir: string): string {
  const entries = JSON.parse(exactState(dir)) as { path: string; mtimeNs?: string }[];
  delete entries.find((e) => e.path === '.')!.mtimeNs;
  return JSON.stringify(entries);
}

/** The root directory's mtime in ms. */
export function rootMtimeMs(dir: string): number {
  return fs.statSync(dir).mtimeMs;
}

/** Names in a directory, sorted (to prove nothing appeared next to the target). */
export function listing(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

/** Restore's control entries left in a target. */
export function controlEntries(target: string): string[] {
  return fs.readdirSync(target).filter((n) => n.startsWith('.pvc-backup-restore-'));
}

/** mtimes (whole seconds) of every directory and symlink below root, which snapshotTree does not compare. */
export function dirAndLinkTimes(root: string): Record<string, number> {
  const out: Record<string, number> = {};
  const visit = (abs: string, rel: string) => {
    const st = fs.lstatSync(abs);
    if (st.isDirectory() || st.isSymbolicLink()) out[rel] = Math.floor(st.mtimeMs / 1000);
    if (st.isDirectory()) for (const name of fs.readdirSync(abs)) visit(path.join(abs, name), rel === '.' ? name : `${rel}/${name}`);
  };
  visit(root, '.');
  return out;
}
