import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

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

/** Fingerprint → a value of 1–31 (0 means absent). */
export class PathKinds {
  private hi = new Uint32Array(1 << 12);
  private lo = new Uint32Array(1 << 12);
  private used = 0;

  get size(): number {
    return this.used;
  }

  get(fp: Fingerprint): number {
    const at = this.find(fp);
    return at < 0 ? 0 : this.lo[at]! & VALUE_MASK;
  }

  set(fp: Fingerprint, value: number): void {
    if (value < 1 || value > VALUE_MASK) throw new Error(`PathKinds value ${value} out of range`);
    let at = this.find(fp);
    if (at < 0) {
      if ((this.used + 1) * 5 > this.hi.length * 4) this.grow();
      at = this.slotFor(fp);
      this.used++;
    }
    this.hi[at] = fp.hi;
    this.lo[at] = ((fp.lo & ~VALUE_MASK) | value) >>> 0;
  }

  /** The slot holding fp, or -1. */
  private find(fp: Fingerprint): number {
    const mask = this.hi.length - 1;
    const key = (fp.lo & ~VALUE_MASK) >>> 0;
    for (let at = fp.hi & mask; ; at = (at + 1) & mask) {
      const lo = this.lo[at]!;
      if (lo === 0 && this.hi[at] === 0) return -1;
      if (this.hi[at] === fp.hi && ((lo & ~VALUE_MASK) >>> 0) === key) return at;
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
    fs.writeSync(this.fd, record, 0, record.length, this.fileBytes);
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
    fs.readSync(this.fd!, head, 0, 17, offset);
    const pathLength = head.readUInt32LE(8);
    const targetLength = head.readUInt32LE(12);
    const body = Buffer.alloc(pathLength + targetLength);
    fs.readSync(this.fd!, body, 0, body.length, offset + 17);
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

/** A file in the temporary directory that is already unlinked: it disappears with the descriptor. */
export function openAnonymousFile(): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-index-'));
  const file = path.join(dir, 'index');
  const fd = fs.openSync(file, 'w+', 0o600);
  fs.rmSync(dir, { recursive: true, force: true });
  return fd;
}
