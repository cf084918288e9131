import type { BackupSummary } from '../commands/backup.js';
import type { RestoreSummary } from '../commands/restore.js';
import type { VerifyOutcome } from '../commands/verify.js';
import type { MonitoredCommand, RunnerConfig } from '../config.js';
import { ExitCode } from '../errors.js';
import { humanBytes } from '../log.js';

/**
 * What a run's signals say: one record per run, built once where the CLI sees the command's
 * result or its failure, then sent as metrics, an Event, notifications and a ping.
 */

export type OutcomeStatus = 'succeeded' | 'failed' | 'skipped';

export interface RunOutcome {
  command: MonitoredCommand;
  /** `skipped`: the run had nothing to do (a restore request that already ran). */
  status: OutcomeStatus;
  exitCode: number;
  /** One line: what happened, or why it failed. Never holds a secret or the environment. */
  message: string;
  prefix: string;
  archive?: string;
  startedAt: Date;
  finishedAt: Date;
  /** Uncompressed bytes read (backup) or written (restore). */
  sourceBytes?: number;
  archiveBytes?: number;
  files?: number;
}

/** What a command returned, tagged with the command, as cli.ts dispatches it. */
export type CommandResult =
  | { command: 'backup'; summary: BackupSummary }
  | { command: 'verify'; outcomes: VerifyOutcome[] }
  | { command: 'restore'; summary: RestoreSummary | undefined }
  | { command: 'list' | 'prune' | 'cat' };

interface Times {
  startedAt: Date;
  finishedAt: Date;
}

/** The outcome of a run that returned normally; undefined for commands that report nothing. */
export function succeeded(config: RunnerConfig, result: CommandResult, times: Times): RunOutcome | undefined {
  const base = { status: 'succeeded' as const, exitCode: ExitCode.ok, prefix: config.prefix, ...times };
  switch (result.command) {
    case 'backup': {
      const s = result.summary;
      return {
        ...base,
        command: 'backup',
        archive: s.archive,
        sourceBytes: s.bytesIn,
        archiveBytes: s.bytesOut,
        files: s.files,
        message:
          `backup ${s.archive} complete: ${humanBytes(s.bytesIn)} in ${s.files} files -> ${humanBytes(s.bytesOut)} in ${s.durationSeconds}s` +
          (s.warnings ? `, ${s.warnings} files changed or skipped while reading` : ''),
      };
    }
    case 'verify': {
      const count = result.outcomes.length;
      return { ...base, command: 'verify', message: count === 0 ? `no archives with prefix ${config.prefix} to verify` : `${count} archives verified` };
    }
    case 'restore': {
      const s = result.summary;
      if (!s) return { ...base, command: 'restore', status: 'skipped', message: 'this restore request already ran; nothing restored' };
      return {
        ...base,
        command: 'restore',
        archive: s.archive,
        sourceBytes: s.bytes,
        archiveBytes: s.archiveBytes,
        files: s.files,
        message:
          `restored ${s.archive} (${s.mode}): ${humanBytes(s.bytes)} in ${s.files} files in ${s.durationSeconds}s` +
          (s.snapshot ? `; previous contents saved as ${s.snapshot}` : ''),
      };
    }
    default:
      return undefined;
  }
}

/** The outcome of a run that failed with `message` (the same line the log's `<command>.failed` carries). */
export function failed(command: MonitoredCommand, prefix: string, exitCode: number, message: string, times: Times): RunOutcome {
  return { command, status: 'failed', exitCode, message: oneLine(message), prefix, ...times };
}

/** Keeps a message to one line of at most `max` characters. */
export function oneLine(text: string, max = 1000): string {
  const line = text.replace(/\s*\n\s*/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
