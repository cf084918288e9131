import { describe, expect, it } from 'vitest';
import { UsageError } from '../runner/errors.js';
import { planPrune } from '../runner/retention.js';
import { type ArchiveName, parseArchiveName } from '../runner/store/naming.js';

function archives(...names: string[]): ArchiveName[] {
  return names.map((n) => {
    const parsed = parseArchiveName(n);
    if (!parsed) throw new Error(`test name ${n} does not parse`);
    return parsed;
  });
}

const sameSecond = archives(
  'backup-20260102T030405Z-10.tar.gz',
  'backup-20260102T030405Z-3.tar.gz',
  'backup-20260102T030405Z-2.tar.gz',
  'backup-20260102T030405Z.tar.gz',
  'backup-20260101T000000Z.tar.gz',
);

const names = (list: ArchiveName[]) => list.map((a) => a.name);

describe('planPrune', () => {
  it('keeps exactly the newest N across same-second names (-10 is newer than -9, -3, -2)', () => {
    const plan = planPrune(sameSecond, 2);
    expect(names(plan.keep)).toEqual(['backup-20260102T030405Z-10.tar.gz', 'backup-20260102T030405Z-3.tar.gz']);
    expect(names(plan.remove)).toEqual(['backup-20260102T030405Z-2.tar.gz', 'backup-20260102T030405Z.tar.gz', 'backup-20260101T000000Z.tar.gz']);
  });

  it('does not depend on the order it is given (not string order either)', () => {
    const shuffled = [sameSecond[3]!, sameSecond[0]!, sameSecond[4]!, sameSecond[2]!, sameSecond[1]!];
    const stringSorted = [...sameSecond].sort((a, b) => (a.name < b.name ? 1 : -1)); // puts -10 below -2
    for (const input of [shuffled, stringSorted, [...sameSecond].reverse()]) {
      const plan = planPrune(input, 3);
      expect(names(plan.keep)).toEqual(names(sameSecond.slice(0, 3)));
      expect(names(plan.remove)).toEqual(names(sameSecond.slice(3)));
    }
  });

  it('orders by the time in the name across days, months and years', () => {
    const list = archives('b-20251231T235959Z.tar.gz', 'b-20260101T000000Z.tar', 'b-20250101T000000Z-99.tar.zst');
    expect(names(planPrune(list, 1).keep)).toEqual(['b-20260101T000000Z.tar']);
    expect(names(planPrune(list, 1).remove)).toEqual(['b-20251231T235959Z.tar.gz', 'b-20250101T000000Z-99.tar.zst']);
  });

  it('removes nothing when there are no more than N archives', () => {
    expect(planPrune(sameSecond, 5)).toEqual({ keep: sameSecond, remove: [] });
    expect(planPrune(sameSecond, 50).remove).toEqual([]);
    expect(planPrune([], 1)).toEqual({ keep: [], remove: [] });
  });

  it('always keeps the newest archive, even with keep-last 1', () => {
    const plan = planPrune(sameSecond, 1);
    expect(names(plan.keep)).toEqual(['backup-20260102T030405Z-10.tar.gz']);
    expect(plan.remove).toHaveLength(4);
  });

  it('refuses keep-last below 1 or not a whole number', () => {
    expect(() => planPrune(sameSecond, 0)).toThrow(UsageError);
    expect(() => planPrune(sameSecond, -1)).toThrow(UsageError);
    expect(() => planPrune(sameSecond, 1.5)).toThrow(UsageError);
    expect(() => planPrune(sameSecond, Number.NaN)).toThrow(UsageError);
  });

  it('refuses archives of several prefixes and duplicates', () => {
    expect(() => planPrune(archives('a-20260101T000000Z.tar', 'b-20260101T000000Z.tar'), 1)).toThrow(/several prefixes/);
    expect(() => planPrune([sameSecond[0]!, sameSecond[0]!], 1)).toThrow(/twice/);
  });

  it('orders exact ties (same second and sequence, different compression) deterministically by name', () => {
    const tie = archives('b-20260101T000000Z.tar.zst', 'b-20260101T000000Z.tar.gz');
    expect(names(planPrune(tie, 1).keep)).toEqual(['b-20260101T000000Z.tar.gz']);
    expect(names(planPrune([...tie].reverse(), 1).keep)).toEqual(['b-20260101T000000Z.tar.gz']);
  });

  it('does not modify its input', () => {
    const input = [...sameSecond].reverse();
    const copy = [...input];
    planPrune(input, 2);
    expect(input).toEqual(copy);
  });
});
