import fs from 'node:fs';
import type { EntryMeta } from './extract.js';
import { openAnonymousFile, readExactly, writeAll } from './fd-io.js';

/**
 * The directories of an extraction, whose modes, owners, attributes and mtimes are applied only
 * once everything inside them exists. The first few thousand stay in memory; the rest are
 * written in blocks to an unlinked temporary file, so memory does not grow with their number.
 * They come back newest first: children before their parents in any archive that lists a
 * directory before its contents.
 */

interface Deferred {
  rel: string;
  meta: EntryMeta;
}

/** EntryMeta as JSON: xattr values in base64. */
type Stored = Omit<EntryMeta, 'xattrs'> & { xattrs?: { name: string; value: string }[] };

const IN_MEMORY = 4096;
const BLOCK_ENTRIES = 1024;

export class DeferredDirectories {
  private readonly first: Deferred[] = [];
  private pending: Deferred[] = [];
  private readonly blocks: { offset: number; length: number }[] = [];
  private fd: number | undefined;
  private fileBytes = 0;

  add(rel: string, meta: EntryMeta): void {
    if (this.first.length < IN_MEMORY) {
      this.first.push({ rel, meta });
      return;
    }
    this.pending.push({ rel, meta });
    if (this.pending.length >= BLOCK_ENTRIES) this.spill();
  }

  *newestFirst(): Generator<Deferred> {
    for (let i = this.pending.length - 1; i >= 0; i--) yield this.pending[i]!;
    for (let b = this.blocks.length - 1; b >= 0; b--) {
      const { offset, length } = this.blocks[b]!;
      const data = Buffer.alloc(length);
      readExactly(this.fd!, data, length, offset);
      const entries = JSON.parse(data.toString('utf8')) as [string, Stored][];
      for (let i = entries.length - 1; i >= 0; i--) {
        const [rel, { xattrs, ...rest }] = entries[i]!;
        const meta: EntryMeta = xattrs ? { ...rest, xattrs: xattrs.map((x) => ({ name: x.name, value: Buffer.from(x.value, 'base64') })) } : rest;
        yield { rel, meta };
      }
    }
    for (let i = this.first.length - 1; i >= 0; i--) yield this.first[i]!;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  private spill(): void {
    this.fd ??= openAnonymousFile();
    const entries = this.pending.map(({ rel, meta }): [string, Stored] => {
      const { xattrs, ...rest } = meta;
      return [rel, xattrs ? { ...rest, xattrs: xattrs.map((x) => ({ name: x.name, value: x.value.toString('base64') })) } : rest];
    });
    const data = Buffer.from(JSON.stringify(entries), 'utf8');
    writeAll(this.fd, data, this.fileBytes);
    this.blocks.push({ offset: this.fileBytes, length: data.length });
    this.fileBytes += data.length;
    this.pending = [];
  }
}
