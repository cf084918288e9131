import { COMPRESSIONS, type Compression } from '../config.js';
import type { Logger } from '../log.js';
import { type ArchiveName, archiveFileName, partialName, sidecarNames } from '../store/naming.js';

export interface NameChoice {
  prefix: string;
  compression: Compression;
  /** The archive is age-encrypted (NAME.tar.*.age). */
  encrypted: boolean;
  started: Date;
  /** The newest archive of the prefix in the repository, if any. */
  newest: Pick<ArchiveName, 'name' | 'time' | 'sequence'> | undefined;
  /** Whether a file or object of this name exists (archive, sidecar or partial). */
  taken: (name: string) => boolean;
  log: Logger;
}

/**
 * The run's start time in UTC names the archive, so names sort in creation order. A second run
 * in the same second gets -2, -3, … whatever its compression. If the clock is behind the newest
 * archive of the prefix (it jumped backwards), the new archive takes that archive's time with the
 * next sequence number, with a warning: it must sort as the newest, or keep-last would prune the
 * archive just made and `latest` would restore an older one. The manifest keeps the real time.
 * One rule for the directory and the bucket.
 */
export function pickArchiveName({ prefix, compression, encrypted, started, newest, taken, log }: NameChoice): string {
  const second = new Date(Math.floor(started.getTime() / 1000) * 1000);
  let time = second;
  let sequence = 1;
  if (newest && newest.time.getTime() >= second.getTime()) {
    time = newest.time;
    sequence = newest.sequence + 1;
  }
  for (; ; sequence++) {
    const forms = COMPRESSIONS.flatMap((c) => [false, true].map((e) => archiveFileName(prefix, time, c, sequence, e)));
    if (forms.some((n) => [n, ...sidecarNames(n)].flatMap((f) => [f, partialName(f)]).some(taken))) continue;
    const name = archiveFileName(prefix, time, compression, sequence, encrypted);
    if (newest && newest.time.getTime() > second.getTime()) {
      log.warn(
        'backup.clock-behind',
        `the clock (${started.toISOString()}) is behind the newest archive ${newest.name}; naming this archive ${name} so that it sorts as the newest (its manifest records the real start time)`,
        { newest: newest.name, archive: name, clock: started.toISOString() },
      );
    }
    return name;
  }
}
