import fs from 'node:fs';
import type { Compression } from '../config.js';
import { IntegrityError } from '../errors.js';
import { writeAll } from './fd-io.js';

/**
 * The manifest `<archive>.manifest.json`: one JSON document (so `jq` and every JSON library read
 * it), written and read as a stream, so memory does not grow with the number of files.
 *
 * Format 2 layout (what pvc-backup writes; a reader may rely on it, and falls back to parsing
 * the whole document when a manifest was reformatted by hand):
 *
 *   {
 *     "format": 2,                       ← head: one key per line, known before the archive is written
 *     …
 *     "files": [
 *       {"path":"./","type":"dir",…},     ← one entry per line, in archive order
 *       …
 *     ],
 *     "archiveBytes": …,                 ← tail: known at the end (totals, checksum, verification)
 *     …
 *     "warnings": [
 *       …
 *     ]
 *   }
 *
 * Paths and link targets are lossless strings (names.ts): bytes that are not UTF-8 appear as the
 * JSON escapes \udc80–\udcff (byte 0xXY as \udcXY), exactly what Python's os.fsdecode gives.
 * Format 1 (one pretty JSON document with `files` last, whole-second mtimes) is still read.
 */

export const MANIFEST_FORMAT = 2;

/** One archived entry of the per-file index. Paths are as stored in the tar (`./…`). */
export interface ManifestFile {
  path: string;
  type: EntryType;
  /** Apparent size (for a sparse file: with its holes). */
  size: number;
  mode: number;
  /** Whole seconds since the epoch, rounded down (negative before 1970). */
  mtime: number;
  /** Nanoseconds past `mtime` (format 2; absent when 0). */
  mtimeNsec?: number;
  uid: number;
  gid: number;
  /** SHA-256 of a regular file's content (holes of a sparse file read as zeros, like `sha256sum`). */
  sha256?: string;
  /** Symlink target or hard-link target path. */
  linkTarget?: string;
  /** Extended attributes (ACLs and capabilities included): name → base64 of the value (format 2). */
  xattrs?: Record<string, string>;
  /** Sparse files: bytes of data the archive holds (the rest are holes) (format 2). */
  dataBytes?: number;
  /** Offset of the entry's first header in the uncompressed tar stream (format 2). */
  offset?: number;
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink';

export interface Verification {
  /** ISO time of the last full verification. */
  at: string;
  ok: boolean;
  /** Why it failed, when it failed. */
  error?: string;
}

export interface ManifestWarning {
  path: string;
  problem: string;
}

/** Known before the archive is written. */
export interface ManifestHead {
  format: number;
  prefix: string;
  archive: string;
  createdAt: string;
  source: string;
  compression: Compression;
  level: number | undefined;
  excludes: string[];
  /** Whether extended attributes, ACLs and capabilities were archived (format 2). */
  xattrs?: boolean;
  runnerVersion: string;
}

/** Known once the archive is complete. */
export interface ManifestTail {
  /** Size of the archive file (compressed). */
  archiveBytes: number;
  /** SHA-256 of the archive file. */
  sha256: string;
  /** Length of the uncompressed tar stream, end-of-archive blocks included. */
  tarBytes: number;
  entryCount: number;
  /** Regular files among the entries (format 2; older manifests: count the file list). */
  fileCount?: number;
  /** Sum of regular file sizes (apparent). */
  totalBytes: number;
  /** Sum of the file data the archive holds (sparse files without their holes) (format 2). */
  storedBytes?: number;
  /** zstd: [compressed offset, tar offset] of every frame, for seeking (format 2). */
  frames?: [number, number][];
  durationSeconds: number;
  verification?: Verification;
  /** Files that changed, appeared, vanished or were skipped while being read (the archive holds what was read). */
  warnings: ManifestWarning[];
  /** Warnings beyond the ones listed (the list is capped; every warning is also a log line). */
  warningsOmitted?: number;
}

/** Everything in a manifest but the per-file list. */
export interface Manifest extends ManifestHead, ManifestTail {}

/** A whole manifest document as `JSON.parse` gives it (for small manifests and tools). */
export interface ManifestDocument extends Manifest {
  files: ManifestFile[];
}

/** At most this many warnings are listed in a manifest. */
export const MAX_WARNINGS = 10_000;

const FILES_OPEN = '\n  "files": [\n';
const TAIL_MARK = '\n  ],\n  "archiveBytes": ';
const V1_END = /\n {2}\]\n\}\n?$/;

// ---------------------------------------------------------------- writing

/**
 * Writes a manifest as the archive is made: the head at once, each file as it is archived,
 * the tail at the end. Writes go to a file descriptor in batches; nothing per file stays in memory.
 */
export class ManifestWriter {
  private buffer: string[] = [];
  private bufferLength = 0;
  private count = 0;
  bytes = 0;

  constructor(
    private readonly fd: number,
    head: ManifestHead,
  ) {
    this.push(`{\n${headLines(head)}${FILES_OPEN.slice(1)}`);
  }

  file(entry: ManifestFile): void {
    this.push(`${this.count++ === 0 ? '' : ',\n'}    ${JSON.stringify(entry)}`);
    if (this.bufferLength >= 256 * 1024) this.flush();
  }

  /** Writes the tail and flushes (the caller fsyncs and closes the descriptor). */
  finish(tail: ManifestTail): void {
    this.push(`${this.count === 0 ? '' : '\n'}${tailText(tail)}`);
    this.flush();
  }

  private push(text: string): void {
    this.buffer.push(text);
    this.bufferLength += text.length;
  }

  private flush(): void {
    if (this.buffer.length === 0) return;
    const data = Buffer.from(this.buffer.join(''), 'utf8');
    this.buffer = [];
    this.bufferLength = 0;
    writeAll(this.fd, data);
    this.bytes += data.length;
  }
}

function headLines(head: ManifestHead): string {
  const keys: (keyof ManifestHead)[] = ['format', 'prefix', 'archive', 'createdAt', 'source', 'compression', 'level', 'excludes', 'xattrs', 'runnerVersion'];
  return keys
    .filter((k) => head[k] !== undefined)
    .map((k) => `  ${JSON.stringify(k)}: ${JSON.stringify(head[k])},\n`)
    .join('');
}

/** The tail, starting with the line that closes the file list. */
function tailText(tail: ManifestTail): string {
  const keys: (keyof ManifestTail)[] = ['archiveBytes', 'sha256', 'tarBytes', 'entryCount', 'fileCount', 'totalBytes', 'storedBytes', 'frames', 'durationSeconds', 'verification', 'warningsOmitted'];
  const lines = keys.filter((k) => tail[k] !== undefined).map((k) => `  ${JSON.stringify(k)}: ${JSON.stringify(tail[k])},\n`);
  const warnings = tail.warnings.length === 0 ? '  "warnings": []\n' : `  "warnings": [\n${tail.warnings.map((w) => `    ${JSON.stringify(w)}`).join(',\n')}\n  ]\n`;
  return `  ],\n${lines.join('')}${warnings}}\n`;
}

/** A whole manifest in format 2 layout, for manifests held in memory (small ones, tests). */
export function serializeManifest(manifest: Manifest, files: readonly ManifestFile[]): string {
  const { archiveBytes, sha256, tarBytes, entryCount, fileCount, totalBytes, storedBytes, frames, durationSeconds, verification, warnings, warningsOmitted, ...head } = manifest;
  const tail: ManifestTail = { archiveBytes, sha256, tarBytes, entryCount, fileCount, totalBytes, storedBytes, frames, durationSeconds, verification, warnings, warningsOmitted };
  const fileLines = files.map((f) => `    ${JSON.stringify(f)}`).join(',\n');
  return `{\n${headLines(head)}${FILES_OPEN.slice(1)}${fileLines}${files.length ? '\n' : ''}${tailText(tail)}`;
}

// ---------------------------------------------------------------- reading

/** The per-file list, read one entry at a time. */
export interface ManifestFiles {
  /** The next entry, or undefined after the last one. Throws IntegrityError for a damaged entry. */
  next(): ManifestFile | undefined;
  close(): void;
}

export interface OpenedManifest {
  manifest: Manifest;
  /** A fresh reader of the file list (may be called more than once). */
  files(): ManifestFiles;
  /** 'stream': in the layout pvc-backup writes (read piece by piece); 'whole': parsed as one document. */
  layout: 'stream' | 'whole';
}

/** Manifests not in the streaming layout are parsed whole, up to this size. */
const MAX_WHOLE_BYTES = 64 * 1024 * 1024;
const MAX_HEAD_BYTES = 1024 * 1024;
const MAX_TAIL_BYTES = 16 * 1024 * 1024;

function damaged(file: string, what: string): IntegrityError {
  return new IntegrityError(`manifest ${file} ${what}; the archive cannot be checked against it`, 'MANIFEST');
}

/** Opens a manifest file. IntegrityError when it is not a pvc-backup manifest. */
export function openManifest(file: string): OpenedManifest {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = readRange(fd, 0, Math.min(size, MAX_HEAD_BYTES)).toString('utf8');
    const filesAt = head.indexOf(FILES_OPEN);
    // pvc-backup's layout: one compact entry per line (a pretty-printed document is read whole).
    const listStart = filesAt === -1 ? '' : head.slice(filesAt + FILES_OPEN.length, filesAt + FILES_OPEN.length + 6);
    if (filesAt !== -1 && head.startsWith('{\n  "format": ') && (listStart.startsWith('    {"') || listStart.startsWith('  ]'))) {
      const headValue = parseObject(`${head.slice(0, filesAt).replace(/,$/, '')}\n}`, file);
      const start = Buffer.byteLength(head.slice(0, filesAt + FILES_OPEN.length), 'utf8');
      if (headValue.format === 1) {
        const tailText = readRange(fd, Math.max(start, size - 16), size).toString('utf8');
        if (V1_END.test(tailText)) {
          const end = size - (tailText.match(V1_END)![0].length - 1);
          return streamed(file, { ...(headValue as unknown as Manifest) }, start, end);
        }
      } else {
        const tail = findTail(fd, size, start);
        if (tail) {
          const tailValue = parseObject(`{\n${readRange(fd, tail + TAIL_MARK.length - '"archiveBytes": '.length, size).toString('utf8')}`, file);
          return streamed(file, { ...(headValue as unknown as ManifestHead), ...(tailValue as unknown as ManifestTail) }, start, tail + 1);
        }
      }
    }
    if (size > MAX_WHOLE_BYTES) throw damaged(file, `is not in the layout pvc-backup writes and is too large (${size} bytes) to read whole`);
    return whole(file, readRange(fd, 0, size).toString('utf8'));
  } finally {
    fs.closeSync(fd);
  }
}

function readRange(fd: number, start: number, end: number): Buffer {
  const buffer = Buffer.allocUnsafe(Math.max(0, end - start));
  let done = 0;
  while (done < buffer.length) {
    const n = fs.readSync(fd, buffer, done, buffer.length - done, start + done);
    if (n === 0) break;
    done += n;
  }
  return buffer.subarray(0, done);
}

/** Byte offset of TAIL_MARK (the newline before `  ],`), searching backwards from the end. */
function findTail(fd: number, size: number, floor: number): number | undefined {
  const mark = Buffer.from(TAIL_MARK);
  let window = 64 * 1024;
  while (true) {
    const start = Math.max(floor - 1, size - window);
    const data = readRange(fd, start, size);
    const at = data.lastIndexOf(mark);
    if (at !== -1) return start + at;
    if (start <= floor - 1 || window >= MAX_TAIL_BYTES) return undefined;
    window *= 4;
  }
}

function parseObject(text: string, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw damaged(file, `is not valid JSON (${(error as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw damaged(file, 'is not a JSON object');
  return value as Record<string, unknown>;
}

function whole(file: string, text: string): OpenedManifest {
  const value = parseObject(text, file);
  const { files, ...rest } = value;
  if (!Array.isArray(files)) throw damaged(file, `has no file list ("files" is ${files === undefined ? 'missing' : JSON.stringify(files)?.slice(0, 20)})`);
  const list = files as unknown[];
  return {
    manifest: rest as unknown as Manifest,
    layout: 'whole',
    files: () => {
      let i = 0;
      return {
        next: () => (i < list.length ? checkEntry(list[i++], i - 1, file) : undefined),
        close: () => undefined,
      };
    },
  };
}

function checkEntry(value: unknown, index: number, file: string): ManifestFile {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw damaged(file, `has a file entry that is not an object (files[${index}])`);
  return value as ManifestFile;
}

function streamed(file: string, manifest: Manifest, start: number, end: number): OpenedManifest {
  return { manifest, layout: 'stream', files: () => new LineReader(file, start, end) };
}

/** Reads the file list of a streaming-layout manifest line by line, 1 MiB at a time. */
class LineReader implements ManifestFiles {
  private fd: number | undefined;
  private position: number;
  private text = '';
  private at = 0;
  private index = 0;
  private carry: Buffer = Buffer.alloc(0);
  private readonly buffer = Buffer.allocUnsafe(1024 * 1024);

  constructor(
    private readonly file: string,
    start: number,
    private readonly end: number,
  ) {
    this.position = start;
    this.fd = fs.openSync(file, 'r');
  }

  next(): ManifestFile | undefined {
    for (;;) {
      const newline = this.text.indexOf('\n', this.at);
      if (newline !== -1) {
        const line = this.text.slice(this.at, newline);
        this.at = newline + 1;
        return this.parse(line);
      }
      if (!this.fill()) {
        const rest = this.text.slice(this.at);
        this.text = '';
        this.at = 0;
        return rest.trim() === '' ? this.finish() : this.parse(rest);
      }
    }
  }

  private parse(line: string): ManifestFile {
    const body = line.endsWith(',') ? line.slice(0, -1) : line;
    if (!body.startsWith('    {')) throw damaged(this.file, `has a damaged file list (entry ${this.index + 1})`);
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      throw damaged(this.file, `has a file entry that is not valid JSON (entry ${this.index + 1})`);
    }
    return checkEntry(value, this.index++, this.file);
  }

  private finish(): undefined {
    this.close();
    return undefined;
  }

  /** Reads the next piece; false at the end of the list. */
  private fill(): boolean {
    if (this.fd === undefined || this.position >= this.end) return false;
    const n = fs.readSync(this.fd, this.buffer, 0, Math.min(this.buffer.length, this.end - this.position), this.position);
    if (n === 0) return false;
    this.position += n;
    // A multi-byte character may be split at the piece boundary: keep the incomplete tail bytes.
    let data = this.carry.length ? Buffer.concat([this.carry, this.buffer.subarray(0, n)]) : this.buffer.subarray(0, n);
    let cut = data.length;
    if (this.position < this.end) {
      const lastNewline = data.lastIndexOf(0x0a);
      cut = lastNewline === -1 ? 0 : lastNewline + 1;
    }
    this.carry = Buffer.from(data.subarray(cut));
    data = data.subarray(0, cut);
    this.text = this.text.slice(this.at) + data.toString('utf8');
    this.at = 0;
    return true;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * Writes the manifest `file` with another verification record into `fd` (the caller's hidden
 * partial, renamed over the old file afterwards): a format 2 manifest in pvc-backup's layout is
 * copied byte for byte up to its tail, anything else is re-serialized.
 */
export function writeManifestWithVerification(file: string, verification: Verification, fd: number): void {
  const opened = openManifest(file);
  const { manifest } = opened;
  if (opened.layout === 'stream' && manifest.format >= 2) {
    const source = fs.openSync(file, 'r');
    try {
      const tail = findTail(source, fs.fstatSync(source).size, 0);
      if (tail === undefined) throw damaged(file, 'lost its tail while being read');
      copyRange(source, fd, tail + 1);
    } finally {
      fs.closeSync(source);
    }
    writeAll(fd, Buffer.from(tailText({ ...manifest, verification }), 'utf8'));
    return;
  }
  const files: ManifestFile[] = [];
  const reader = opened.files();
  for (let f = reader.next(); f; f = reader.next()) files.push(f);
  const updated = { ...manifest, verification };
  writeAll(fd, Buffer.from(manifest.format === 1 ? serializeManifestV1(updated, files) : serializeManifest(updated, files), 'utf8'));
}

function copyRange(from: number, to: number, length: number): void {
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  let position = 0;
  while (position < length) {
    const n = fs.readSync(from, buffer, 0, Math.min(buffer.length, length - position), position);
    if (n === 0) throw new Error('manifest shrank while being copied');
    writeAll(to, buffer.subarray(0, n));
    position += n;
  }
}

/** Format 1's layout (pretty head with the file list last, one file per line). */
function serializeManifestV1(manifest: Manifest, files: readonly ManifestFile[]): string {
  const headText = JSON.stringify(manifest, null, 2);
  const fileLines = files.map((f) => `    ${JSON.stringify(f)}`).join(',\n');
  return `${headText.slice(0, -2)},\n  "files": [\n${fileLines}${files.length ? '\n' : ''}  ]\n}\n`;
}
