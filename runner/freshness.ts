import { CronExpressionParser } from 'cron-parser';
import type { FreshnessConfig } from './config.js';
import { UsageError } from './errors.js';

/**
 * The backup schedules the freshness check accepts: those that both Kubernetes and cron-parser
 * read, and read alike. The CronJob API validates a schedule with robfig/cron's standard parser
 * (five fields, or a macro); cron-parser, which works out the last expected run, has macros and
 * field syntax of its own (seconds, L, W, #, H, day of week 7, @weekdays). Only the common part is
 * accepted, so a schedule the chart renders is one the CronJob runs and the check understands.
 *
 * The chart checks backup.schedule and verify.schedule at render time with the same rule
 * (synth/templates/_schedule.tpl, generated from the tables below); a test compares the two on
 * a list of cases.
 */

/** Macros both parsers know (robfig also has @midnight and @every, cron-parser @weekdays and others). */
export const SCHEDULE_MACROS = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly'] as const;

export interface ScheduleField {
  name: string;
  min: number;
  max: number;
  /** Three-letter names, case-insensitive, numbered from `min`. */
  names?: readonly string[];
}

/** The five fields, in order. Day of week is 0-6 (robfig refuses 7). */
export const SCHEDULE_FIELDS: readonly ScheduleField[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day of week', min: 0, max: 6, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];

/** The longest each month can be (February 29); cron-parser refuses a day of month no listed month has. */
export const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const;

const ITEM = /^(?:(?<any>[*?])|(?<from>[0-9A-Za-z]+)(?:-(?<to>[0-9A-Za-z]+))?)(?:\/(?<step>[0-9]+))?$/;

/** What is wrong with a schedule under the rule above, or undefined when it is fine. */
export function scheduleProblem(schedule: string): string | undefined {
  if ((SCHEDULE_MACROS as readonly string[]).includes(schedule)) return undefined;
  if (schedule.startsWith('@')) return `unknown macro ${schedule}; use one of ${SCHEDULE_MACROS.join(', ')} or five fields`;
  if (/^[ \t]|[ \t]$/.test(schedule)) return 'leading or trailing spaces';
  const fields = schedule.split(/[ \t]+/);
  if (fields.length !== 5) return `expected five fields (minute hour day-of-month month day-of-week), found ${fields.length}`;
  const starts: number[] = [];
  const values: number[][] = [];
  for (const [index, spec] of SCHEDULE_FIELDS.entries()) {
    const parsed = parseField(fields[index]!, spec);
    if (typeof parsed === 'string') return `${spec.name} "${fields[index]}": ${parsed}`;
    starts.push(Math.min(...parsed.map((r) => r.start)));
    values.push(parsed.flatMap((r) => expand(r)));
  }
  const dayOfWeek = fields[4]!;
  if (dayOfWeek === '*' || dayOfWeek === '?') {
    const firstDay = starts[2]!;
    const longest = Math.max(...values[3]!.map((month) => DAYS_IN_MONTH[month - 1]!));
    if (firstDay > longest) return `day of month ${firstDay} never comes in month "${fields[3]}"`;
  }
  return undefined;
}

interface Range {
  start: number;
  end: number;
  step: number;
}

/** The items of a field; no value may come twice (cron-parser refuses a field that repeats one). */
function parseField(text: string, spec: ScheduleField): Range[] | string {
  const ranges: Range[] = [];
  const seen = new Set<number>();
  for (const item of text.split(',')) {
    const range = parseItem(item, spec);
    if (typeof range === 'string') return range;
    for (const v of expand(range)) {
      if (seen.has(v)) return `${v} comes twice`;
      seen.add(v);
    }
    ranges.push(range);
  }
  return ranges;
}

function parseItem(item: string, spec: ScheduleField): Range | string {
  const match = ITEM.exec(item);
  if (!match?.groups) return item === '' ? 'empty list item' : `"${item}" is not a value, a range (a-b), * or ?, with an optional /step`;
  const { any, from, to, step: stepText } = match.groups;
  let step = 1;
  if (stepText !== undefined) {
    if (stepText.length > 2 || Number(stepText) < 1) return `step /${stepText} must be 1 to 99`;
    step = Number(stepText);
  }
  if (any !== undefined) return { start: spec.min, end: spec.max, step };
  const start = value(from!, spec);
  if (typeof start === 'string') return start;
  let end = start;
  if (to !== undefined) {
    const parsed = value(to, spec);
    if (typeof parsed === 'string') return parsed;
    end = parsed;
  } else if (stepText !== undefined) {
    end = spec.max; // N/step means N-max/step in both parsers
  }
  if (start > end) return `range ${from}-${to} runs backwards`;
  return { start, end, step };
}

function value(text: string, spec: ScheduleField): number | string {
  if (/^[0-9]{1,2}$/.test(text)) {
    const n = Number(text);
    return n >= spec.min && n <= spec.max ? n : `${text} is outside ${spec.min}-${spec.max}`;
  }
  const index = spec.names?.indexOf(text.toLowerCase()) ?? -1;
  if (index >= 0) return spec.min + index;
  return spec.names ? `"${text}" is not a number (one or two digits) or a name (${spec.names[0]}-${spec.names.at(-1)})` : `"${text}" is not a number (one or two digits)`;
}

function expand({ start, end, step }: Range): number[] {
  const out: number[] = [];
  for (let v = start; v <= end; v += step) out.push(v);
  return out;
}

/** Validates a schedule and time zone the way the freshness check will use them. */
export function validateSchedule(schedule: string, timeZone: string): void {
  const problem = scheduleProblem(schedule);
  try {
    if (problem) throw new Error(problem);
    CronExpressionParser.parse(schedule, { tz: timeZone, currentDate: new Date() }).prev();
  } catch (error) {
    throw new UsageError(`--schedule "${schedule}" with --time-zone ${timeZone} is not a valid cron schedule (${(error as Error).message})`);
  }
}

/**
 * The newest scheduled run that should have finished by now: the last time the schedule
 * fired at or before `now - grace`.
 */
export function lastExpectedRun(freshness: FreshnessConfig, now: Date): Date {
  const before = new Date(now.getTime() - freshness.graceSeconds * 1000);
  return CronExpressionParser.parse(freshness.schedule, { tz: freshness.timeZone, currentDate: before }).prev().toDate();
}

/** Archives are named by their start time, which is at or after the scheduled time (a minute of clock skew allowed). */
export const CLOCK_SKEW_SECONDS = 60;

export interface FreshnessVerdict {
  fresh: boolean;
  expectedSince: Date;
  newest: Date | undefined;
}

export function judgeFreshness(freshness: FreshnessConfig, newest: Date | undefined, now: Date): FreshnessVerdict {
  const expectedSince = lastExpectedRun(freshness, now);
  const fresh = newest !== undefined && newest.getTime() >= expectedSince.getTime() - CLOCK_SKEW_SECONDS * 1000;
  return { fresh, expectedSince, newest };
}

/**
 * When the schedule next expects a backup, given that the newest one started at `newest`: the
 * schedule's first run after that time (clock skew allowed). It is the other side of
 * judgeFreshness: that calls the newest archive stale exactly when `now - grace` has reached
 * this time, so an alert on `time() > due` that must hold for the grace fires when the verify
 * check starts failing.
 */
export function nextDueRun(schedule: Pick<FreshnessConfig, 'schedule' | 'timeZone'>, newest: Date): Date {
  const after = new Date(newest.getTime() + CLOCK_SKEW_SECONDS * 1000);
  return CronExpressionParser.parse(schedule.schedule, { tz: schedule.timeZone, currentDate: after }).next().toDate();
}
