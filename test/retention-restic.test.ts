import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RetentionArchive, type RetentionPolicy, TIERS, type Tier, planRetention } from '../runner/retention.js';
import { archiveFileName, parseArchiveName } from '../runner/store/naming.js';
import { useTempDirs } from './helpers/tree.js';

/**
 * The retention plan against restic itself: three years of synthetic archive times (same-day
 * duplicates, an hourly burst, ISO week 53 across a year boundary, the last and first second of
 * years, a leap day, a gap of six months, an oldest archive that is not alone in its week or
 * month) become restic snapshots (`restic backup --time`), and `restic forget --dry-run --json`
 * with each policy must keep exactly what planRetention keeps, for the same reasons, with the
 * same remaining counts.
 *
 * Debian 12 ships restic 0.14. Since 0.16 restic also keeps the oldest snapshot for a tier that
 * still has room at the end (restic #3624), which is what planRetention does; 0.14 differs only
 * in that one archive, the oldest, so that is derived from its output: the oldest is kept for
 * every tier whose counter was still above 0 after the last snapshot kept before it, as
 * "oldest <tier> snapshot" where 0.14 did not already keep it for that tier.
 */

function utc(iso: string): Date {
  return new Date(`${iso}Z`);
}

/** The synthetic times, 2019-07-01 to 2022-07-01, each a distinct second (about 110). */
function syntheticTimes(): Date[] {
  const times = new Map<number, Date>();
  const add = (d: Date) => times.set(d.getTime(), d);
  const gapStart = utc('2021-03-01T00:00:00').getTime();
  const gapEnd = utc('2021-09-01T00:00:00').getTime();
  // One every 11 days at 03:00, except in the gap.
  for (let t = utc('2019-07-01T03:00:00').getTime(); t < utc('2022-07-01T00:00:00').getTime(); t += 11 * 86_400_000) {
    if (t < gapStart || t >= gapEnd) add(new Date(t));
  }
  // Same-day duplicates.
  for (const day of ['2019-08-14', '2020-05-05', '2021-10-10', '2022-06-20']) for (const time of ['09:30:00', '21:45:10', '21:45:11']) add(utc(`${day}T${time}`));
  // An hourly burst: every 20 minutes for four hours.
  for (let i = 0; i < 12; i++) add(new Date(utc('2022-06-28T08:00:00').getTime() + i * 20 * 60_000));
  // Every day around ISO week 53 of 2020 (Monday 2020-12-28 to Sunday 2021-01-03).
  for (let t = utc('2020-12-24T01:00:00').getTime(); t <= utc('2021-01-06T01:00:00').getTime(); t += 86_400_000) add(new Date(t));
  // The last and first second of years, a leap day, and a second archive in the oldest one's week.
  for (const iso of ['2019-07-02T03:00:00', '2019-12-31T23:59:59', '2020-01-01T00:00:00', '2021-12-31T23:59:59', '2022-01-01T00:00:00', '2020-02-29T12:00:00']) add(utc(iso));
  return [...times.values()].sort((a, b) => a.getTime() - b.getTime());
}

const POLICIES: RetentionPolicy[] = [
  { daily: 7, weekly: 5, monthly: 12, yearly: 3 },
  { last: 4, hourly: 6, daily: 10 },
  { weekly: 200 },
  { monthly: 40, yearly: 10 },
  { hourly: 30, yearly: 1 },
  { daily: 30, monthly: 6 },
  { last: 2, weekly: 20, yearly: 5 },
  { last: 1000 },
];

interface ResticReason {
  snapshot: { time: string };
  matches: string[];
  counters: Partial<Record<Tier, number>>;
}

interface ResticGroup {
  keep: { time: string }[] | null;
  remove: { time: string }[] | null;
  reasons: ResticReason[] | null;
}

const env = { ...process.env, RESTIC_PASSWORD: 'retention-test', TZ: 'UTC', RESTIC_CACHE_DIR: '' };

function restic(repo: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('restic', ['--repo', repo, '--no-cache', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`restic ${args.join(' ')} exited ${code}: ${stderr}`))));
  });
}

/** Runs `jobs` with at most `width` at a time. */
async function inParallel(jobs: (() => Promise<unknown>)[], width: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) await jobs[next++]!();
  }));
}

function resticTime(d: Date): string {
  return d.toISOString().slice(0, 19).replace('T', ' ');
}

/** A kept archive's reasons in restic's words. */
type Reasons = Map<number, string[]>;

function ourReasons(archives: RetentionArchive[], policy: RetentionPolicy): { reasons: Reasons; counters: Map<number, Partial<Record<Tier, number>>> } {
  const plan = planRetention(archives, policy);
  const reasons: Reasons = new Map();
  const counters = new Map<number, Partial<Record<Tier, number>>>();
  for (const p of plan.archives.filter((a) => a.keep)) {
    reasons.set(p.archive.time.getTime(), p.reasons.map((r) => `${r.oldest ? 'oldest ' : ''}${r.rule} snapshot`));
    counters.set(p.archive.time.getTime(), Object.fromEntries(p.reasons.map((r) => [r.rule, r.of! - r.n!])));
  }
  return { reasons, counters };
}

/** restic ≥ 0.16's reasons, from restic 0.14's output (see the module comment). */
function resticReasons(group: ResticGroup, policy: RetentionPolicy, oldest: number): { reasons: Reasons; counters: Map<number, Partial<Record<Tier, number>>> } {
  const reasons: Reasons = new Map();
  const counters = new Map<number, Partial<Record<Tier, number>>>();
  let remaining: Partial<Record<Tier, number>> = Object.fromEntries(TIERS.map((t) => [t, policy[t] ?? 0]));
  let oldestMatches: string[] = [];
  for (const r of group.reasons ?? []) {
    const time = Date.parse(r.snapshot.time);
    if (time === oldest) {
      oldestMatches = r.matches;
      continue;
    }
    reasons.set(time, r.matches);
    const matched = r.matches.map((m) => m.replace(/ snapshot$/, '') as Tier);
    counters.set(time, Object.fromEntries(matched.map((t) => [t, r.counters[t] ?? 0])));
    remaining = Object.fromEntries(TIERS.map((t) => [t, r.counters[t] ?? 0]));
  }
  const withRoom = TIERS.filter((t) => (remaining[t] ?? 0) > 0);
  if (withRoom.length > 0) {
    reasons.set(oldest, withRoom.map((t) => (oldestMatches.includes(`${t} snapshot`) ? `${t} snapshot` : `oldest ${t} snapshot`)));
  }
  return { reasons, counters };
}

function show(reasons: Reasons): Record<string, string[]> {
  return Object.fromEntries([...reasons.entries()].sort((a, b) => b[0] - a[0]).map(([t, r]) => [new Date(t).toISOString(), r]));
}

describe('planRetention against restic forget', () => {
  const times = syntheticTimes();
  const archives: RetentionArchive[] = times.map((time) => {
    const parsed = parseArchiveName(archiveFileName('restic', time, 'gzip'))!;
    return { ...parsed, health: 'verified' };
  });
  // One repository for the whole file (each restic run that opens it costs a key derivation).
  const tempDir = useTempDirs('file');
  let repo = '';
  let version = '';

  beforeAll(async () => {
    const dir = await tempDir('restic');
    repo = path.join(dir, 'repo');
    const source = path.join(dir, 'source');
    fs.mkdirSync(source);
    fs.writeFileSync(path.join(source, 'data.txt'), 'retention\n');
    version = (await restic(repo, ['version'])).trim();
    await restic(repo, ['init', '--quiet']);
    await inParallel(times.map((time) => () => restic(repo, ['backup', '--quiet', '--host', 'retention', '--time', resticTime(time), source])), 4);
  }, 600_000);

  afterAll(() => {
    if (version) console.log(`[retention] compared ${POLICIES.length} policies over ${times.length} archives with ${version}`);
  });

  it('the synthetic set covers the edge cases it claims to', () => {
    expect(times.length).toBeGreaterThan(100);
    expect(times[0]!.toISOString()).toBe('2019-07-01T03:00:00.000Z');
    expect(times.filter((t) => t >= utc('2021-03-01T00:00:00') && t < utc('2021-09-01T00:00:00'))).toEqual([]);
    expect(times.some((t) => t.toISOString().startsWith('2021-01-03'))).toBe(true); // Sunday of 2020-W53
  });

  it.each(POLICIES.map((p) => [JSON.stringify(p), p] as const))('%s keeps what restic keeps, for the same reasons', async (_name, policy) => {
    const flags = Object.entries(policy).flatMap(([tier, n]) => [`--keep-${tier}`, String(n)]);
    const out = await restic(repo, ['forget', '--dry-run', '--json', '--host', 'retention', ...flags]);
    const groups = JSON.parse(out) as ResticGroup[];
    expect(groups).toHaveLength(1);
    const group = groups[0]!;
    expect((group.keep?.length ?? 0) + (group.remove?.length ?? 0)).toBe(times.length);

    const theirs = resticReasons(group, policy, times[0]!.getTime());
    const ours = ourReasons(archives, policy);
    expect(show(ours.reasons)).toEqual(show(theirs.reasons));
    // The same remaining count after every kept archive, tier by tier (the oldest aside: 0.14 did not count it).
    for (const [time, counters] of theirs.counters) expect(ours.counters.get(time), new Date(time).toISOString()).toEqual(counters);
  }, 60_000);
});
