import type { LogFormat } from './config.js';

export type Level = 'info' | 'warn' | 'error';
export type Fields = Record<string, unknown>;

/** One line per event on stdout: JSON for machines (the image default), text for people. */
export interface Logger {
  info(event: string, message: string, fields?: Fields): void;
  warn(event: string, message: string, fields?: Fields): void;
  error(event: string, message: string, fields?: Fields): void;
}

function textValue(value: unknown): string {
  const s = typeof value === 'string' ? value : JSON.stringify(value);
  return /[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s;
}

export function formatLine(format: LogFormat, level: Level, event: string, message: string, fields: Fields = {}, now = new Date()): string {
  const time = now.toISOString();
  if (format === 'json') {
    // A field named like one of the line's own keys must not overwrite it.
    const { time: _time, level: _level, event: _event, msg: _msg, ...rest } = fields;
    return JSON.stringify({ time, level, event, msg: message, ...rest });
  }
  const extras = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${textValue(v)}`)
    .join(' ');
  return `${time} ${level.toUpperCase().padEnd(5)} ${message}${extras ? `  ${extras}` : ''}`;
}

export function createLogger(format: LogFormat, write: (line: string) => void = (l) => process.stdout.write(l + '\n')): Logger {
  const emit = (level: Level) => (event: string, message: string, fields?: Fields) => write(formatLine(format, level, event, message, fields));
  return { info: emit('info'), warn: emit('warn'), error: emit('error') };
}

/** A logger that keeps lines in memory, for tests and for nested runs whose lines are re-emitted. */
export function memoryLogger(): Logger & { lines: { level: Level; event: string; message: string; fields?: Fields }[] } {
  const lines: { level: Level; event: string; message: string; fields?: Fields }[] = [];
  const push = (level: Level) => (event: string, message: string, fields?: Fields) => lines.push({ level, event, message, fields });
  return { lines, info: push('info'), warn: push('warn'), error: push('error') };
}

/** `1 file`, `2 files`, `1 entry`, `3 entries`: a number with its noun in the right number. */
export function count(n: number, noun: string): string {
  if (n === 1) return `1 ${noun}`;
  const plural = /[^aeiou]y$/.test(noun) ? `${noun.slice(0, -1)}ies` : `${noun}s`;
  return `${n} ${plural}`;
}

export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/**
 * Emits a progress line at most every `intervalSeconds` while work advances, and at least
 * that often while it runs (a stalled run still says so).
 */
export class ProgressReporter {
  private timer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();

  constructor(
    private readonly log: Logger,
    private readonly event: string,
    private readonly intervalSeconds: number,
    private readonly snapshot: () => { bytes: number; files: number; message?: string },
  ) {}

  start(): this {
    this.timer = setInterval(() => this.report(), this.intervalSeconds * 1000);
    this.timer.unref();
    return this;
  }

  report(): void {
    const { bytes, files, message } = this.snapshot();
    const seconds = (Date.now() - this.started) / 1000;
    const rate = seconds > 0 ? bytes / seconds : 0;
    this.log.info(this.event, message ?? `${humanBytes(bytes)} in ${count(files, 'file')}, ${humanBytes(rate)}/s`, {
      bytes,
      files,
      bytesPerSecond: Math.round(rate),
      elapsedSeconds: Math.round(seconds),
    });
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
