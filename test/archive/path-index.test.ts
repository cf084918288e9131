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
  it('keeps a value for each of a million paths in 8 bytes a slot, and grows', () => {
    const kinds = new PathKinds();
    for (let i = 0; i < 1_000_000; i++) kinds.set(fingerprint(`d${i % 1000}/f${i}`), 1 + (i % 5));
    expect(kinds.size).toBe(1_000_000);
    for (let i = 0; i < 1_000_000; i += 997) expect(kinds.get(fingerprint(`d${i % 1000}/f${i}`))).toBe(1 + (i % 5));
    expect(kinds.get(fingerprint('not/there'))).toBe(0);
    kinds.set(fingerprint('d0/f0'), 4);
    expect(kinds.get(fingerprint('d0/f0'))).toBe(4);
    expect(kinds.size).toBe(1_000_000);
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
