import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HardLinkCollector, type HardLinkPlan, LINKS_IN_MEMORY, inodeKey } from '../../runner/archive/hard-links.js';
import { ManifestWriter } from '../../runner/archive/manifest.js';
import { compareWalkOrder } from '../../runner/archive/names.js';
import { scanSource } from '../../runner/archive/preflight.js';
import { excludeMatcher, walkTree } from '../../runner/archive/walk.js';
import { writeArchive } from '../../runner/archive/write.js';
import { OperationError } from '../../runner/errors.js';
import { archivesIn, jsonLines, runCli, tool } from '../helpers/cli.js';
import { snapshotTree, useTempDirs } from '../helpers/tree.js';

const tempDir = useTempDirs();

/**
 * A tree whose inodes have one to four paths spread over directories, under names that sort in
 * awkward ways (bytes that are not UTF-8, astral characters, '-' and '/' neighbours), and one
 * file whose other link is outside the tree.
 */
function linkedTree(root: string, inodes: number, outside: string): void {
  const dirs = ['a', 'a-b', 'a/b', 'z', 'é', '😀'];
  for (const dir of dirs) fs.mkdirSync(path.join(root, dir), { recursive: true });
  for (let i = 0; i < inodes; i++) {
    const names = [0, 1, 2, 3].slice(0, 1 + (i % 4)).map((k) => {
      const dir = dirs[(i * 5 + k * 3) % dirs.length]!;
      const stem = Buffer.from(`${dir}/n${(i * 7919 + k) % (inodes * 4)}`);
      return k === 2 ? Buffer.concat([stem, Buffer.from([0xff])]) : stem;
    });
    const first = Buffer.concat([Buffer.from(`${root}/`), names[0]!]);
    fs.writeFileSync(first, `inode ${i}\n`);
    for (const name of names.slice(1)) fs.linkSync(first, Buffer.concat([Buffer.from(`${root}/`), name]));
  }
  fs.writeFileSync(path.join(root, 'z', 'shared-with-outside'), 'shared\n');
  fs.linkSync(path.join(root, 'z', 'shared-with-outside'), outside);
}

/** What the packer should do with each hard-linked path, worked out here from a plain walk: the first path of each inode in walk order keeps the data. */
function expectedDecisions(root: string): Map<string, string> {
  const firstOf = new Map<string, string>();
  const expected = new Map<string, string>();
  for (const entry of walkTree(root, excludeMatcher([]))) {
    if (!entry.stat?.isFile() || entry.stat.nlink < 2n) continue;
    const key = inodeKey(entry.stat);
    const first = firstOf.get(key);
    if (first === undefined) firstOf.set(key, entry.rel);
    expected.set(entry.rel, first === undefined ? 'first' : `link ${first}`);
  }
  return expected;
}

function decisionsOf(root: string, plan: HardLinkPlan): Map<string, string> {
  const decisions = new Map<string, string>();
  for (const entry of walkTree(root, excludeMatcher([]))) {
    if (!entry.stat?.isFile() || entry.stat.nlink < 2n) continue;
    const decision = plan.decide(entry.rel, inodeKey(entry.stat));
    decisions.set(entry.rel, decision.kind === 'link' ? `link ${decision.target}` : decision.kind);
  }
  return decisions;
}

function plan(root: string, inMemory: number): HardLinkPlan {
  const collector = new HardLinkCollector(root, inMemory);
  try {
    for (const entry of walkTree(root, excludeMatcher([]))) {
      if (entry.stat?.isFile() && entry.stat.nlink > 1n) collector.add(inodeKey(entry.stat), entry.rel, Number(entry.stat.size), Number(entry.stat.size));
    }
    return collector.finish();
  } finally {
    collector.close();
  }
}

describe('the hard-link plan of a source', () => {
  const savedTmp = process.env.TMPDIR;
  afterEach(() => {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
  });

  it('links every later path of an inode to its first in walk order, the same whether it is sorted in memory or in runs on disk', async () => {
    const root = await tempDir('links-plan');
    const outside = path.join(await tempDir('links-outside'), 'other-name');
    linkedTree(root, 400, outside);
    const expected = expectedDecisions(root);
    expect([...expected.values()].filter((d) => d.startsWith('link'))).toHaveLength(100 * (0 + 1 + 2 + 3));
    expect(expected.get('z/shared-with-outside')).toBe('first');

    for (const inMemory of [7, 100_000]) {
      const made = plan(root, inMemory);
      try {
        expect(made.later.paths).toBe(600);
        expect(decisionsOf(root, made)).toEqual(expected);
      } finally {
        made.close();
      }
    }
  });

  it('that cannot be sorted on disk fails the scan with what to do', async () => {
    const root = await tempDir('links-nospace');
    linkedTree(root, 40, path.join(await tempDir('links-outside'), 'x'));
    process.env.TMPDIR = path.join(root, 'no-such-directory');
    let thrown: unknown;
    try {
      plan(root, 10).close();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(OperationError);
    expect((thrown as OperationError).code).toBe('HARDLINKS_SPILL');
    expect((thrown as Error).message).toMatch(/cannot sort the hard-linked files of .* in the temporary directory: .*point TMPDIR at a directory with room/);
  });
});

/** GNU tar's extraction of an uncompressed archive into a new directory. */
async function extracted(archive: string): Promise<string> {
  const out = await tempDir('links-extracted');
  tool('tar', ['-x', '-f', archive, '-C', out]);
  return out;
}

describe('a backup of a source that changes between its scan and its packing', () => {
  it('never links a path to data that is not its own: what changed is archived as found, the rest as links', async () => {
    const root = await tempDir('links-change');
    const write = (rel: string, text: string) => fs.writeFileSync(path.join(root, rel), text);
    const link = (from: string, to: string) => fs.linkSync(path.join(root, from), path.join(root, to));
    for (const dir of ['a', 'b', 'c', 'd', 'e']) fs.mkdirSync(path.join(root, dir));
    write('a/replaced-first', 'old first\n');
    link('a/replaced-first', 'b/follows-replaced');
    write('a/removed-first', 'removed first\n');
    link('a/removed-first', 'b/follows-removed');
    link('a/removed-first', 'c/follows-removed-too');
    write('a/steady', 'steady\n');
    link('a/steady', 'b/steady-link');
    link('a/steady', 'e/steady-link');
    write('a/other', 'other inode\n');
    link('a/other', 'd/other-link');
    write('a/later-replaced', 'later replaced\n');
    link('a/later-replaced', 'c/later-replaced');

    const scan = scanSource(root, excludeMatcher([]));
    // After the scan, before the backup reads anything:
    fs.rmSync(path.join(root, 'a/replaced-first'));
    write('a/replaced-first', 'a new file under the old name\n');
    fs.rmSync(path.join(root, 'a/removed-first'));
    fs.rmSync(path.join(root, 'c/later-replaced'));
    link('a/other', 'c/later-replaced');
    link('a/steady', 'd/new-link');

    const out = path.join(await tempDir('links-change-out'), 'archive.tar');
    const manifest = new ManifestWriter(fs.openSync('/dev/null', 'w'), { format: 2, prefix: 'x', archive: 'x', createdAt: '', source: root, compression: 'none', level: undefined, excludes: [], runnerVersion: '' });
    try {
      await writeArchive({ source: root, exclude: excludeMatcher([]), hardLinks: scan.hardLinks, skipUnreadable: false, compression: 'none', level: undefined, file: out, manifest, xattrs: false, sourceBytes: 0 });
    } finally {
      scan.hardLinks.close();
    }

    // Every path holds its own bytes. Links made since the scan are archived as files of their own.
    const restored = await extracted(out);
    const content = (dir: string) => snapshotTree(dir).map(({ path: p, type, sha256 }) => ({ p, type, sha256 }));
    expect(content(restored)).toEqual(content(root));
    const links = tool('tar', ['-tv', '-f', out]).toString('utf8').split('\n').filter((l) => l.startsWith('h'));
    expect(links.map((l) => l.slice(l.indexOf('./'))).sort()).toEqual([
      './b/steady-link link to ./a/steady',
      './c/follows-removed-too link to ./b/follows-removed',
      './d/other-link link to ./a/other',
      './e/steady-link link to ./a/steady',
    ]);
    const groups = snapshotTree(restored).flatMap((e) => (e.hardlinks && e.hardlinks[0] === e.path ? [e.hardlinks.join(' = ')] : []));
    expect(groups.sort()).toEqual(['a/other = d/other-link', 'a/steady = b/steady-link = e/steady-link', 'b/follows-removed = c/follows-removed-too']);
  });
});

describe('a backup of more hard-linked paths than the plan holds in memory', () => {
  const inodes = LINKS_IN_MEMORY / 2 + 617;

  it('archives each inode once and every other path as a link to it; GNU tar gives back the same link groups', { timeout: 120_000 }, async () => {
    const source = await tempDir('links-source');
    for (const dir of ['store', 'project/node_modules']) fs.mkdirSync(path.join(source, dir), { recursive: true });
    for (let i = 0; i < inodes; i++) {
      const name = Buffer.concat([Buffer.from(`pkg-${(i * 7919) % inodes}`), i % 97 === 0 ? Buffer.from([0xff]) : Buffer.alloc(0)]);
      const stored = Buffer.concat([Buffer.from(`${source}/store/`), name]);
      fs.writeFileSync(stored, i % 3 === 0 ? `${i}\n` : '');
      fs.linkSync(stored, Buffer.concat([Buffer.from(`${source}/project/node_modules/`), name]));
    }
    const refused = await tempDir('links-refused');
    const failed = await runCli(['backup', '--source', source, '--dest', refused, '--log-format', 'json'], { env: { TMPDIR: path.join(refused, 'missing') } });
    expect(failed.code, failed.stdout).toBe(1);
    expect(jsonLines(failed.stdout).find((l) => l.event === 'backup.failed')?.msg).toMatch(/cannot sort the hard-linked files of .* in the temporary directory: .*point TMPDIR at a directory with room/);
    expect(archivesIn(refused)).toEqual([]);

    const dest = await tempDir('links-dest');
    const made = await runCli(['backup', '--source', source, '--dest', dest, '--log-format', 'json'], { timeoutMs: 110_000 });
    expect(made.code, made.stdout).toBe(0);
    const start = jsonLines(made.stdout).find((l) => l.event === 'backup.start');
    expect(start?.files).toBe(inodes);
    const [archive] = archivesIn(dest);
    const listing = tool('tar', ['-tvz', '-f', path.join(dest, archive!)], { maxBuffer: 64 * 1024 * 1024 }).toString('utf8').split('\n');
    const links = listing.filter((l) => l.startsWith('h'));
    expect(links).toHaveLength(inodes);
    // project/ comes before store/ in walk order: each store path links to the project's path of the same name.
    for (const line of links) expect(line).toMatch(/ \.\/store\/(pkg-[^/]+) link to \.\/project\/node_modules\/\1$/);

    const restored = await tempDir('links-restored');
    tool('tar', ['-xz', '-f', path.join(dest, archive!), '-C', restored]);
    const groups = (dir: string) => {
      const byInode = new Map<string, string[]>();
      for (const entry of walkTree(dir, excludeMatcher([]))) {
        if (entry.stat?.isFile()) byInode.set(inodeKey(entry.stat), [...(byInode.get(inodeKey(entry.stat)) ?? []), entry.rel]);
      }
      return [...byInode.values()].map((g) => g.sort(compareWalkOrder).join(' = ')).sort();
    };
    expect(groups(restored)).toEqual(groups(source));
    const verified = await runCli(['verify', '--dest', dest, '--latest', '--log-format', 'json'], { timeoutMs: 110_000 });
    expect(verified.code, verified.stdout).toBe(0);
  });
});
