import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NAMES_IN_MEMORY, NameListing } from '../../runner/archive/listing.js';
import { compareWalkOrder, decodeName, fsPath } from '../../runner/archive/names.js';
import { TreeWalker, excludeMatcher } from '../../runner/archive/walk.js';
import { OperationError } from '../../runner/errors.js';
import { archivesIn, jsonLines, runCli, tarList } from '../helpers/cli.js';
import { useTempDirs } from '../helpers/tree.js';

const tempDir = useTempDirs();

/** Names as bytes: ASCII, case, multi-byte and astral UTF-8, U+FFFD itself, and bytes that are not UTF-8. */
function awkwardNames(count: number): Buffer[] {
  const stems = ['a', 'B', 'z', 'é', 'ß', '日本', '😀', '\ufffd', 'ｚ', '-', '.x', 'A B'];
  const names: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const stem = Buffer.from(`${stems[i % stems.length]}${(i * 7919) % count}`);
    names.push(i % 9 === 0 ? Buffer.concat([stem, Buffer.from([0xff, 0x80 + (i % 64)])]) : stem);
  }
  return names;
}

function makeDirectory(dir: string, names: Buffer[]): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const name of names) fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), name]), '');
}

function listAll(dir: string, namesInMemory: number): { names: string[]; runs: number } {
  const listing = NameListing.read(dir, namesInMemory);
  try {
    return { names: [...listing], runs: listing.runsOnDisk };
  } finally {
    listing.close();
  }
}

describe('a directory listing', () => {
  const savedTmp = process.env.TMPDIR;
  afterEach(() => {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
  });

  it('larger than memory holds is merged from sorted runs on disk into the same walk order, every name as its exact bytes', async () => {
    const dir = path.join(await tempDir('listing'), 'flat');
    const bytes = awkwardNames(2_500);
    makeDirectory(dir, bytes);
    const expected = bytes.map(decodeName).sort(compareWalkOrder);

    const spilled = listAll(dir, 100);
    expect(spilled.runs).toBe(25);
    expect(spilled.names).toEqual(expected);
    const inMemory = listAll(dir, 10_000);
    expect(inMemory.runs).toBe(0);
    expect(inMemory.names).toEqual(expected);
  });

  it('is read at once: entries moved away while going through it are each seen once, and the spill leaves no file behind', async () => {
    const root = await tempDir('listing-snapshot');
    const tmp = path.join(root, 'tmp');
    fs.mkdirSync(tmp);
    process.env.TMPDIR = tmp;
    const dir = path.join(root, 'flat');
    const elsewhere = path.join(root, 'elsewhere');
    fs.mkdirSync(elsewhere);
    makeDirectory(dir, awkwardNames(1_000));

    const listing = NameListing.read(dir, 64);
    const seen: string[] = [];
    try {
      expect(listing.runsOnDisk).toBe(16);
      expect(fs.readdirSync(tmp)).toEqual([]);
      for (const name of listing) {
        seen.push(name);
        fs.renameSync(fsPath(`${dir}/${name}`), fsPath(`${elsewhere}/${name}`));
      }
    } finally {
      listing.close();
    }
    expect(seen).toHaveLength(1_000);
    expect(new Set(seen).size).toBe(1_000);
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  it('that cannot be spilled fails the walk with what to do, rather than skipping the directory', async () => {
    const root = await tempDir('listing-nospace');
    makeDirectory(path.join(root, 'flat'), awkwardNames(300));
    process.env.TMPDIR = path.join(root, 'no-such-directory');
    const walker = new TreeWalker(root, excludeMatcher([]), 0, 100);
    let thrown: unknown;
    try {
      for (const _ of walker.entries()) void _;
    } catch (error) {
      thrown = error;
    } finally {
      walker.close();
    }
    expect(thrown).toBeInstanceOf(OperationError);
    expect((thrown as OperationError).code).toBe('LISTING_SPILL');
    expect((thrown as Error).message).toMatch(/very large directory .*flat in the temporary directory: .* point TMPDIR at a directory with room/);
  });
});

describe('the tree walk of very large directories', () => {
  it('gives the same entries in the same order whether listings stay in memory or go to disk', async () => {
    const root = await tempDir('walk-large');
    makeDirectory(path.join(root, 'flat'), awkwardNames(700));
    for (const sub of ['sub-a', 'sub-m', 'sub-z']) makeDirectory(path.join(root, 'flat', sub), awkwardNames(150));
    const walk = (namesInMemory: number) => {
      const walker = new TreeWalker(root, excludeMatcher(['sub-m/']), 0, namesInMemory);
      try {
        return [...walker.entries()].map((e) => {
          expect(e.error).toBeUndefined();
          return `${e.rel}:${e.stat!.isDirectory() ? 'dir' : 'file'}`;
        });
      } finally {
        walker.close();
      }
    };
    const inMemory = walk(100_000);
    expect(inMemory).toHaveLength(1 + 1 + 700 + 2 * (1 + 150));
    expect(walk(32)).toEqual(inMemory);
    const rels = inMemory.map((line) => line.slice(0, line.lastIndexOf(':')));
    expect([...rels].sort(compareWalkOrder)).toEqual(rels);
  });
});

describe('a backup of a directory with more names than one listing holds in memory', () => {
  const names = NAMES_IN_MEMORY + 1_234;

  it('archives every entry in walk order and verifies; with no room for the sorted runs it fails in one line and leaves no archive', { timeout: 120_000 }, async () => {
    const source = await tempDir('flat-source');
    const flat = path.join(source, 'spool');
    fs.mkdirSync(flat);
    for (let i = 0; i < names; i++) fs.writeFileSync(path.join(flat, `m${(i * 7919) % names}`), i % 5 === 0 ? `${i}` : '');
    const tmp = await tempDir('flat-tmp');

    const refused = await tempDir('flat-refused');
    const failed = await runCli(['backup', '--source', source, '--dest', refused, '--log-format', 'json'], { env: { TMPDIR: path.join(tmp, 'missing') } });
    expect(failed.code, failed.stdout).toBe(1);
    const failure = jsonLines(failed.stdout).find((l) => l.event === 'backup.failed');
    expect(failure?.msg).toMatch(/cannot sort the names of the very large directory .*\/spool in the temporary directory: .*point TMPDIR at a directory with room/);
    expect(archivesIn(refused)).toEqual([]);

    const dest = await tempDir('flat-dest');
    const made = await runCli(['backup', '--source', source, '--dest', dest, '--log-format', 'json'], { env: { TMPDIR: tmp }, timeoutMs: 110_000 });
    expect(made.code, made.stdout).toBe(0);
    const [archive] = archivesIn(dest);
    const listed = tarList(path.join(dest, archive!)).filter((p) => p.startsWith('./spool/'));
    const expected = fs.readdirSync(flat).map((n) => `./spool/${n}`).sort(compareWalkOrder);
    expect(listed).toEqual(['./spool/', ...expected]);
    expect(fs.readdirSync(tmp)).toEqual([]);
    const verified = await runCli(['verify', '--dest', dest, '--latest', '--log-format', 'json'], { timeoutMs: 110_000 });
    expect(verified.code, verified.stdout).toBe(0);
  });
});
