import { describe, expect, it } from 'vitest';
import { PathKinds, SymlinkStore, fingerprint, fingerprints } from '../../runner/archive/path-index.js';

/** The compact indexes behind restore's safety rules: exact answers, memory a few bytes per entry. */

describe('fingerprints', () => {
  it('gives every prefix of a path the fingerprint of that prefix, in one pass', () => {
    const seen: [string, string][] = [];
    const rel = 'a/bb/ccc/d';
    fingerprints(rel, (end, fp) => seen.push([rel.slice(0, end), `${fp.hi}:${fp.lo}`]));
    expect(seen.map(([p]) => p)).toEqual(['a', 'a/bb', 'a/bb/ccc', 'a/bb/ccc/d']);
    for (const [p, fp] of seen) {
      const own = fingerprint(p);
      expect(`${own.hi}:${own.lo}`).toBe(fp);
    }
  });
});

describe('PathKinds', () => {
  it('keeps a value for each of a million paths, and grows', () => {
    const kinds = new PathKinds();
    for (let i = 0; i < 1_000_000; i++) kinds.set(fingerprint(`d${i % 1000}/f${i}`), 1 + (i % 5));
    for (let i = 0; i < 1_000_000; i += 997) expect(kinds.get(fingerprint(`d${i % 1000}/f${i}`))).toBe(1 + (i % 5));
    expect(kinds.get(fingerprint('not/there'))).toBe(0);
    kinds.set(fingerprint('d0/f0'), 4);
    expect(kinds.get(fingerprint('d0/f0'))).toBe(4);
    kinds.close();
  });

  it.each([
    ['with Bloom filters', 1 << 20],
    ['with no filter memory left (every lookup searches the runs)', 0],
  ])('answers exactly from sorted runs on disk once the memory table is full, newest value first, through merges, %s', (_label, bloomBudgetBytes) => {
    // 1,024 slots in memory: 100,000 paths make ~130 spills and many merges.
    const kinds = new PathKinds({ memorySlots: 1 << 10, bloomBudgetBytes });
    const n = 100_000;
    const valueOf = (i: number, round: number) => 1 + ((i * 7 + round) % 31);
    for (let i = 0; i < n; i++) kinds.set(fingerprint(`p/${i}`), valueOf(i, 0));
    expect(kinds.runCount).toBeGreaterThan(0);
    expect(kinds.runCount).toBeLessThanOrEqual(7);
    // A new value for every third path, written after its old one went to disk.
    for (let i = 0; i < n; i += 3) kinds.set(fingerprint(`p/${i}`), valueOf(i, 1));
    for (let i = 0; i < n; i++) {
      const got = kinds.get(fingerprint(`p/${i}`));
      if (got !== valueOf(i, i % 3 === 0 ? 1 : 0)) expect.fail(`p/${i}: ${got}`);
    }
    for (let i = 0; i < 1000; i++) expect(kinds.get(fingerprint(`absent/${i}`))).toBe(0);
    kinds.close();
  });
});

describe('SymlinkStore', () => {
  it('answers exactly for many more symlinks than it keeps in memory, with deletions and replacements', () => {
    const store = new SymlinkStore();
    const n = 30_000;
    for (let i = 0; i < n; i++) store.set(`links/l${i}`, `../target-${i}/\udcff`);
    expect(store.size).toBe(n);
    for (let i = 0; i < n; i += 101) expect(store.get(`links/l${i}`)).toBe(`../target-${i}/\udcff`);
    expect(store.get('links/none')).toBeUndefined();
    store.delete('links/l20000');
    store.delete('links/l5');
    store.set('links/l20001', 'again');
    expect(store.get('links/l20000')).toBeUndefined();
    expect(store.get('links/l20001')).toBe('again');
    const all = new Map(store.entries());
    expect(all.size).toBe(n - 2);
    expect(all.get('links/l20001')).toBe('again');
    expect(all.has('links/l5')).toBe(false);
    store.close();
  });
});
