import { IntegrityError } from '../errors.js';
import { count } from '../log.js';
import { decodeName } from './names.js';
import { type PaxRecord, parsePax, parsePaxTime } from './pax.js';
import { type Extent, SparseMapReader, checkLayout, dataBytes, dropEmpty, parseMapText } from './sparse.js';
import type { Xattr } from './syscall-helper.js';
import { isXattrKey, xattrsFromPax } from './xattrs.js';

/**
 * A push parser for tar streams (ustar, pax, GNU long names, GNU sparse files): feed it
 * decompressed bytes with `write`, get entries and their data through a visitor, and `end`
 * tells whether the stream really reached tar's end-of-archive marker. Names are read as raw
 * bytes (ustar fields, GNU long names and pax records alike) and kept losslessly (names.ts).
 */

export interface TarEntry {
  /** Lossless path as stored (names.ts). */
  path: string;
  /** File, OldFile, ContiguousFile, Directory, SymbolicLink, Link, CharacterDevice, FIFO, … */
  type: string;
  /** Apparent size of a regular file (a sparse file's real size); 0 for others. */
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds since the epoch, rounded down. */
  mtime: number;
  /** Nanoseconds past `mtime`. */
  mtimeNsec: number;
  /** Lossless link target. */
  linkpath: string;
  /** Offset of the entry's own header in the tar stream. */
  offset: number;
  /** Offset of the first header that belongs to the entry (its pax or long-name header, if any). */
  headerOffset: number;
  /** Extended attributes (ACLs, capabilities included), when the archive holds any for the entry. */
  xattrs?: Xattr[];
  /** Attributes of the entry that cannot be restored as stored (e.g. an ACL naming an unknown user). */
  xattrProblems?: string[];
  /** A sparse file's data extents; its data arrives as these extents, one after another. */
  sparse?: Extent[];
  /** Bytes of data the archive holds for the entry (the size, or the sum of a sparse file's extents). */
  storedSize: number;
}

export interface EntrySink {
  data(chunk: Buffer): void;
  end(): void;
}

export interface TarVisitor {
  /** Called for every file-system entry; return a sink to receive its data. */
  entry(entry: TarEntry): EntrySink | undefined;
  /** Called by the reader between chunks: a promise makes it wait (e.g. for file writes to catch up). */
  backpressure?(): Promise<void> | undefined;
  /** Bytes the visitor copied into buffers of its own since the last call: garbage the reader's collections must count. */
  takeCopiedBytes?(): number;
  /**
   * The visitor keeps chunks after `data` returns (it writes them behind the reader). They
   * outlive young collections, so the reader then also collects all garbage every few dozen MiB.
   */
  readonly keepsChunks?: boolean;
}

const BLOCK = 512;
/** Extended headers larger than this are refused: they are never legitimate and would cost memory. */
const MAX_META = 1024 * 1024;

const TYPES: Record<string, string> = {
  '0': 'File',
  '\0': 'OldFile',
  '1': 'Link',
  '2': 'SymbolicLink',
  '3': 'CharacterDevice',
  '4': 'BlockDevice',
  '5': 'Directory',
  '6': 'FIFO',
  '7': 'ContiguousFile',
  g: 'GlobalExtendedHeader',
  x: 'ExtendedHeader',
  A: 'SolarisACL',
  D: 'GNUDumpDir',
  I: 'Inode',
  K: 'NextFileHasLongLinkpath',
  L: 'NextFileHasLongPath',
  M: 'ContinuationFile',
  N: 'OldGnuLongPath',
  S: 'SparseFile',
  V: 'TapeVolumeHeader',
  X: 'OldExtendedHeader',
};
const META_TYPES = new Set(['ExtendedHeader', 'GlobalExtendedHeader', 'NextFileHasLongPath', 'NextFileHasLongLinkpath', 'OldGnuLongPath']);
const NO_DATA = new Set(['Directory', 'SymbolicLink', 'Link', 'CharacterDevice', 'BlockDevice', 'FIFO']);

/** What a pax header (or GNU long name) says about the next entry. */
interface Pending {
  path?: Buffer;
  linkpath?: Buffer;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: { sec: number; nsec: number };
  records: PaxRecord[];
  firstOffset: number;
}

type State =
  | { kind: 'header' }
  | { kind: 'body'; remaining: number; padding: number; sink: EntrySink | undefined }
  | { kind: 'meta'; type: string; remaining: number; padding: number; parts: Buffer[] }
  | { kind: 'sparseMap'; entry: TarEntry; map: SparseMapReader; remaining: number; padding: number }
  | { kind: 'gnuSparse'; entry: TarEntry; extents: Extent[]; remaining: number; padding: number }
  | { kind: 'done' };

export class TarReader {
  /** Bytes consumed so far. */
  bytes = 0;
  entries = 0;
  /** True once two zero blocks (or one, followed by the end of the stream) were read. */
  reachedEnd = false;

  private state: State = { kind: 'header' };
  private pending: Buffer | undefined;
  private zeroBlocks = 0;
  private extended: Pending | undefined;
  private global: Pending | undefined;
  private trailingGarbage = false;

  constructor(private readonly visitor: TarVisitor) {}

  write(chunk: Buffer): void {
    // Data pieces handed to sinks are always views of `chunk` itself (a consumer may move the
    // chunk to another thread afterwards); only a header block split across chunks is copied.
    const data = chunk;
    let offset = 0;
    if (this.pending) {
      const take = Math.min(BLOCK - this.pending.length, data.length);
      const block = Buffer.concat([this.pending, data.subarray(0, take)]);
      offset = take;
      this.pending = undefined;
      if (block.length < BLOCK) {
        this.pending = block;
        return;
      }
      this.bytes += BLOCK;
      const state = this.state;
      if (state.kind === 'header') this.readHeader(block);
      else if (state.kind === 'gnuSparse') this.readSparseExtension(state, block);
    }
    while (offset < data.length) {
      const state = this.state;
      if (state.kind === 'done') {
        // GNU tar pads the archive to a 10 KiB record with zeros; anything else is garbage.
        if (!this.trailingGarbage && data.subarray(offset).some((b) => b !== 0)) this.trailingGarbage = true;
        this.bytes += data.length - offset;
        return;
      }
      if (state.kind === 'header' || state.kind === 'gnuSparse') {
        if (data.length - offset < BLOCK) {
          this.pending = Buffer.from(data.subarray(offset));
          return;
        }
        const block = data.subarray(offset, offset + BLOCK);
        offset += BLOCK;
        this.bytes += BLOCK;
        if (state.kind === 'header') this.readHeader(block);
        else this.readSparseExtension(state, block);
        continue;
      }
      if (state.kind === 'sparseMap') {
        const used = state.map.push(data.subarray(offset, offset + Math.min(state.remaining, data.length - offset)));
        state.remaining -= used;
        offset += used;
        this.bytes += used;
        if (!state.map.done) {
          if (state.remaining === 0) throw new IntegrityError(`corrupt archive: sparse map of ${state.entry.path} runs past its data`, 'CORRUPT');
          continue;
        }
        const entry = state.entry;
        entry.sparse = dropEmpty(state.map.extents());
        entry.storedSize = state.remaining;
        checkLayout({ extents: entry.sparse, realSize: entry.size }, entry.storedSize, entry.path);
        this.startBody(entry, state.remaining, state.padding);
        continue;
      }
      // body or meta: data then padding
      if (state.remaining > 0) {
        const n = Math.min(state.remaining, data.length - offset);
        const piece = data.subarray(offset, offset + n);
        if (state.kind === 'body') state.sink?.data(piece);
        else state.parts.push(Buffer.from(piece));
        state.remaining -= n;
        offset += n;
        this.bytes += n;
        if (state.remaining > 0) return;
      }
      const skip = Math.min(state.padding, data.length - offset);
      state.padding -= skip;
      offset += skip;
      this.bytes += skip;
      if (state.padding > 0) return;
      if (state.kind === 'body') {
        this.state = { kind: 'header' };
        state.sink?.end();
      } else {
        this.state = { kind: 'header' };
        this.finishMeta(state.type, state.parts.length === 1 ? state.parts[0]! : Buffer.concat(state.parts));
      }
    }
  }

  /** Call at the end of the stream; throws when the archive stopped early. */
  end(): void {
    const state = this.state;
    if (state.kind !== 'header' && state.kind !== 'done') {
      throw new IntegrityError(`archive is truncated: it ends inside an entry at tar byte ${this.bytes}`, 'TRUNCATED');
    }
    if (state.kind === 'header' && this.zeroBlocks === 1 && !this.pending) {
      this.reachedEnd = true;
      this.state = { kind: 'done' };
      return;
    }
    if (state.kind !== 'done') {
      throw new IntegrityError(`archive is truncated: no tar end-of-archive marker after ${count(this.entries, 'entry')} (${this.bytes} bytes)`, 'TRUNCATED');
    }
    if (this.trailingGarbage) {
      throw new IntegrityError('archive has unexpected data after its tar end-of-archive marker', 'CORRUPT');
    }
  }

  private readHeader(block: Buffer): void {
    const at = this.bytes - BLOCK;
    if (isZeroBlock(block)) {
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) {
        this.reachedEnd = true;
        this.state = { kind: 'done' };
      }
      return;
    }
    if (this.zeroBlocks > 0) {
      throw new IntegrityError(`corrupt archive: data after an end-of-archive block at tar byte ${at}`, 'CORRUPT');
    }
    if (!checksumValid(block)) {
      throw new IntegrityError(`corrupt archive: bad tar header checksum at tar byte ${at}`, 'CORRUPT');
    }
    const flag = String.fromCharCode(block[156]!);
    let type = TYPES[flag] ?? 'Unsupported';
    const rawSize = octal(block, 124, 12);
    if (rawSize === undefined) throw new IntegrityError(`corrupt archive: bad entry size at tar byte ${at}`, 'CORRUPT');
    if (META_TYPES.has(type)) {
      const padding = (BLOCK - (rawSize % BLOCK)) % BLOCK;
      if (rawSize > MAX_META) throw new IntegrityError(`corrupt archive: ${rawSize}-byte extended header at tar byte ${at}`, 'CORRUPT');
      this.extended ??= { records: [], firstOffset: at };
      this.state = { kind: 'meta', type, remaining: rawSize, padding, parts: [] };
      return;
    }
    const ext = this.extended;
    const glob = this.global;
    this.extended = undefined;
    const posix = block.toString('latin1', 257, 263) === 'ustar\0';
    let pathBytes = ext?.path;
    if (!pathBytes) {
      const name = cField(block, 0, 100);
      const prefix = posix && block[345] !== 0 ? cField(block, 345, 155) : undefined;
      pathBytes = prefix ? Buffer.concat([prefix, SLASH, name]) : name;
    }
    const path = decodeName(pathBytes);
    if ((type === 'File' || type === 'OldFile') && path.endsWith('/')) type = 'Directory';
    const size = ext?.size ?? glob?.size ?? rawSize;
    if (!Number.isSafeInteger(size) || size < 0) throw new IntegrityError(`corrupt archive: impossible entry size at tar byte ${at}`, 'CORRUPT');
    const time = ext?.mtime ?? glob?.mtime ?? { sec: octal(block, 136, 12) ?? 0, nsec: 0 };
    const entry: TarEntry = {
      path,
      type,
      size: NO_DATA.has(type) ? 0 : size,
      mode: octal(block, 100, 8) ?? 0,
      uid: ext?.uid ?? glob?.uid ?? octal(block, 108, 8) ?? 0,
      gid: ext?.gid ?? glob?.gid ?? octal(block, 116, 8) ?? 0,
      mtime: time.sec,
      mtimeNsec: time.nsec,
      linkpath: decodeName(ext?.linkpath ?? cField(block, 157, 100)),
      offset: at,
      headerOffset: ext?.firstOffset ?? at,
      storedSize: NO_DATA.has(type) ? 0 : size,
    };
    const records = ext?.records ?? [];
    if (records.some((r) => isXattrKey(r.key))) {
      const { xattrs, problems } = xattrsFromPax(records);
      if (xattrs.length) entry.xattrs = xattrs;
      if (problems.length) entry.xattrProblems = problems;
    }
    this.entries++;
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    // Links and directories carry no data even when a foreign tar wrote a size: it is skipped.
    if (NO_DATA.has(type)) {
      this.startBody(entry, 0, size === 0 ? 0 : size + padding);
      return;
    }
    const sparse = sparseOf(records, entry, size);
    if (sparse === 'map') {
      this.state = { kind: 'sparseMap', entry, map: new SparseMapReader(), remaining: size, padding };
      return;
    }
    if (sparse) {
      entry.size = sparse.realSize;
      entry.sparse = dropEmpty(sparse.extents);
      checkLayout({ extents: entry.sparse, realSize: entry.size }, size, entry.path);
    }
    if (type === 'SparseFile') {
      this.startGnuSparse(entry, block, padding, rawSize);
      return;
    }
    this.startBody(entry, size, padding);
  }

  private startBody(entry: TarEntry, remaining: number, padding: number): void {
    const sink = this.visitor.entry(entry);
    if (remaining === 0 && padding === 0) {
      this.state = { kind: 'header' };
      sink?.end();
      return;
    }
    this.state = { kind: 'body', remaining, padding, sink };
  }

  /** Old GNU sparse files (type S): up to four extents in the header, more in extension blocks. */
  private startGnuSparse(entry: TarEntry, block: Buffer, padding: number, stored: number): void {
    const extents: Extent[] = [];
    readGnuExtents(block, 386, 4, extents);
    entry.type = 'File';
    entry.size = octal(block, 483, 12) ?? entry.size;
    entry.storedSize = stored;
    const state = { kind: 'gnuSparse' as const, entry, extents, remaining: stored, padding };
    if (block[482] !== 0) {
      this.state = state;
      return;
    }
    this.finishGnuSparse(state);
  }

  private readSparseExtension(state: Extract<State, { kind: 'gnuSparse' }>, block: Buffer): void {
    readGnuExtents(block, 0, 21, state.extents);
    if (state.extents.length > 1_000_000) throw new IntegrityError('corrupt archive: sparse map too large', 'CORRUPT');
    if (block[504] === 0) this.finishGnuSparse(state);
  }

  private finishGnuSparse(state: Extract<State, { kind: 'gnuSparse' }>): void {
    const entry = state.entry;
    entry.sparse = dropEmpty(state.extents);
    checkLayout({ extents: entry.sparse, realSize: entry.size }, entry.storedSize, entry.path);
    this.startBody(entry, state.remaining, state.padding);
  }

  private finishMeta(type: string, body: Buffer): void {
    const ext = this.extended!;
    switch (type) {
      case 'ExtendedHeader':
        applyPax(ext, parsePax(body));
        break;
      case 'GlobalExtendedHeader': {
        this.extended = undefined;
        const global: Pending = this.global ?? { records: [], firstOffset: 0 };
        applyPax(global, parsePax(body));
        global.path = undefined;
        global.linkpath = undefined;
        this.global = global;
        break;
      }
      case 'NextFileHasLongPath':
      case 'OldGnuLongPath':
        ext.path = cString(body);
        break;
      case 'NextFileHasLongLinkpath':
        ext.linkpath = cString(body);
        break;
    }
  }
}

const SLASH = Buffer.from('/');

function applyPax(target: Pending, records: PaxRecord[]): void {
  for (const r of records) {
    switch (r.key) {
      case 'path':
        target.path = r.value;
        break;
      case 'linkpath':
        target.linkpath = r.value;
        break;
      case 'size':
      case 'uid':
      case 'gid': {
        const text = r.value.toString('latin1');
        const n = Number(text);
        if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new IntegrityError(`corrupt archive: bad pax ${r.key} "${text.slice(0, 40)}"`, 'CORRUPT');
        target[r.key] = n;
        break;
      }
      case 'mtime': {
        const time = parsePaxTime(r.value.toString('latin1'));
        if (time) target.mtime = time;
        break;
      }
      default:
        // The records are views of the header's own body, which nothing else holds.
        target.records.push(r);
    }
  }
}

/** The sparse layout the pax records describe: 'map' for format 1.0 (map in the data). */
function sparseOf(records: readonly PaxRecord[], entry: TarEntry, size: number): 'map' | { extents: Extent[]; realSize: number } | undefined {
  if (records.length === 0) return undefined;
  const get = (key: string) => records.find((r) => r.key === key)?.value.toString('utf8');
  const major = get('GNU.sparse.major');
  if (major !== undefined) {
    if (major !== '1' || get('GNU.sparse.minor') !== '0') throw new IntegrityError(`archive entry ${entry.path} uses GNU sparse format ${major}.${get('GNU.sparse.minor')}, which is not supported`, 'UNSUPPORTED');
    const realSize = Number(get('GNU.sparse.realsize'));
    if (!Number.isSafeInteger(realSize) || realSize < 0) throw new IntegrityError(`corrupt archive: bad GNU.sparse.realsize for ${entry.path}`, 'CORRUPT');
    const name = records.find((r) => r.key === 'GNU.sparse.name');
    if (name) entry.path = decodeName(name.value);
    entry.size = realSize;
    return 'map';
  }
  const realText = get('GNU.sparse.size') ?? get('GNU.sparse.realsize');
  if (realText === undefined) return undefined;
  const realSize = Number(realText);
  if (!Number.isSafeInteger(realSize) || realSize < 0) throw new IntegrityError(`corrupt archive: bad GNU.sparse.size for ${entry.path}`, 'CORRUPT');
  const mapText = get('GNU.sparse.map');
  let extents: Extent[] | undefined;
  if (mapText !== undefined) extents = parseMapText(mapText);
  else {
    // Format 0.0: GNU.sparse.offset / GNU.sparse.numbytes pairs, in order.
    extents = [];
    let offset: number | undefined;
    for (const r of records) {
      if (r.key === 'GNU.sparse.offset') offset = Number(r.value.toString('latin1'));
      else if (r.key === 'GNU.sparse.numbytes' && offset !== undefined) {
        extents.push({ offset, length: Number(r.value.toString('latin1')) });
        offset = undefined;
      }
    }
  }
  if (!extents) throw new IntegrityError(`corrupt archive: bad sparse map for ${entry.path}`, 'CORRUPT');
  const name = records.find((r) => r.key === 'GNU.sparse.name');
  if (name) entry.path = decodeName(name.value);
  if (dataBytes(extents) !== size) throw new IntegrityError(`corrupt archive: the sparse map of ${entry.path} does not match its data size`, 'CORRUPT');
  return { extents, realSize };
}

function readGnuExtents(block: Buffer, start: number, count: number, into: Extent[]): void {
  for (let i = 0; i < count; i++) {
    const at = start + i * 24;
    if (block[at] === 0) return;
    const offset = octal(block, at, 12);
    const length = octal(block, at + 12, 12);
    if (offset === undefined || length === undefined) throw new IntegrityError('corrupt archive: bad GNU sparse header', 'CORRUPT');
    into.push({ offset, length });
  }
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i += 8) {
    if (block.readBigUInt64LE(i) !== 0n) return false;
  }
  return true;
}

function checksumValid(block: Buffer): boolean {
  const stored = octal(block, 148, 8);
  if (stored === undefined) return false;
  let unsigned = 8 * 0x20;
  for (let i = 0; i < 148; i++) unsigned += block[i]!;
  for (let i = 156; i < BLOCK; i++) unsigned += block[i]!;
  if (stored === unsigned) return true;
  // Some old tars summed signed bytes.
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const b = block[i]!;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === signed;
}

/** A NUL-terminated field's bytes (a view: decoded before the block is reused). */
function cField(block: Buffer, start: number, length: number): Buffer {
  let end = start;
  const limit = start + length;
  while (end < limit && block[end] !== 0) end++;
  return block.subarray(start, end);
}

function cString(body: Buffer): Buffer {
  const nul = body.indexOf(0);
  return Buffer.from(body.subarray(0, nul === -1 ? body.length : nul));
}

/** A numeric header field: octal (space/NUL terminated) or GNU base-256; undefined when malformed. */
export function octal(block: Buffer, start: number, length: number): number | undefined {
  const first = block[start]!;
  if (first & 0x80) {
    // GNU base-256: big-endian, two's complement; 0x80 marks a positive number, 0xff a negative one.
    let value = first === 0xff ? -1 : first & 0x7f;
    for (let i = start + 1; i < start + length; i++) value = value * 256 + block[i]!;
    return Number.isSafeInteger(value) ? value : undefined;
  }
  let value = 0;
  let i = start;
  const end = start + length;
  while (i < end && (block[i] === 0x20 || block[i] === 0)) i++;
  if (i === end) return 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c >= 0x30 && c <= 0x37) {
      value = value * 8 + (c - 0x30);
      digits++;
    } else if (c === 0x20 || c === 0) break;
    else return undefined;
  }
  return digits ? value : undefined;
}
