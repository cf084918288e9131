import { describe, expect, it } from 'vitest';
import { excludeMatcher, walkTree } from '../../runner/archive/walk.js';
import { expectedArchivePaths, useTempDirs, writeTree } from '../helpers/tree.js';

const tempDir = useTempDirs();

describe('exclude patterns', () => {
  const cases: { pattern: string; excluded: [string, boolean][]; kept: [string, boolean][] }[] = [
    { pattern: '*.log', excluded: [['a.log', false], ['deep/er/b.log', false], ['dir.log', true]], kept: [['a.log.gz', false], ['log', false]] },
    { pattern: 'cache/', excluded: [['cache', true], ['x/y/cache', true]], kept: [['cache', false], ['x/cache', false], ['cachex', true]] },
    { pattern: 'cache', excluded: [['cache', true], ['cache', false], ['x/cache', false]], kept: [['x/cache2', false]] },
    { pattern: 'data/tmp/*', excluded: [['data/tmp/a', false], ['data/tmp/sub', true]], kept: [['data/tmp', true], ['x/data/tmp/a', false], ['data/tmpx/a', false]] },
    { pattern: '/top.txt', excluded: [['top.txt', false]], kept: [['sub/top.txt', false]] },
    { pattern: './db/wal', excluded: [['db/wal', true]], kept: [['x/db/wal', true]] },
  ];

  it.each(cases)('$pattern excludes what it should and nothing else', ({ pattern, excluded, kept }) => {
    const matches = excludeMatcher([pattern]);
    for (const [rel, isDir] of excluded) expect(matches(rel, isDir), `${rel}${isDir ? '/' : ''}`).toBe(true);
    for (const [rel, isDir] of kept) expect(matches(rel, isDir), `${rel}${isDir ? '/' : ''}`).toBe(false);
  });

  it('with no patterns excludes nothing', () => {
    expect(excludeMatcher([])('anything', false)).toBe(false);
  });
});

describe('the tree walk', () => {
  it('visits directories before their contents, names sorted, and skips everything below an excluded directory', async () => {
    const root = await tempDir('walk');
    writeTree(root, { 'b/z.txt': '', 'b/a.txt': '', 'a.txt': '', 'B.txt': '', 'skip/inner/deep.txt': '', 'empty/': '' });
    const exclude = excludeMatcher(['skip/']);
    const seen = [...walkTree(root, exclude)].map((e) => (e.stat!.isDirectory() ? (e.rel === '' ? './' : `./${e.rel}/`) : `./${e.rel}`));
    expect(seen).toEqual(['./', './B.txt', './a.txt', './b/', './b/a.txt', './b/z.txt', './empty/']);
    expect(seen).toEqual(expectedArchivePaths(root, (rel) => rel === 'skip'));
  });
});
