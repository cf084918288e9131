/** Exit codes are part of the public contract (README, "Exit codes"). */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  integrity: 3,
  locked: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error the runner expects and reports in one line, with the exit code it maps to. */
export class RunnerError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, bad values, missing directories: exit 2, nothing written. */
export class UsageError extends RunnerError {
  constructor(message: string, code = 'USAGE') {
    super(message, ExitCode.usage, code);
  }
}

/** The operation itself failed (I/O, permissions, out of space): exit 1. */
export class OperationError extends RunnerError {
  constructor(message: string, code = 'FAILED', options?: { cause?: unknown }) {
    super(message, ExitCode.failed, code, options);
  }
}

/** Checksum mismatch, corrupt or truncated archive, manifest disagreement, unsafe entry: exit 3. */
export class IntegrityError extends RunnerError {
  constructor(message: string, code = 'INTEGRITY') {
    super(message, ExitCode.integrity, code);
  }
}

/** Another run holds the lock on the backup directory: exit 4. */
export class LockHeldError extends RunnerError {
  constructor(message: string) {
    super(message, ExitCode.locked, 'LOCKED');
  }
}

/** Maps any thrown value to an exit code; unexpected errors count as operation failures. */
export function exitCodeOf(error: unknown): ExitCode {
  return error instanceof RunnerError ? error.exitCode : ExitCode.failed;
}

/** A one-line description of an unexpected Node error that tells the operator what happened. */
export function describeSystemError(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  if (e && typeof e === 'object' && typeof e.code === 'string') {
    const where = e.path ? ` (${e.path})` : '';
    switch (e.code) {
      case 'ENOSPC':
        return `no space left on device${where}`;
      case 'EACCES':
      case 'EPERM':
        return `permission denied${where}`;
      case 'EROFS':
        return `read-only file system${where}`;
      case 'ENOENT':
        return `no such file or directory${where}`;
      default:
        return `${e.message}`;
    }
  }
  return error instanceof Error ? error.message : String(error);
}
