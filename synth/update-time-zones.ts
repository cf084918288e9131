import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { validateSchedule } from '../runner/freshness.js';

/**
 * `npx tsx synth/update-time-zones.ts [tzdata.zi]`: rewrites synth/time-zones.txt, the time zone
 * names the chart accepts for backup.timeZone. They are the names of the IANA tz database
 * (zones and links, as Go's time.LoadLocation, which validates a CronJob's timeZone, knows them)
 * that the runner's freshness check also accepts. Run it when the tz database or Node.js changes;
 * npm run synth copies the list into the chart, and test/synth/schedule.test.ts checks it.
 */
export const TIME_ZONES_FILE = fileURLToPath(new URL('time-zones.txt', import.meta.url));

/** Zone and link names of a tzdata.zi file (`Z NAME ...`, `L TARGET NAME`). */
export function tzdataNames(text: string): string[] {
  const names = text.split('\n').flatMap((line) => {
    const words = line.split(/\s+/);
    if (words[0] === 'Z') return [words[1]!];
    if (words[0] === 'L') return [words[2]!];
    return [];
  });
  return [...new Set(names)].sort();
}

export function runnerAccepts(timeZone: string): boolean {
  try {
    validateSchedule('0 0 * * *', timeZone);
    return true;
  } catch {
    return false;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const source = process.argv[2] ?? '/usr/share/zoneinfo/tzdata.zi';
  const names = tzdataNames(readFileSync(source, 'utf8')).filter(runnerAccepts);
  writeFileSync(TIME_ZONES_FILE, names.join('\n') + '\n');
  console.log(`wrote ${names.length} time zone names to ${TIME_ZONES_FILE}`);
}
