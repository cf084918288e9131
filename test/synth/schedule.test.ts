import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CronExpressionParser } from 'cron-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scheduleProblem, validateSchedule } from '../../runner/freshness.js';
import { runnerAccepts, TIME_ZONES_FILE, tzdataNames } from '../../synth/update-time-zones.js';
import { helmBinaries, runHelm, type HelmBinary } from '../helpers/helm.js';
import { CHART_PATH, helmTemplate, parseManifests, REQUIRED_VALUES } from './rendered-chart.js';

/**
 * backup.schedule, verify.schedule and backup.timeZone are checked when the chart renders, by the
 * rule the runner's freshness check applies (runner/freshness.ts): what the chart accepts, the
 * runner accepts, and the other way round. The chart's side (templates/_schedule.tpl) is run by
 * real Helm 3 and 4 on every case in one render, through a probe template in a copy of the chart.
 */

/** Schedules Kubernetes (robfig/cron ParseStandard, as the CronJob API validates) accepts, and what the rule says. */
const CASES: { schedule: string; kubernetes: boolean; accepted: boolean; why?: string }[] = [
  { schedule: '0 0 * * *', kubernetes: true, accepted: true },
  { schedule: '*/15 * * * *', kubernetes: true, accepted: true },
  { schedule: '30 2 * * MON-FRI', kubernetes: true, accepted: true },
  { schedule: '0 3 1,15 * *', kubernetes: true, accepted: true },
  { schedule: '0 0 * jan-mar,Dec sun', kubernetes: true, accepted: true },
  { schedule: '5/15 * * * *', kubernetes: true, accepted: true },
  { schedule: '0 0 29 2 *', kubernetes: true, accepted: true },
  { schedule: '0 0 30 2 1', kubernetes: true, accepted: true, why: 'day of week set: day of month OR day of week' },
  { schedule: '0 0 ? * ?', kubernetes: true, accepted: true },
  { schedule: '00 03 * * *', kubernetes: true, accepted: true },
  { schedule: '0\t0 *  * *', kubernetes: true, accepted: true },
  { schedule: '@daily', kubernetes: true, accepted: true },
  { schedule: '@annually', kubernetes: true, accepted: true },
  { schedule: '@hourly', kubernetes: true, accepted: true },
  { schedule: 'every day', kubernetes: false, accepted: false },
  { schedule: '@every 6h', kubernetes: true, accepted: false, why: 'cron-parser has no @every' },
  { schedule: '@midnight', kubernetes: true, accepted: false, why: 'cron-parser has no @midnight' },
  { schedule: '@weekdays', kubernetes: false, accepted: false },
  { schedule: ' @daily', kubernetes: false, accepted: false },
  { schedule: '0 0 * * * *', kubernetes: false, accepted: false, why: 'six fields (cron-parser reads seconds)' },
  { schedule: '0 0 * *', kubernetes: false, accepted: false },
  { schedule: '0 0 * * 7', kubernetes: false, accepted: false, why: 'robfig: day of week 0-6' },
  { schedule: '0 0 L * *', kubernetes: false, accepted: false },
  { schedule: '0 0 * * 1#2', kubernetes: false, accepted: false },
  { schedule: 'H * * * *', kubernetes: false, accepted: false },
  { schedule: 'TZ=UTC 0 0 * * *', kubernetes: false, accepted: false },
  { schedule: '0 0 30 2 *', kubernetes: true, accepted: false, why: 'cron-parser refuses a day no listed month has' },
  { schedule: '0 0 31 4,6,9,11 *', kubernetes: true, accepted: false, why: 'cron-parser refuses a day no listed month has' },
  { schedule: '0,,5 * * * *', kubernetes: true, accepted: false, why: 'cron-parser refuses empty list items' },
  { schedule: '+5 * * * *', kubernetes: true, accepted: false, why: 'cron-parser refuses signs' },
  { schedule: '*-5 * * * *', kubernetes: true, accepted: false, why: 'cron-parser refuses a range from *' },
  { schedule: '*/0 * * * *', kubernetes: false, accepted: false },
  { schedule: '5-2 * * * *', kubernetes: false, accepted: false },
  { schedule: '0 24 * * *', kubernetes: false, accepted: false },
  { schedule: '0 0 * * MONDAY', kubernetes: false, accepted: false },
  { schedule: '0 0 * 1/mon *', kubernetes: false, accepted: false },
  { schedule: '0,0 * * * *', kubernetes: true, accepted: false, why: 'cron-parser refuses a value twice in a field' },
  { schedule: '*/15,30 * * * *', kubernetes: true, accepted: false, why: 'cron-parser refuses a value twice in a field' },
];

/** Schedules generated from a small grammar, mostly valid per field (seeded, so every run is the same run). */
function generatedSchedules(count: number, seed = 20260101): string[] {
  let state = seed >>> 0;
  const random = () => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const good: string[][] = [
    ['0', '5', '30', '59', '00', '07'],
    ['0', '3', '12', '23'],
    ['1', '15', '28', '29', '30', '31'],
    ['1', '2', '4', '6', '12', 'jan', 'FEB', 'Dec'],
    ['0', '1', '5', '6', 'mon', 'FRI', 'Sun'],
  ];
  const bad = ['60', '24', '0', '32', '13', '7', '99', '007', 'x', 'monday', '', 'L', '1W'];
  const value = (field: number) => (random() < 0.06 ? pick(bad) : pick(good[field]!));
  const item = (field: number) => {
    const shape = pick(['*', '*', '*', '?', 'v', 'v', 'v', 'v', 'v-v', 'v-v', 'v-v', '*-v']);
    const base = shape.replace(/v/g, () => value(field));
    return random() < 0.25 ? `${base}/${pick(['1', '2', '5', '15', '7', '0', '99', '100', 'mon'])}` : base;
  };
  const field = (index: number) => Array.from({ length: random() < 0.8 ? 1 : 2 }, () => item(index)).join(',');
  return Array.from({ length: count }, () => {
    if (random() < 0.05) return pick(['@daily', '@weekly', '@every 1h', '@reboot', '@monthly']);
    const fields = Array.from({ length: random() < 0.92 ? 5 : pick([4, 6]) }, (_, index) => field(Math.min(index, 4)));
    return fields.join(random() < 0.9 ? ' ' : '  ');
  });
}

const GENERATED = generatedSchedules(1000);
const ALL = [...new Set([...CASES.map((c) => c.schedule), ...GENERATED])];

/** What the runner says: its rule's message, and whether the whole check (rule + cron-parser) passes. */
function runnerVerdict(schedule: string): { problem: string; accepts: boolean } {
  let accepts = true;
  try {
    validateSchedule(schedule, 'Etc/UTC');
  } catch {
    accepts = false;
  }
  return { problem: scheduleProblem(schedule) ?? '', accepts };
}

const probeChart = mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-schedule-'));
afterAll(() => rmSync(probeChart, { recursive: true, force: true }));

/** The chart's verdict on every case, from one render of a probe template. */
function chartProblems(helm: HelmBinary): string[] {
  const result = runHelm(helm, ['template', 'shop', probeChart, '--set', 'source.claimName=data', '--set', 'image.repository=r/p', '--show-only', 'templates/schedule-probe.yaml']);
  if (result.code !== 0) throw new Error(`helm ${helm.major} template failed:\n${result.stderr}`);
  const probe = parseManifests(result.stdout)[0] as unknown as { data: { problems: string } };
  return JSON.parse(probe.data.problems) as string[];
}

beforeAll(() => {
  cpSync(CHART_PATH, probeChart, { recursive: true });
  writeFileSync(path.join(probeChart, 'files', 'schedule-cases.json'), JSON.stringify(ALL));
  writeFileSync(
    path.join(probeChart, 'templates', 'schedule-probe.yaml'),
    [
      '{{- $problems := list }}',
      '{{- range (.Files.Get "files/schedule-cases.json" | fromJsonArray) }}',
      '{{- $problems = append $problems (include "pvc-backup.scheduleProblem" .) }}',
      '{{- end }}',
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata:',
      '  name: schedule-probe',
      'data:',
      '  problems: {{ $problems | toJson | quote }}',
      '',
    ].join('\n'),
  );
});

describe('the schedule rule', () => {
  it.each(CASES)('"$schedule": Kubernetes $kubernetes, accepted $accepted', ({ schedule, kubernetes, accepted }) => {
    const verdict = runnerVerdict(schedule);
    expect(verdict.accepts, verdict.problem).toBe(accepted);
    // Nothing the rule accepts is refused by Kubernetes.
    if (accepted) expect(kubernetes).toBe(true);
  });

  it('is never weaker than cron-parser: every schedule the rule accepts, cron-parser reads', () => {
    const accepted = ALL.filter((s) => scheduleProblem(s) === undefined);
    expect(accepted.length).toBeGreaterThan(50);
    for (const schedule of accepted) {
      expect(() => CronExpressionParser.parse(schedule, { tz: 'Etc/UTC', currentDate: new Date() }).prev(), schedule).not.toThrow();
    }
  });

  it('generated cases exercise both verdicts', () => {
    const generated = GENERATED.map(runnerVerdict);
    expect(generated.filter((v) => v.accepts).length).toBeGreaterThan(80);
    expect(generated.filter((v) => !v.accepts).length).toBeGreaterThan(100);
  });
});

describe.each(helmBinaries())('the chart, rendered by Helm $major', (helm) => {
  it(`says what the runner says about ${ALL.length} schedules, word for word`, () => {
    const problems = chartProblems(helm);
    expect(problems).toHaveLength(ALL.length);
    const disagreements = ALL.flatMap((schedule, i) => {
      const runner = runnerVerdict(schedule);
      const chart = problems[i]!;
      // Both directions: the chart accepts exactly what the runner accepts.
      return chart === runner.problem && (chart === '') === runner.accepts ? [] : [{ schedule, chart, runner }];
    });
    expect(disagreements).toEqual([]);
  });

  it.each([
    ['backup.schedule', { backup: { schedule: 'every day' } }, 'backup.schedule "every day": expected five fields'],
    ['backup.schedule', { backup: { schedule: '@every 6h' } }, 'unknown macro @every 6h'],
    ['backup.schedule', { backup: { schedule: '0 0 * * 7' } }, 'day of week "7": 7 is outside 0-6'],
    ['verify.schedule', { verify: { schedule: '0 0 31 4,6,9,11 *' } }, 'verify.schedule "0 0 31 4,6,9,11 *": day of month 31 never comes'],
    ['backup.timeZone', { backup: { timeZone: 'Mars/Phobos' } }, 'backup.timeZone "Mars/Phobos" is not a time zone name'],
    ['backup.timeZone', { backup: { timeZone: 'europe/berlin' } }, 'backup.timeZone "europe/berlin" is not a time zone name'],
  ])('refuses a bad %s at render time, in one line that says what to write', (_key, values, message) => {
    const result = helmTemplate(helm, { ...REQUIRED_VALUES, ...values });
    expect(result.code, result.stdout).not.toBe(0);
    expect(result.stderr).toContain(message);
  });

  it('renders good schedules and time zones, which the rendered verify pod passes to the runner', () => {
    const result = helmTemplate(helm, { ...REQUIRED_VALUES, backup: { schedule: '30 2 * * mon-fri', timeZone: 'America/Argentina/Buenos_Aires' }, verify: { schedule: '@weekly' } });
    expect(result.code, result.stderr).toBe(0);
    const verify = parseManifests(result.stdout).find((m) => m.metadata.name === 'shop-pvc-backup-verify')!;
    const args: string[] = verify.spec.jobTemplate.spec.template.spec.containers[0].args;
    expect(() => validateSchedule(args[args.indexOf('--schedule') + 1]!, args[args.indexOf('--time-zone') + 1]!)).not.toThrow();
  });
});

describe('backup.timeZone: the names the chart accepts (files/time-zones.txt)', () => {
  const listed = readFileSync(TIME_ZONES_FILE, 'utf8').trim().split('\n');
  const chartCopy = readFileSync(path.join(CHART_PATH, 'files', 'time-zones.txt'), 'utf8');

  it('are all accepted by the runner (and the chart carries the list npm run synth copies)', () => {
    expect(chartCopy).toBe(readFileSync(TIME_ZONES_FILE, 'utf8'));
    expect(listed.length).toBeGreaterThan(500);
    expect(listed.filter((zone) => !runnerAccepts(zone))).toEqual([]);
    expect(listed).toEqual(expect.arrayContaining(['Etc/UTC', 'UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Asia/Calcutta', 'US/Pacific']));
  });

  it('are names of the IANA tz database, which Go (and so Kubernetes) loads by exact name', () => {
    const zoneinfo = '/usr/share/zoneinfo/tzdata.zi';
    if (!existsSync(zoneinfo)) {
      console.warn(`skipping the tz database comparison: ${zoneinfo} is missing (Debian package tzdata)`);
      return;
    }
    const names = new Set(tzdataNames(readFileSync(zoneinfo, 'utf8')));
    const unknown = listed.filter((zone) => !names.has(zone));
    // A newer list than this machine's tz database is fine; an unknown name is not.
    expect(unknown.filter((zone) => !/^[A-Z][A-Za-z_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(zone))).toEqual([]);
    expect(unknown.length, `${unknown.join(', ')} are not in ${zoneinfo}`).toBeLessThan(5);
    // And every canonical zone of Node's ICU that the tz database has is listed.
    const missing = Intl.supportedValuesOf('timeZone').filter((zone) => names.has(zone) && !listed.includes(zone));
    expect(missing).toEqual([]);
  });

  it.each([
    ['Mars/Phobos', false, 'no such zone'],
    ['Factory', false, 'a tz database placeholder the runner cannot use'],
    ['posixrules', false, 'a tz database file, not a zone'],
    ['right/UTC', false, 'a leap-second variant, not in Go\'s database'],
    ['utc', true, 'Kubernetes loads zones by exact, case-sensitive name'],
    ['europe/berlin', true, 'Kubernetes loads zones by exact, case-sensitive name'],
    ['Local', true, 'Kubernetes refuses Local'],
    ['+01:00', true, 'an offset, not a zone name Go can load'],
  ])('%s is refused by the chart (the runner accepts it: %s; %s)', (zone, runner) => {
    expect(runnerAccepts(zone)).toBe(runner);
    expect(listed).not.toContain(zone);
  });
});
