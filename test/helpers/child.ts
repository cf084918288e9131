import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach } from 'vitest';
import { repoRoot } from './cli.js';

/**
 * TypeScript scripts run as real child processes (`node --import tsx SCRIPT ARGS`) that speak
 * one JSON object per stdout line with an `event` field. Every child a test starts is killed
 * (SIGKILL, by its own pid) after the test if it is still running.
 */

export interface JsonEvent {
  event: string;
  [field: string]: unknown;
}

export interface JsonChild {
  proc: ChildProcessWithoutNullStreams;
  /** Every event received so far, in order. */
  events: JsonEvent[];
  /** Resolves with the next not yet consumed event whose name is one of `names` (rejects if the child exits first). */
  next(...names: string[]): Promise<JsonEvent>;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  stderr(): string;
}

const running: JsonChild[] = [];
afterEach(() => {
  for (const child of running.splice(0)) if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
});

export interface JsonChildOptions {
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  /** A command that runs the node command line given as its last arguments (e.g. unshare ... sh -c '...; exec "$@"' sh). */
  launcher?: string[];
}

export function startJsonChild(script: string, args: string[], options: JsonChildOptions = {}): JsonChild {
  const node = [process.execPath, '--import', 'tsx', script, ...args];
  const argv = [...(options.launcher ?? []), ...node];
  const proc = spawn(argv[0]!, argv.slice(1), {
    cwd: repoRoot,
    stdio: 'pipe',
    env: options.env ?? process.env,
    uid: options.uid,
    gid: options.gid,
  });
  const events: JsonEvent[] = [];
  let consumed = 0;
  let stderr = '';
  let ended = false;
  const waiters: { names: string[]; resolve: (e: JsonEvent) => void; reject: (e: Error) => void }[] = [];
  const deliver = (): void => {
    for (let w = 0; w < waiters.length; w++) {
      const waiter = waiters[w]!;
      const index = events.findIndex((e, i) => i >= consumed && waiter.names.includes(e.event));
      if (index >= 0) {
        consumed = index + 1;
        waiters.splice(w--, 1);
        waiter.resolve(events[index]!);
      } else if (ended) {
        waiters.splice(w--, 1);
        waiter.reject(new Error(`child ${script} exited (code ${proc.exitCode}, signal ${proc.signalCode}) before "${waiter.names.join('|')}"; stderr:\n${stderr}`));
      }
    }
  };
  proc.stderr.on('data', (d) => (stderr += String(d)));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    try {
      events.push(JSON.parse(line) as JsonEvent);
    } catch {
      events.push({ event: 'text', line });
    }
    deliver();
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.on('close', (code) => {
      ended = true;
      deliver();
      resolve(code);
    });
  });
  const child: JsonChild = {
    proc,
    events,
    next: (...names) =>
      new Promise((resolve, reject) => {
        waiters.push({ names, resolve, reject });
        deliver();
      }),
    exited,
    stderr: () => stderr,
  };
  running.push(child);
  return child;
}
