import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import { openAnonymousFile, readExactly, writeAll } from './fd-io.js';

/**
 * Indexes of archive paths whose memory does not depend on the length of the names, for the
 * checks that must know every entry seen so far (restore's safety rules): a hostile archive
 * with a million entries costs a few bytes per entry instead of its names.
 *
 * - PathKinds: path → a small number, kept as a 59-bit fingerprint plus 5 bits in one 8-byte
 *   slot of an open-addressing table. Fingerprints use random seeds per process, so collisions
 *   (about one in 10^17 per pair) cannot be planned by an archive's author.
 * - SymlinkStore: path → symlink target, exact: targets beyond the first few thousand go to an
 *   unlinked temporary file, found again through the fingerprint of their path.
 */

const SEED_A = randomInt(2 ** 31);
const SEED_B = randomInt(2 ** 31);

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export interface Fingerprint {
  hi: number;
  lo: number;
}

/**
 * Fingerprints of a path and of every ancestor: `visit(end, fp)` is called at each '/' (for the
 * prefix before it) and once for the whole string. One pass over the characters.
 */
export function fingerprints(rel: string, visit: (end: number, fp: Fingerprint) => void): void {
  let a = SEED_A;
  let b = SEED_B;
  for (let i = 0; i < rel.length; i++) {
    const c = rel.charCodeAt(i);
    if (c === 0x2f) visit(i, { hi: fmix(a ^ i), lo: fmix(b ^ i) });
    let k = Math.imul(c, 0xcc9e2d51);
    k = Math.imul(rotl(k, 15), 0x1b873593);
    a = Math.imul(rotl(a ^ k, 13), 5) + 0xe6546b64;
    k = Math.imul(c ^ 0x5bd1e995, 0x27d4eb2f);
    b = Math.imul(rotl(b ^ k, 17), 0x165667b1) + 0x9e3779b9;
  }
  visit(rel.length, { hi: fmix(a ^ rel.length), lo: fmix(b ^ rel.length) });
}

export function fingerprint(rel: string): Fingerprint {
  let result: Fingerprint = { hi: 0, lo: 0 };
  fingerprints(rel, (end, fp) => {
    if (end === rel.length) result = fp;
  });
  return result;
}

const VALUE_BITS = 5;
const VALUE_MASK = (1 << VALUE_BITS) - 1;
const KEY_MASK = ~VALUE_MASK;

/** Slots of the in-memory table (8 bytes each); at 3/4 full its entries move to a sorted run on disk. */
const MEMORY_SLOTS = 1 << 17;
/** Records per block of a run: one read of 4 KiB finds a key once the block is known. */
const BLOCK_RECORDS = 512;
/** Runs on disk before they are merged into one, so that a lookup reads at most this many blocks. */
const MAX_RUNS = 6;
/** Bloom filter bits per run record (4 probes: ~1.2% false positives) ... */
const BLOOM_BITS_PER_RECORD = 10;
/** ... up to this much filter memory in all; runs beyond it are searched on disk for every lookup. */
const BLOOM_BUDGET_BYTES = 16 * 1024 * 1024;

/**
 * Fingerprint → a value of 1–31 (0 means absent), for any number of paths in bounded memory:
 * a table of at most MEMORY_SLOTS in memory, and beyond that sorted runs in unlinked
 * temporary files, each with a Bloom filter and the first key of every block in memory
 * (~1.3 bytes a path). The newest value wins: memory first, then runs newest first.
 */
export class PathKinds {
  private hi: Uint32Array;
  private lo: Uint32Array;
  private used = 0;
  private readonly memorySlots: number;
  private readonly bloomBudgetBytes: number;
  private runs: Run[] = [];
  private readonly block = Buffer.alloc(BLOCK_RECORDS * 8);

  /** Smaller limits (memorySlots a power of two) only to exercise the runs in tests. */
  constructor({ memorySlots = MEMORY_SLOTS, bloomBudgetBytes = BLOOM_BUDGET_BYTES } = {}) {
    this.memorySlots = memorySlots;
    this.bloomBudgetBytes = bloomBudgetBytes;
    const initial = Math.min(1 << 12, memorySlots);
    this.hi = new Uint32Array(initial);
    this.lo = new Uint32Array(initial);
  }

  /** Runs on disk now (for tests). */
  get runCount(): number {
    return this.runs.length;
  }

  get(fp: Fingerprint): number {
    const at = this.find(fp);
    if (at >= 0) return this.lo[at]! & VALUE_MASK;
    for (let r = this.runs.length - 1; r >= 0; r--) {
      const value = this.runs[r]!.get(fp, this.block);
      if (value === 0) continue;
      // Found on disk: kept in memory again, as the next entries of a directory ask for it too.
      this.set(fp, value);
      return value;
    }
    return 0;
  }

  set(fp: Fingerprint, value: number): void {
    if (value < 1 || value > VALUE_MASK) throw new Error(`PathKinds value ${value} out of range`);
    let at = this.find(fp);
    if (at < 0) {
      if ((this.used + 1) * 4 > this.hi.length * 3) {
        if (this.hi.length < this.memorySlots) this.grow();
        else this.spill();
      }
      at = this.slotFor(fp);
      this.used++;
    }
    this.hi[at] = fp.hi;
    this.lo[at] = ((fp.lo & KEY_MASK) | value) >>> 0;
  }

  /** Releases the runs' temporary files. */
  close(): void {
    for (const run of this.runs) run.close();
    this.runs = [];
  }

  /** The slot holding fp, or -1. */
  private find(fp: Fingerprint): number {
    const mask = this.hi.length - 1;
    const key = (fp.lo & KEY_MASK) >>> 0;
    for (let at = fp.hi & mask; ; at = (at + 1) & mask) {
      const lo = this.lo[at]!;
      if (lo === 0 && this.hi[at] === 0) return -1;
      if (this.hi[at] === fp.hi && ((lo & KEY_MASK) >>> 0) === key) return at;
    }
  }

  /** The first empty slot on fp's probe sequence. */
  private slotFor(fp: Fingerprint): number {
    const mask = this.hi.length - 1;
    for (let at = fp.hi & mask; ; at = (at + 1) & mask) {
      if (this.lo[at] === 0 && this.hi[at] === 0) return at;
    }
  }

  private grow(): void {
    const oldHi = this.hi;
    const oldLo = this.lo;
    this.hi = new Uint32Array(oldHi.length * 2);
    this.lo = new Uint32Array(oldLo.length * 2);
    for (let i = 0; i < oldHi.length; i++) {
      if (oldHi[i] === 0 && oldLo[i] === 0) continue;
      const at = this.slotFor({ hi: oldHi[i]!, lo: oldLo[i]! });
      this.hi[at] = oldHi[i]!;
      this.lo[at] = oldLo[i]!;
    }
  }

  /** Moves the in-memory table to a new sorted run and empties it; merges the runs when there are too many. */
  private spill(): void {
    // Little-endian (lo, hi) pairs read as 64-bit numbers sort by (hi, lo): the order runs keep.
    const records = new BigUint64Array(this.used);
    const words = new Uint32Array(records.buffer);
    let n = 0;
    for (let i = 0; i < this.hi.length; i++) {
      if (this.hi[i] === 0 && this.lo[i] === 0) continue;
      words[2 * n] = this.lo[i]!;
      words[2 * n + 1] = this.hi[i]!;
      n++;
    }
    records.sort();
    const writer = new RunWriter(this.bloomFor(n));
    for (let i = 0; i < n; i++) writer.add(words[2 * i + 1]!, words[2 * i]!);
    this.runs.push(writer.finish());
    this.hi.fill(0);
    this.lo.fill(0);
    this.used = 0;
    if (this.runs.length > MAX_RUNS) this.merge();
  }

  /** A filter for a new run of at most `records`, or undefined once the filters would pass their budget. */
  private bloomFor(records: number): Bloom | undefined {
    const inUse = this.runs.reduce((sum, run) => sum + (run.bloom?.bytes ?? 0), 0);
    const bloom = Bloom.bytesFor(records);
    return inUse + bloom <= this.bloomBudgetBytes ? new Bloom(bloom) : undefined;
  }

  /** All runs into one, reading each in order; of a key in several runs the newest record stays. */
  private merge(): void {
    const cursors = this.runs.map((run) => new RunCursor(run));
    const runs = this.runs;
    this.runs = [];
    // Sized for every record of every run: keys in several runs make it a little larger than needed.
    const out = new RunWriter(this.bloomFor(runs.reduce((sum, run) => sum + run.count, 0)));
    for (;;) {
      let best = -1;
      for (let r = 0; r < cursors.length; r++) {
        const c = cursors[r]!;
        if (c.done) continue;
        // Ties go to the newer run (higher index), whose record replaces the older ones.
        if (best < 0 || compareKeys(c.hi, c.lo, cursors[best]!.hi, cursors[best]!.lo) <= 0) best = r;
      }
      if (best < 0) break;
      const { hi, lo } = cursors[best]!;
      out.add(hi, lo);
      for (const c of cursors) while (!c.done && compareKeys(c.hi, c.lo, hi, lo) === 0) c.advance();
    }
    for (const run of runs) run.close();
    this.runs.push(out.finish());
  }
}

function compareKeys(hiA: number, loA: number, hiB: number, loB: number): number {
  if (hiA !== hiB) return hiA < hiB ? -1 : 1;
  const a = (loA & KEY_MASK) >>> 0;
  const b = (loB & KEY_MASK) >>> 0;
  return a === b ? 0 : a < b ? -1 : 1;
}

/** A Bloom filter over keys (4 probes by double hashing over the key's two halves). */
class Bloom {
  private readonly words: Uint32Array;
  private readonly bits: number;

  static bytesFor(records: number): number {
    return Math.ceil((records * BLOOM_BITS_PER_RECORD) / 32) * 4;
  }

  constructor(readonly bytes: number) {
    this.words = new Uint32Array(Math.max(1, bytes / 4));
    this.bits = this.words.length * 32;
  }

  add(hi: number, lo: number): void {
    for (let probe = 0; probe < 4; probe++) {
      const bit = this.bit(hi, lo, probe);
      this.words[bit >>> 5]! |= 1 << (bit & 31);
    }
  }

  mayHave(hi: number, lo: number): boolean {
    for (let probe = 0; probe < 4; probe++) {
      const bit = this.bit(hi, lo, probe);
      if ((this.words[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }

  private bit(hi: number, lo: number, probe: number): number {
    return ((hi ^ Math.imul(probe, ((lo & KEY_MASK) | 1) >>> 0)) >>> 0) % this.bits;
  }
}

/** One sorted run of 8-byte records in an unlinked file, with what finds a key in one block read. */
class Run {
  constructor(
    private fd: number | undefined,
    readonly count: number,
    /** The first record of every block, as (hi, lo). */
    private readonly fenceHi: Uint32Array,
    private readonly fenceLo: Uint32Array,
    readonly bloom: Bloom | undefined,
  ) {}

  get(fp: Fingerprint, block: Buffer): number {
    if (this.bloom && !this.bloom.mayHave(fp.hi, fp.lo)) return 0;
    // The last block whose first key is not above fp.
    let low = 0;
    let high = this.fenceHi.length - 1;
    if (compareKeys(this.fenceHi[0]!, this.fenceLo[0]!, fp.hi, fp.lo) > 0) return 0;
    while (low < high) {
      const mid = (low + high + 1) >>> 1;
      if (compareKeys(this.fenceHi[mid]!, this.fenceLo[mid]!, fp.hi, fp.lo) <= 0) low = mid;
      else high = mid - 1;
    }
    const records = this.readBlock(low, block);
    let a = 0;
    let b = records - 1;
    while (a <= b) {
      const mid = (a + b) >>> 1;
      const lo = block.readUInt32LE(mid * 8);
      const order = compareKeys(block.readUInt32LE(mid * 8 + 4), lo, fp.hi, fp.lo);
      if (order === 0) return lo & VALUE_MASK;
      if (order < 0) a = mid + 1;
      else b = mid - 1;
    }
    return 0;
  }

  /** Reads block `index` into `into`; returns its record count. */
  readBlock(index: number, into: Buffer): number {
    const records = Math.min(BLOCK_RECORDS, this.count - index * BLOCK_RECORDS);
    readExactly(this.fd!, into, records * 8, index * BLOCK_RECORDS * 8);
    return records;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Appends sorted records to a new run's file through one block of buffer, filling its filter on the way. */
class RunWriter {
  private readonly fd = openAnonymousFile();
  private readonly buffer = Buffer.alloc(BLOCK_RECORDS * 8);
  private inBuffer = 0;
  private written = 0;
  private readonly fenceHi: number[] = [];
  private readonly fenceLo: number[] = [];
  private count = 0;

  constructor(private readonly bloom: Bloom | undefined) {}

  add(hi: number, lo: number): void {
    this.bloom?.add(hi, lo);
    if (this.count % BLOCK_RECORDS === 0) {
      this.fenceHi.push(hi);
      this.fenceLo.push(lo);
    }
    this.buffer.writeUInt32LE(lo >>> 0, this.inBuffer);
    this.buffer.writeUInt32LE(hi >>> 0, this.inBuffer + 4);
    this.inBuffer += 8;
    this.count++;
    if (this.inBuffer === this.buffer.length) this.flush();
  }

  finish(): Run {
    this.flush();
    return new Run(this.fd, this.count, Uint32Array.from(this.fenceHi), Uint32Array.from(this.fenceLo), this.bloom);
  }

  private flush(): void {
    writeAll(this.fd, this.buffer.subarray(0, this.inBuffer), this.written);
    this.written += this.inBuffer;
    this.inBuffer = 0;
  }
}

/** Reads a run's records in order, one block at a time. */
class RunCursor {
  hi = 0;
  lo = 0;
  done = false;
  private readonly block = Buffer.alloc(BLOCK_RECORDS * 8);
  private blockIndex = -1;
  private inBlock = 0;
  private at = 0;

  constructor(private readonly run: Run) {
    this.advance();
  }

  advance(): void {
    if (this.at === this.inBlock) {
      this.blockIndex++;
      if (this.blockIndex * BLOCK_RECORDS >= this.run.count) {
        this.done = true;
        return;
      }
      this.inBlock = this.run.readBlock(this.blockIndex, this.block);
      this.at = 0;
    }
    this.lo = this.block.readUInt32LE(this.at * 8);
    this.hi = this.block.readUInt32LE(this.at * 8 + 4);
    this.at++;
  }
}

/** Symlinks kept in memory before the rest go to a temporary file. */
const IN_MEMORY = 8192;

/** path → symlink target, exact, for any number of symlinks. */
export class SymlinkStore {
  private readonly memory = new Map<string, string>();
  /** Fingerprint of a spilled path → (offset of its newest record) + 1. */
  private spilledAt: OffsetTable | undefined;
  private readonly offsets: number[] = [];
  private fd: number | undefined;
  private fileBytes = 0;
  private spilledCount = 0;

  get size(): number {
    return this.memory.size + this.spilledCount;
  }

  get(rel: string): string | undefined {
    const inMemory = this.memory.get(rel);
    if (inMemory !== undefined) return inMemory;
    return this.findSpilled(rel)?.target ?? undefined;
  }

  set(rel: string, target: string): void {
    if (this.memory.has(rel) || (this.memory.size < IN_MEMORY && !this.findSpilled(rel))) {
      this.memory.set(rel, target);
      return;
    }
    this.spill(rel, target);
  }

  delete(rel: string): void {
    if (this.memory.delete(rel)) return;
    if (this.findSpilled(rel)?.target != null) this.spill(rel, null);
  }

  /** Every symlink with its current target. */
  *entries(): Generator<[string, string]> {
    yield* this.memory;
    if (this.fd === undefined) return;
    for (const offset of this.offsets) {
      const record = this.readRecord(offset);
      // Only a path's newest record counts.
      const newest = this.findSpilled(record.path);
      if (newest?.offset === offset && newest.target !== null) yield [record.path, newest.target];
    }
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  private spill(rel: string, target: string | null): void {
    if (this.fd === undefined) this.fd = openAnonymousFile();
    this.spilledAt ??= new OffsetTable();
    const before = this.findSpilled(rel);
    const fp = fingerprint(rel);
    const pathBytes = Buffer.from(rel, 'utf16le');
    const targetBytes = target === null ? Buffer.alloc(0) : Buffer.from(target, 'utf16le');
    const head = Buffer.alloc(17);
    // The chain: the slot's previous newest record, whatever its path.
    head.writeDoubleLE(this.spilledAt.get(fp) ?? -1, 0);
    head.writeUInt32LE(pathBytes.length, 8);
    head.writeUInt32LE(targetBytes.length, 12);
    head[16] = target === null ? 1 : 0;
    const record = Buffer.concat([head, pathBytes, targetBytes]);
    writeAll(this.fd, record, this.fileBytes);
    this.spilledAt.set(fp, this.fileBytes);
    this.offsets.push(this.fileBytes);
    this.fileBytes += record.length;
    this.spilledCount += (target !== null ? 1 : 0) - (before && before.target !== null ? 1 : 0);
  }

  private findSpilled(rel: string): { offset: number; target: string | null } | undefined {
    if (!this.spilledAt) return undefined;
    let offset = this.spilledAt.get(fingerprint(rel));
    while (offset !== undefined && offset >= 0) {
      const record = this.readRecord(offset);
      if (record.path === rel) return { offset, target: record.deleted ? null : record.target };
      offset = record.previous >= 0 ? record.previous : undefined;
    }
    return undefined;
  }

  private readRecord(offset: number): { path: string; target: string; deleted: boolean; previous: number } {
    const head = Buffer.alloc(17);
    readExactly(this.fd!, head, 17, offset);
    const pathLength = head.readUInt32LE(8);
    const targetLength = head.readUInt32LE(12);
    const body = Buffer.alloc(pathLength + targetLength);
    readExactly(this.fd!, body, body.length, offset + 17);
    return {
      previous: head.readDoubleLE(0),
      path: body.toString('utf16le', 0, pathLength),
      target: body.toString('utf16le', pathLength),
      deleted: head[16] === 1,
    };
  }
}

/**
 * Fingerprint → file offset of the newest record whose path has that fingerprint (records of
 * other paths with the same fingerprint are chained through each record's `previous`). Typed
 * arrays, 16 bytes a slot: the table stays compact for any number of symlinks.
 */
class OffsetTable {
  private keys = new Float64Array(1 << 12);
  private values = new Float64Array(1 << 12);
  private used = 0;

  get(fp: Fingerprint): number | undefined {
    const key = keyOf(fp);
    const mask = this.keys.length - 1;
    for (let at = startOf(key) & mask; ; at = (at + 1) & mask) {
      const k = this.keys[at]!;
      if (k === 0) return undefined;
      if (k === key) return this.values[at]!;
    }
  }

  set(fp: Fingerprint, offset: number): void {
    if ((this.used + 1) * 4 > this.keys.length * 3) this.grow();
    this.place(keyOf(fp), offset);
  }

  private place(key: number, offset: number): void {
    const mask = this.keys.length - 1;
    for (let at = startOf(key) & mask; ; at = (at + 1) & mask) {
      const k = this.keys[at]!;
      if (k === 0) {
        this.keys[at] = key;
        this.values[at] = offset;
        this.used++;
        return;
      }
      if (k === key) {
        this.values[at] = offset;
        return;
      }
    }
  }

  private grow(): void {
    const keys = this.keys;
    const values = this.values;
    this.keys = new Float64Array(keys.length * 2);
    this.values = new Float64Array(values.length * 2);
    this.used = 0;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (k !== 0) this.place(k, values[i]!);
    }
  }
}

/** 52 bits of a fingerprint as one number (exact in a double, never 0). */
function keyOf(fp: Fingerprint): number {
  return (fp.hi >>> 0) * 2 ** 20 + (fp.lo >>> 12) + 1;
}

/** Where a key's probe sequence starts (from the key alone, so growing keeps finding it). */
function startOf(key: number): number {
  return (key % 2 ** 32) ^ Math.floor(key / 2 ** 32);
}
