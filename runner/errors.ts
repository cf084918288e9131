import util from 'node:util';

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

/**
 * The C library's texts of the errors a file operation can meet, by errno name. Some Node calls
 * (the recursive fs.rmSync of Node 23+) report only this text, with an empty `code`.
 */
const STRERROR: Record<string, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  EXDEV: 'Invalid cross-device link',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  EMFILE: 'Too many open files',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  ENAMETOOLONG: 'File name too long',
  ENOTEMPTY: 'Directory not empty',
  ELOOP: 'Too many levels of symbolic links',
  EDQUOT: 'Disk quota exceeded',
  ESTALE: 'Stale file handle',
};

/**
 * The errno name of a Node system error (`EBUSY`, `ENOSPC`, …), also when Node left `code`
 * empty; undefined for errors that are not system errors.
 */
export function systemErrorCode(error: unknown): string | undefined {
  const e = error as NodeJS.ErrnoException;
  if (!e || typeof e !== 'object') return undefined;
  if (typeof e.code === 'string' && e.code !== '') return e.code;
  const message = typeof e.message === 'string' ? e.message : '';
  for (const [code, text] of Object.entries(STRERROR)) if (message.includes(text)) return code;
  if (typeof e.errno === 'number' && e.errno < 0) {
    try {
      const name = util.getSystemErrorName(e.errno);
      if (name && name !== 'UNKNOWN') return name;
    } catch {
      // not a known errno
    }
  }
  return typeof e.code === 'string' || typeof e.errno === 'number' ? 'EUNKNOWN' : undefined;
}

/** Plain words for the errors an operator meets; the rest keep the system's own text. */
const PLAIN: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ENOENT: 'no such file or directory',
  EBUSY: 'device or resource busy (a mount point, or a file in use)',
  ENOTEMPTY: 'directory not empty',
  EXDEV: 'crosses a mount point (cross-device link)',
  ELOOP: 'too many levels of symbolic links',
  EIO: 'input/output error (the disk or the network storage failed)',
};

/**
 * A one-line description of an unexpected Node error that tells the operator what happened;
 * never empty, and never without the errno name when the error has one.
 */
export function describeSystemError(error: unknown): string {
  const code = systemErrorCode(error);
  const e = error as NodeJS.ErrnoException;
  if (code !== undefined) {
    const where = e.path ? ` (${e.path})` : '';
    const plain = PLAIN[code];
    if (plain) return `${plain}${where}`;
    // Node's own text starts with the code ("EINVAL: invalid argument, open '…'"); a text
    // without it (or an empty one) gets the code put in front.
    const text = typeof e.message === 'string' ? e.message.replace(/^[\s,]+/, '').trim() : '';
    if (text.startsWith(code)) return text;
    return `${code}${text ? `: ${text}` : where}`;
  }
  const text = error instanceof Error ? error.message : String(error);
  return text.trim() === '' ? `unexpected ${error instanceof Error ? error.name : typeof error} without a message` : text;
}

/** The `code` field of a failure's log line: the runner's own code, else the errno name, else UNEXPECTED. */
export function errorCodeOf(error: unknown): string {
  if (error instanceof RunnerError) return error.code;
  return systemErrorCode(error) ?? 'UNEXPECTED';
}
