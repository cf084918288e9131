import { CronExpressionParser } from 'cron-parser';
import type { FreshnessConfig } from './config.js';
import { UsageError } from './errors.js';

/** Validates a schedule and time zone the way the freshness check will use them. */
export function validateSchedule(schedule: string, timeZone: string): void {
  try {
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
