import fs from 'node:fs';
import { IntegrityError } from '../errors.js';
import type { Extent } from './syscall-helper.js';
import { Turns } from './turns.js';

/**
 * Sparse files in GNU tar's "sparse format 1.0" for pax archives, the form `tar --sparse
 * --format=posix` writes and every GNU tar reads: pax records GNU.sparse.major=1,
 * GNU.sparse.minor=0, GNU.sparse.name=<path>, GNU.sparse.realsize=<apparent size>; the entry's
 * data starts with the map as decimal lines (count, then offset and length per data extent),
 * padded with NULs to a 512-byte block, followed by the data extents one after another. A file
 * that ends in a hole gets a last, empty extent at its end (as GNU tar writes it).
 */

export type { Extent } from './syscall-helper.js';

const BLOCK = 512;

export interface SparseLayout {
  extents: Extent[];
  /** Apparent size of the file. */
  realSize: number;
}

/** Bytes of data the extents hold. */
export function dataBytes(extents: readonly Extent[]): number {
  let sum = 0;
  for (const e of extents) sum += e.length;
  return sum;
}

/** The map block (a multiple of 512 bytes) that starts the entry's data. */
export function encodeSparseMap(layout: SparseLayout): Buffer {
  const extents = withEndMarker(layout);
  const text = [String(extents.length), ...extents.flatMap((e) => [String(e.offset), String(e.length)])].join('\n') + '\n';
  const size = Math.ceil(text.length / BLOCK) * BLOCK;
  const block = Buffer.alloc(size);
  block.write(text, 'latin1');
  return block;
}

/** The extents as written: a file that ends in a hole gets an empty extent at its end. */
export function withEndMarker(layout: SparseLayout): Extent[] {
  const last = layout.extents[layout.extents.length - 1];
  if (last && last.offset + last.length === layout.realSize) return layout.extents;
  return [...layout.extents, { offset: layout.realSize, length: 0 }];
}

/** Checks what a map read from an archive claims: increasing, non-overlapping, inside the file. */
export function checkLayout(layout: SparseLayout, storedBytes: number | undefined, where: string): void {
  let end = 0;
  for (const e of layout.extents) {
    if (!Number.isSafeInteger(e.offset) || !Number.isSafeInteger(e.length) || e.offset < end || e.length < 0 || e.offset + e.length > layout.realSize) {
      throw new IntegrityError(`corrupt archive: bad sparse map for ${where}`, 'CORRUPT');
    }
    end = e.offset + e.length;
  }
  if (storedBytes !== undefined && dataBytes(layout.extents) !== storedBytes) {
    throw new IntegrityError(`corrupt archive: the sparse map of ${where} does not match its data size`, 'CORRUPT');
  }
}

/** Reads a 1.0 map from the start of an entry's data, chunk by chunk. */
export class SparseMapReader {
  private text = '';
  private numbers: number[] = [];
  private count: number | undefined;
  /** Bytes of the data stream consumed so far (the map block, including its padding). */
  consumed = 0;
  private padding = -1;

  /** Feeds bytes; returns how many of them belonged to the map (the rest is file data). */
  push(chunk: Buffer): number {
    let used = 0;
    if (this.padding < 0) {
      while (used < chunk.length) {
        const c = chunk[used]!;
        used++;
        if (c === 0x0a) {
          if (!/^\d{1,18}$/.test(this.text)) throw new IntegrityError('corrupt archive: malformed sparse map', 'CORRUPT');
          const n = Number(this.text);
          this.text = '';
          if (this.count === undefined) {
            if (n > 1_000_000) throw new IntegrityError('corrupt archive: sparse map too large', 'CORRUPT');
            this.count = n;
          } else this.numbers.push(n);
          if (this.numbers.length === this.count * 2) {
            const total = this.consumed + used;
            this.padding = (BLOCK - (total % BLOCK)) % BLOCK;
            break;
          }
        } else {
          this.text += String.fromCharCode(c);
          if (this.text.length > 20) throw new IntegrityError('corrupt archive: malformed sparse map', 'CORRUPT');
        }
      }
    }
    if (this.padding >= 0) {
      const skip = Math.min(this.padding, chunk.length - used);
      used += skip;
      this.padding -= skip;
    }
    this.consumed += used;
    return used;
  }

  get done(): boolean {
    return this.padding === 0;
  }

  extents(): Extent[] {
    const extents: Extent[] = [];
    for (let i = 0; i < this.numbers.length; i += 2) extents.push({ offset: this.numbers[i]!, length: this.numbers[i + 1]! });
    return extents;
  }
}

/** GNU.sparse.map of format 0.1: "offset,length,offset,length,…". */
export function parseMapText(text: string): Extent[] | undefined {
  const numbers = text.split(',').map((s) => (/^\d{1,18}$/.test(s.trim()) ? Number(s) : NaN));
  if (numbers.length % 2 !== 0 || numbers.some(Number.isNaN)) return undefined;
  const extents: Extent[] = [];
  for (let i = 0; i < numbers.length; i += 2) extents.push({ offset: numbers[i]!, length: numbers[i + 1]! });
  return extents;
}

/** Extents without the empty end marker (the file's size says where it ends). */
export function dropEmpty(extents: readonly Extent[]): Extent[] {
  return extents.filter((e) => e.length > 0);
}

const SCAN_BLOCK = 4096;

/**
 * Data extents found by reading: runs of all-zero 4 KiB blocks are holes. For file systems
 * where SEEK_DATA is not available (or the helper that calls it is not). The event loop gets a
 * turn between slices (turns.ts).
 */
export async function scanForHoles(fd: number, size: number): Promise<Extent[]> {
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  const extents: Extent[] = [];
  let start = -1;
  let position = 0;
  const turns = new Turns();
  while (position < size) {
    const n = fs.readSync(fd, buffer, 0, Math.min(buffer.length, size - position), position);
    if (n === 0) break;
    for (let at = 0; at < n; at += SCAN_BLOCK) {
      const end = Math.min(at + SCAN_BLOCK, n);
      const zero = isZero(buffer, at, end);
      const offset = position + at;
      if (!zero && start < 0) start = offset;
      if (zero && start >= 0) {
        extents.push({ offset: start, length: offset - start });
        start = -1;
      }
    }
    position += n;
    await turns.done(n);
  }
  if (start >= 0) extents.push({ offset: start, length: position - start });
  return extents;
}

const ZEROS = Buffer.alloc(SCAN_BLOCK);

function isZero(buffer: Buffer, start: number, end: number): boolean {
  return buffer.compare(ZEROS, 0, end - start, start, end) === 0;
}

/**
 * Walks a sparse file's logical content while its stored data streams by: data pieces with
 * their file position, and the holes between them. Used to hash the content as `sha256sum`
 * sees it and to write the data at the right places.
 */
export class SparseCursor {
  private index = 0;
  /** Bytes of the current extent already seen. */
  private within = 0;
  /** Logical position up to which holes and data were reported. */
  private position = 0;

  constructor(
    private readonly extents: readonly Extent[],
    private readonly size: number,
  ) {}

  feed(chunk: Buffer, onData: (piece: Buffer, position: number) => void, onHole: (position: number, length: number) => void): void {
    let at = 0;
    while (at < chunk.length) {
      const extent = this.extents[this.index];
      if (!extent) throw new IntegrityError('corrupt archive: sparse file data is longer than its map', 'CORRUPT');
      if (this.within === 0 && extent.offset > this.position) {
        onHole(this.position, extent.offset - this.position);
        this.position = extent.offset;
      }
      const n = Math.min(extent.length - this.within, chunk.length - at);
      onData(chunk.subarray(at, at + n), extent.offset + this.within);
      at += n;
      this.within += n;
      this.position = extent.offset + this.within;
      if (this.within === extent.length) {
        this.index++;
        this.within = 0;
      }
    }
  }

  /** Reports the hole after the last extent. */
  finish(onHole: (position: number, length: number) => void): void {
    while (this.index < this.extents.length && this.extents[this.index]!.length === 0) this.index++;
    if (this.index < this.extents.length) throw new IntegrityError('corrupt archive: sparse file data is shorter than its map', 'CORRUPT');
    if (this.size > this.position) onHole(this.position, this.size - this.position);
    this.position = this.size;
  }
}
