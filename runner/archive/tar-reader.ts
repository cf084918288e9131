import { Header, type HeaderData } from 'tar';
import { IntegrityError } from '../errors.js';
import { count } from '../log.js';

/**
 * A push parser for tar streams (ustar, pax, GNU long names): feed it decompressed bytes with
 * `write`, get entries and their data through a visitor, and `end` tells whether the stream
 * really reached tar's end-of-archive marker. Header blocks are decoded by node-tar's Header;
 * pax records are parsed here because names may hold newlines.
 */

export interface TarEntry {
  path: string;
  /** node-tar type name: File, Directory, SymbolicLink, Link, CharacterDevice, FIFO, … */
  type: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
  linkpath: string;
  /** Offset of the entry's header in the tar stream. */
  offset: number;
}

export interface EntrySink {
  data(chunk: Buffer): void;
  end(): void;
}

export interface TarVisitor {
  /** Called for every file-system entry; return a sink to receive its data. */
  entry(entry: TarEntry): EntrySink | undefined;
}

const BLOCK = 512;
/** Extended headers larger than this are refused: they are never legitimate and would cost memory. */
const MAX_META = 1024 * 1024;
const META_TYPES = new Set(['ExtendedHeader', 'GlobalExtendedHeader', 'NextFileHasLongPath', 'NextFileHasLongLinkpath', 'OldGnuLongPath']);

type State =
  | { kind: 'header' }
  | { kind: 'body'; remaining: number; padding: number; sink: EntrySink | undefined }
  | { kind: 'meta'; type: string; remaining: number; padding: number; parts: Buffer[] }
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
  private extended: HeaderData | undefined;
  private globalExtended: HeaderData | undefined;
  private trailingGarbage = false;

  constructor(private readonly visitor: TarVisitor) {}

  write(chunk: Buffer): void {
    let data = chunk;
    if (this.pending) {
      data = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let offset = 0;
    while (offset < data.length) {
      const state = this.state;
      if (state.kind === 'done') {
        // GNU tar pads the archive to a 10 KiB record with zeros; anything else is garbage.
        if (!this.trailingGarbage && data.subarray(offset).some((b) => b !== 0)) this.trailingGarbage = true;
        this.bytes += data.length - offset;
        return;
      }
      if (state.kind === 'header') {
        if (data.length - offset < BLOCK) {
          this.pending = Buffer.from(data.subarray(offset));
          return;
        }
        this.readHeader(data.subarray(offset, offset + BLOCK));
        offset += BLOCK;
        this.bytes += BLOCK;
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
        state.sink?.end();
        this.state = { kind: 'header' };
      } else {
        this.finishMeta(state.type, Buffer.concat(state.parts));
        this.state = { kind: 'header' };
      }
    }
  }

  /** Call at the end of the stream; throws when the archive stopped early. */
  end(): void {
    const state = this.state;
    if (state.kind === 'body' || state.kind === 'meta') {
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
    if (isZeroBlock(block)) {
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) {
        this.reachedEnd = true;
        this.state = { kind: 'done' };
      }
      return;
    }
    if (this.zeroBlocks > 0) {
      throw new IntegrityError(`corrupt archive: data after an end-of-archive block at tar byte ${this.bytes}`, 'CORRUPT');
    }
    const header = new Header(block, 0, this.extended, this.globalExtended);
    if (!header.cksumValid) {
      throw new IntegrityError(`corrupt archive: bad tar header checksum at tar byte ${this.bytes}`, 'CORRUPT');
    }
    const type = header.type;
    const size = header.size ?? 0;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new IntegrityError(`corrupt archive: impossible entry size at tar byte ${this.bytes}`, 'CORRUPT');
    }
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (META_TYPES.has(type)) {
      if (size > MAX_META) throw new IntegrityError(`corrupt archive: ${size}-byte extended header at tar byte ${this.bytes}`, 'CORRUPT');
      this.state = { kind: 'meta', type, remaining: size, padding, parts: [] };
      return;
    }
    // node-tar's Header lets the ustar linkpath field (and a ustar prefix) win over the pax
    // values it was given, so the extended path and linkpath are applied here, last.
    const entry: TarEntry = {
      path: this.extended?.path ?? header.path ?? '',
      type,
      size: type === 'Directory' || type === 'SymbolicLink' || type === 'Link' ? 0 : size,
      mode: header.mode ?? 0,
      uid: header.uid ?? 0,
      gid: header.gid ?? 0,
      mtime: header.mtime ? Math.floor(header.mtime.getTime() / 1000) : 0,
      linkpath: this.extended?.linkpath ?? header.linkpath ?? '',
      offset: this.bytes,
    };
    this.extended = undefined;
    this.entries++;
    const sink = this.visitor.entry(entry);
    // Links and directories carry no data even when a foreign tar wrote a size.
    const bodySize = entry.type === 'Directory' || entry.type === 'SymbolicLink' || entry.type === 'Link' ? 0 : size;
    const bodyPadding = bodySize === 0 ? (size === 0 ? 0 : size + padding) : padding;
    if (bodySize === 0 && bodyPadding === 0) {
      sink?.end();
      return;
    }
    this.state = { kind: 'body', remaining: bodySize, padding: bodyPadding, sink };
  }

  private finishMeta(type: string, body: Buffer): void {
    switch (type) {
      case 'ExtendedHeader':
        this.extended = { ...this.extended, ...paxFields(body) };
        break;
      case 'GlobalExtendedHeader': {
        const { path: _p, linkpath: _l, ...rest } = paxFields(body);
        this.globalExtended = { ...this.globalExtended, ...rest };
        break;
      }
      case 'NextFileHasLongPath':
      case 'OldGnuLongPath':
        this.extended = { ...this.extended, path: cString(body) };
        break;
      case 'NextFileHasLongLinkpath':
        this.extended = { ...this.extended, linkpath: cString(body) };
        break;
    }
  }
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i += 8) {
    if (block.readBigUInt64LE(i) !== 0n) return false;
  }
  return true;
}

function cString(body: Buffer): string {
  const nul = body.indexOf(0);
  return body.subarray(0, nul === -1 ? body.length : nul).toString('utf8');
}

/** Parses pax records `<len> <key>=<value>\n`; values may contain newlines (the length says where they end). */
export function paxFields(body: Buffer): HeaderData {
  const fields: HeaderData = {};
  let offset = 0;
  while (offset < body.length) {
    if (body[offset] === 0) break;
    const space = body.indexOf(0x20, offset);
    if (space === -1) throw new IntegrityError('corrupt archive: malformed pax extended header', 'CORRUPT');
    const length = Number(body.subarray(offset, space).toString('ascii'));
    if (!Number.isInteger(length) || length <= space - offset || offset + length > body.length || body[offset + length - 1] !== 0x0a) {
      throw new IntegrityError('corrupt archive: malformed pax extended header', 'CORRUPT');
    }
    const record = body.subarray(space + 1, offset + length - 1).toString('utf8');
    offset += length;
    const eq = record.indexOf('=');
    if (eq === -1) continue;
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    switch (key) {
      case 'path':
        fields.path = value;
        break;
      case 'linkpath':
        fields.linkpath = value;
        break;
      case 'size':
      case 'uid':
      case 'gid': {
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n < 0) throw new IntegrityError(`corrupt archive: bad pax ${key} "${value}"`, 'CORRUPT');
        fields[key] = n;
        break;
      }
      case 'mtime': {
        const seconds = Number(value);
        if (Number.isFinite(seconds)) fields.mtime = new Date(seconds * 1000);
        break;
      }
      case 'uname':
      case 'gname':
        fields[key] = value;
        break;
    }
  }
  return fields;
}
