import { describe, expect, it } from 'vitest';
import { UsageError } from '../runner/errors.js';
import {
  type KeepReason,
  type RetentionArchive,
  type RetentionHealth,
  type RetentionPolicy,
  describeReason,
  isoWeek,
  periodOf,
  planRetention,
} from '../runner/retention.js';
import { archiveFileName, parseArchiveName } from '../runner/store/naming.js';

/**
 * The retention policy as a pure function, against restic's documented examples and the
 * calendar's edge cases. Every expectation here is worked out by hand from the rules (see the
 * README's Retention section); test/retention-restic.test.ts compares with restic itself.
 */

type Input = RetentionArchive;

function archive(name: string, health: RetentionHealth = 'verified', problem?: string): Input {
  const parsed = parseArchiveName(name);
  if (!parsed) throw new Error(`test name ${name} does not parse`);
  return { name, prefix: parsed.prefix, time: parsed.time, sequence: parsed.sequence, health, ...(problem ? { problem } : {}) };
}

/** `b-<time>.tar.gz` for an ISO time like `2026-01-05T10:00:00`, UTC. */
function at(iso: string, sequence = 1, health: RetentionHealth = 'verified'): Input {
  return archive(archiveFileName('b', new Date(`${iso}Z`), 'gzip', sequence), health);
}

function days(fromIso: string, toIso: string, time = '12:00:00'): Input[] {
  const list: Input[] = [];
  for (let t = Date.parse(`${fromIso}T${time}Z`); t <= Date.parse(`${toIso}T${time}Z`); t += 86_400_000) {
    list.push(at(new Date(t).toISOString().slice(0, 19)));
  }
  return list;
}

/** The kept archives' times (`YYYY-MM-DDTHH:MM:SS`, plus `-N` for a sequence), newest first. */
function kept(list: readonly Input[], policy: RetentionPolicy): string[] {
  return planRetention(list, policy).keep.map(label);
}

function label(a: Input): string {
  return a.time.toISOString().slice(0, 19) + (a.sequence > 1 ? `-${a.sequence}` : '');
}

/** Kept archives with their reasons in short form: `daily 2026-01-05 1/7`, `oldest monthly …`. */
function reasons(list: readonly Input[], policy: RetentionPolicy): Record<string, string[]> {
  const short = (r: KeepReason) => (r.period ? `${r.oldest ? 'oldest ' : ''}${r.rule} ${r.period} ${r.n}/${r.of}` : r.n ? `${r.rule} ${r.n}/${r.of}` : r.rule);
  return Object.fromEntries(
    planRetention(list, policy)
      .archives.filter((p) => p.keep)
      .map((p) => [label(p.archive), p.reasons.map(short)]),
  );
}

describe('restic documentation examples', () => {
  // "Suppose you have only made one backup every Sunday for 12 weeks" (restic docs, forget).
  const sundays = Array.from({ length: 12 }, (_, i) => at(new Date(Date.UTC(2019, 8, 1 + 7 * i, 11)).toISOString().slice(0, 19)));

  it('--keep-daily 4 keeps the last four Sundays and removes the other eight', () => {
    const plan = planRetention(sundays, { daily: 4 });
    expect(plan.keep.map(label)).toEqual(['2019-11-17T11:00:00', '2019-11-10T11:00:00', '2019-11-03T11:00:00', '2019-10-27T11:00:00']);
    expect(plan.remove).toHaveLength(8);
    expect(plan.archives.filter((p) => p.keep).every((p) => p.reasons.length === 1 && p.reasons[0]!.rule === 'daily')).toBe(true);
  });

  it('a tier with room left at the oldest archive keeps that one too (restic 0.16+)', () => {
    // Three months have Sundays; --keep-monthly 5 still has room after them.
    expect(reasons(sundays, { monthly: 5 })).toEqual({
      '2019-11-17T11:00:00': ['monthly 2019-11 1/5'],
      '2019-10-27T11:00:00': ['monthly 2019-10 2/5'],
      '2019-09-29T11:00:00': ['monthly 2019-09 3/5'],
      '2019-09-01T11:00:00': ['oldest monthly 2019-09 4/5'],
    });
    // Used up exactly: no extra archive.
    expect(kept(sundays, { monthly: 3 })).toEqual(['2019-11-17T11:00:00', '2019-10-27T11:00:00', '2019-09-29T11:00:00']);
  });

  it('one backup a day for 100 years with --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75', () => {
    // The docs: 7 dailies, 4 more last-day-of-the-week ones (the dailies include 1 weekly), 12 or
    // 11 last-day-of-the-month ones, 75 or 74 last-day-of-the-year ones. Ending on Sunday
    // 2023-12-31 makes the newest archive the last day of its week, month and year.
    const century = days('1924-01-01', '2023-12-31');
    const plan = planRetention(century, { daily: 7, weekly: 5, monthly: 12, yearly: 75 });
    const only = (rule: string) => plan.archives.filter((p) => p.reasons.length === 1 && p.reasons[0]!.rule === rule).map((p) => p.archive.time);
    const byRule = (rule: string) => plan.archives.filter((p) => p.reasons.some((r) => r.rule === rule));
    expect(byRule('daily')).toHaveLength(7);
    expect(byRule('weekly')).toHaveLength(5);
    expect(byRule('monthly')).toHaveLength(12);
    expect(byRule('yearly')).toHaveLength(75);
    expect(only('weekly')).toHaveLength(4);
    expect(only('monthly')).toHaveLength(11);
    expect(only('yearly')).toHaveLength(74);
    expect(plan.keep).toHaveLength(7 + 4 + 11 + 74);
    expect(only('weekly').every((t) => t.getUTCDay() === 0)).toBe(true); // Sundays
    expect(only('monthly').every((t) => new Date(t.getTime() + 86_400_000).getUTCDate() === 1)).toBe(true); // month ends
    expect(only('yearly').every((t) => t.getUTCMonth() === 11 && t.getUTCDate() === 31)).toBe(true);
    expect(label(plan.keep.at(-1)!)).toBe('1949-12-31T12:00:00'); // 75 years, no room left for the oldest
  });
});

describe("the README's worked example", () => {
  const threeYears = days('2023-01-01', '2025-12-31');

  it('keeps 22 of three years of dailies with --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-yearly 3', () => {
    const plan = planRetention(threeYears, { daily: 7, weekly: 4, monthly: 12, yearly: 3 });
    expect(plan.keep).toHaveLength(22);
    expect(reasons(threeYears, { daily: 7, weekly: 4, monthly: 12, yearly: 3 })['2025-12-28T12:00:00']).toEqual(['daily 2025-12-28 4/7', 'weekly 2025-W52 2/4']);
    expect(plan.keep.map(label).slice(-3)).toEqual(['2025-01-31T12:00:00', '2024-12-31T12:00:00', '2023-12-31T12:00:00']);
  });

  it('with --keep-yearly 5 the oldest archive is kept as the fourth yearly', () => {
    expect(reasons(threeYears, { daily: 7, weekly: 4, monthly: 12, yearly: 5 })['2023-01-01T12:00:00']).toEqual(['oldest yearly 2023 4/5']);
  });
});

describe('calendar edge cases', () => {
  it('ISO weeks: Monday to Sunday, week 1 holds the first Thursday, some years have a week 53', () => {
    const week = (iso: string) => periodOf('weekly', new Date(`${iso}T12:00:00Z`));
    expect(week('2020-12-27')).toBe('2020-W52'); // Sunday
    expect(week('2020-12-28')).toBe('2020-W53'); // Monday
    expect(week('2021-01-03')).toBe('2020-W53'); // Sunday, already 2021
    expect(week('2021-01-04')).toBe('2021-W01');
    expect(week('2019-12-30')).toBe('2020-W01'); // Monday, still 2019
    expect(week('2024-12-30')).toBe('2025-W01');
    expect(week('2026-12-31')).toBe('2026-W53');
    expect(week('2027-01-03')).toBe('2026-W53');
    expect(week('2010-01-03')).toBe('2009-W53');
    expect(week('2026-01-01')).toBe('2026-W01'); // a Thursday
    expect(isoWeek(new Date('2015-12-31T23:59:59Z'))).toEqual({ year: 2015, week: 53 });
  });

  it('week 53 across a year boundary: weekly and yearly tiers pick different archives', () => {
    const list = days('2020-12-24', '2021-01-06', '01:00:00');
    expect(reasons(list, { weekly: 3, yearly: 2 })).toEqual({
      '2021-01-06T01:00:00': ['weekly 2021-W01 1/3', 'yearly 2021 1/2'],
      '2021-01-03T01:00:00': ['weekly 2020-W53 2/3'], // the newest of week 53 is in 2021
      '2020-12-31T01:00:00': ['yearly 2020 2/2'], // the newest of 2020 is in week 53 too, but not its newest
      '2020-12-27T01:00:00': ['weekly 2020-W52 3/3'],
    });
  });

  it('periods are UTC, by the time in the name: one second apart can be a new hour, day, month and year', () => {
    const list = [at('2026-01-01T00:00:00'), at('2025-12-31T23:59:59'), at('2025-12-31T23:00:00'), at('2025-12-31T22:59:59')];
    expect(kept(list, { hourly: 3 })).toEqual(['2026-01-01T00:00:00', '2025-12-31T23:59:59', '2025-12-31T22:59:59']);
    expect(kept(list, { daily: 2 })).toEqual(['2026-01-01T00:00:00', '2025-12-31T23:59:59']);
    expect(kept(list, { monthly: 2 })).toEqual(['2026-01-01T00:00:00', '2025-12-31T23:59:59']);
    expect(kept(list, { yearly: 2 })).toEqual(['2026-01-01T00:00:00', '2025-12-31T23:59:59']);
    // ...but the same ISO week (2026-W01 starts on Monday 2025-12-29): the oldest rule keeps one more.
    expect(reasons(list, { weekly: 2 })).toEqual({ '2026-01-01T00:00:00': ['weekly 2026-W01 1/2'], '2025-12-31T22:59:59': ['oldest weekly 2026-W01 2/2'] });
  });

  it('same-day and same-second archives: the newest of the day is the highest sequence (-10 after -9, -3, -2)', () => {
    const list = [
      at('2026-03-01T12:00:00', 3),
      at('2026-03-01T12:00:00'),
      at('2026-03-01T12:00:00', 10),
      at('2026-03-01T00:00:00'),
      at('2026-03-01T12:00:00', 2),
      at('2026-03-01T12:00:00', 9),
      at('2026-02-28T23:59:59'),
    ];
    expect(kept(list, { daily: 2 })).toEqual(['2026-03-01T12:00:00-10', '2026-02-28T23:59:59']);
    expect(kept(list, { hourly: 2 })).toEqual(['2026-03-01T12:00:00-10', '2026-03-01T00:00:00']);
    expect(kept(list, { last: 3 })).toEqual(['2026-03-01T12:00:00-10', '2026-03-01T12:00:00-9', '2026-03-01T12:00:00-3']);
    expect(kept(list, { daily: 1, last: 1 })).toEqual(['2026-03-01T12:00:00-10']);
  });

  it('a gap of months: only periods that have archives count, so the tier reaches back past the gap', () => {
    const list = ['01-15', '02-15', '03-15', '09-15', '10-15', '10-20', '11-15', '12-15', '12-20'].map((d) => at(`2024-${d}T06:00:00`));
    expect(kept(list, { monthly: 5 })).toEqual(['2024-12-20T06:00:00', '2024-11-15T06:00:00', '2024-10-20T06:00:00', '2024-09-15T06:00:00', '2024-03-15T06:00:00']);
    // Room left: every month with an archive, and the oldest archive, alone in its month, counts normally.
    expect(reasons(list, { monthly: 12 })['2024-01-15T06:00:00']).toEqual(['monthly 2024-01 7/12']);
    const withEarlier = [...list, at('2024-01-01T06:00:00')];
    expect(reasons(withEarlier, { monthly: 12 })['2024-01-01T06:00:00']).toEqual(['oldest monthly 2024-01 8/12']);
  });

  it('tiers overlap: one archive counts for every tier it matches and uses up a count in each', () => {
    // Sunday 01-11 is the newest of its day and of ISO week 2026-W02.
    const list = [at('2026-01-11T03:00:00'), at('2026-01-10T03:00:00'), at('2026-01-04T03:00:00'), at('2025-12-28T03:00:00')];
    expect(reasons(list, { daily: 2, weekly: 2 })).toEqual({
      '2026-01-11T03:00:00': ['daily 2026-01-11 1/2', 'weekly 2026-W02 1/2'],
      '2026-01-10T03:00:00': ['daily 2026-01-10 2/2'],
      '2026-01-04T03:00:00': ['weekly 2026-W01 2/2'],
    });
    expect(reasons(list, { last: 1, daily: 1, weekly: 1, monthly: 1, yearly: 1 })).toEqual({
      '2026-01-11T03:00:00': ['last 1/1', 'daily 2026-01-11 1/1', 'weekly 2026-W02 1/1', 'monthly 2026-01 1/1', 'yearly 2026 1/1'],
    });
  });
});

describe('verification state', () => {
  const list = [
    at('2026-01-02T12:00:00', 1, 'failed'),
    at('2026-01-02T06:00:00'),
    at('2026-01-01T12:00:00', 1, 'unverified'),
    at('2026-01-01T06:00:00'),
  ];

  it('an archive that failed verification counts toward no calendar tier; the next one of its day takes its place', () => {
    const plan = planRetention(list, { daily: 2 });
    expect(plan.keep.map(label)).toEqual(['2026-01-02T06:00:00', '2026-01-01T12:00:00']);
    expect(plan.archives[0]).toMatchObject({ keep: false, reasons: [], archive: { health: 'failed' } });
  });

  it('keep-last counts the newest N archives whatever their state, as it always has', () => {
    expect(reasons(list, { last: 1, daily: 2 })).toEqual({
      '2026-01-02T12:00:00': ['last 1/1'],
      '2026-01-02T06:00:00': ['daily 2026-01-02 1/2'],
      '2026-01-01T12:00:00': ['daily 2026-01-01 2/2'],
    });
  });

  it('the newest archive that has not failed verification is always kept', () => {
    expect(reasons(list, { last: 1 })).toEqual({ '2026-01-02T12:00:00': ['last 1/1'], '2026-01-02T06:00:00': ['newest-valid'] });
  });

  it('the oldest rule looks at the oldest archive that counts', () => {
    const month = [at('2026-05-20T00:00:00'), at('2026-05-10T00:00:00'), at('2026-05-05T00:00:00'), at('2026-05-01T00:00:00', 1, 'failed')];
    expect(reasons(month, { monthly: 5 })).toEqual({ '2026-05-20T00:00:00': ['monthly 2026-05 1/5'], '2026-05-05T00:00:00': ['oldest monthly 2026-05 2/5'] });
  });

  it('never an empty keep: when every archive failed and no keep-last slot is set, the newest is kept', () => {
    const broken = list.map((a) => ({ ...a, health: 'failed' as const }));
    expect(reasons(broken, { daily: 7, weekly: 4 })).toEqual({ '2026-01-02T12:00:00': ['newest'] });
  });
});

describe('the policy', () => {
  const list = days('2026-01-01', '2026-01-10');

  it('refuses a policy that keeps nothing: missing, all zero, negative or not whole', () => {
    for (const policy of [{}, { last: 0 }, { last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 }] as RetentionPolicy[]) {
      expect(() => planRetention(list, policy), JSON.stringify(policy)).toThrow(UsageError);
      expect(() => planRetention(list, policy)).toThrow(/a policy that keeps nothing would delete every archive/);
      expect(() => planRetention([], policy)).toThrow(UsageError);
    }
    expect(() => planRetention(list, { daily: -1 })).toThrow(/--keep-daily must be 0 or more, got -1/);
    expect(() => planRetention(list, { weekly: 1.5 })).toThrow(/--keep-weekly must be 0 or more/);
    expect(() => planRetention(list, { last: -2, daily: 3 })).toThrow(/--keep-last must be at least 1/);
    expect(() => planRetention(list, { monthly: Number.NaN })).toThrow(UsageError);
  });

  it('a zero tier is off; the others still apply', () => {
    expect(kept(list, { last: 0, daily: 2, weekly: 0 })).toEqual(['2026-01-10T12:00:00', '2026-01-09T12:00:00']);
  });

  it('does not depend on the order it is given, and does not modify its input', () => {
    const shuffled = [list[3]!, list[9]!, list[0]!, list[5]!, list[1]!, list[8]!, list[2]!, list[7]!, list[4]!, list[6]!];
    const copy = [...shuffled];
    expect(planRetention(shuffled, { daily: 3, weekly: 2 })).toEqual(planRetention([...list].reverse(), { daily: 3, weekly: 2 }));
    expect(shuffled).toEqual(copy);
  });

  it('plans one prefix at a time, each archive once', () => {
    expect(() => planRetention([archive('a-20260101T000000Z.tar'), archive('b-20260101T000000Z.tar')], { daily: 1 })).toThrow(/several prefixes/);
    expect(() => planRetention([list[0]!, list[0]!], { daily: 1 })).toThrow(/twice/);
  });

  it('lists every archive newest first, each kept one with its reasons, and spells out the policy', () => {
    const plan = planRetention(list, { last: 2, weekly: 1 });
    expect(plan.policy).toEqual({ last: 2, hourly: 0, daily: 0, weekly: 1, monthly: 0, yearly: 0 });
    expect(plan.archives.map((p) => label(p.archive))).toEqual([...list].reverse().map(label));
    expect(plan.archives.map((p) => p.keep)).toEqual([true, true, false, false, false, false, false, false, false, false]);
    expect(plan.remove.map(label)).toEqual([...list].reverse().slice(2).map(label));
  });

  it('explains each reason in words', () => {
    expect(describeReason({ rule: 'last', n: 1, of: 3 })).toBe('last 1/3');
    expect(describeReason({ rule: 'daily', period: '2026-01-05', n: 2, of: 7 })).toBe('daily 2026-01-05 (2/7)');
    expect(describeReason({ rule: 'yearly', period: '2019', n: 3, of: 5, oldest: true })).toBe('yearly 2019 (3/5, oldest archive)');
    expect(describeReason({ rule: 'newest-valid' })).toBe('newest archive that has not failed verification');
  });
});
