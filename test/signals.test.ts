import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, cliPath, ensureBuilt, jsonLines } from './helpers/cli.js';
import { snapshotTree, useTempDirs } from './helpers/tree.js';

/**
 * SIGTERM, as Kubernetes sends it when a Job is deleted, times out or its node drains: a backup
 * that is mid-run must stop within a few seconds (the chart's grace period is 30 s), exit with
 * a failure status, and leave neither its partial archive nor the lock behind. The big fault
 * injection suite is elsewhere; this is the smoke check for the shipped CLI, once as a plain
 * process and once as PID 1 of its own PID namespace, the way the image's entrypoint runs in a pod.
 */

/** The bar for a pod: SIGTERM to exit within 5 s. */
const DEADLINE_MS = 5_000;
/**
 * A plain process does better: it dies by the signal right after cleaning up instead of waiting
 * for compression jobs still running on the thread pool (several seconds each at zstd -19).
 */
const PROMPT_MS = 2_000;

async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  afterKillMs: number;
  stdout: string;
  stderr: string;
}

/**
 * Starts a backup, waits until it is writing (partial archive and lock on disk, compression jobs in
 * flight), sends SIGTERM to the runner process, and reports how it ended.
 */
async function terminateMidRun(child: ChildProcess, runnerPid: () => number | undefined, dest: string): Promise<Exit> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  try {
    await waitFor(() => {
      const names = fs.readdirSync(dest);
      return names.includes('.pvc-backup.lock') && names.some((n) => n.endsWith('.partial') && fs.statSync(path.join(dest, n)).size > 0);
    }, `a partial archive in ${dest} (stdout: ${stdout} stderr: ${stderr})`);
    await new Promise((r) => setTimeout(r, 300));
    const pid = runnerPid();
    if (pid === undefined) throw new Error('the runner process is gone before SIGTERM');
    const killedAt = Date.now();
    process.kill(pid, 'SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const { code, signal } = await closed;
    clearTimeout(timer);
    return { code, signal, afterKillMs: Date.now() - killedAt, stdout, stderr };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}

function expectStoppedCleanly(exit: Exit, dest: string, deadlineMs: number): void {
  const detail = `exit ${exit.code} signal ${exit.signal} after ${exit.afterKillMs} ms\nstdout:\n${exit.stdout}\nstderr:\n${exit.stderr}`;
  expect(exit.afterKillMs, detail).toBeLessThan(deadlineMs);
  // 143 = 128 + SIGTERM, whether the runner exits with it or dies by the signal.
  expect(exit.code === 143 || (exit.code === null && exit.signal === 'SIGTERM'), detail).toBe(true);
  expect(jsonLines(exit.stdout).at(-1), detail).toMatchObject({ level: 'error', event: 'stopped', signal: 'SIGTERM' });
  // No partial, no lock, no half-written sidecar: the backup directory is as it was.
  expect(fs.readdirSync(dest), detail).toEqual([]);
}

describe('SIGTERM during a backup', () => {
  const tempDir = useTempDirs('file');
  let source: string;
  let sourceState: ReturnType<typeof snapshotTree>;

  beforeAll(async () => {
    ensureBuilt();
    source = await tempDir('signal-source');
    // Incompressible data, so every compression job takes real time.
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(source, `blob-${i}.bin`), randomBytes(16 * 1024 * 1024));
    sourceState = snapshotTree(source);
  });

  it('stops at once, exits 143 and leaves no partial and no lock, even with slow zstd -19 jobs in flight', async () => {
    const dest = await tempDir('signal-dest');
    const child = spawn(process.execPath, [cliPath, 'backup', '--source', source, '--dest', dest, '--compression', 'zstd', '--level', '19'], {
      env: cleanEnv({ PVC_BACKUP_LOG_FORMAT: 'json' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exit = await terminateMidRun(child, () => child.pid, dest);
    expectStoppedCleanly(exit, dest, PROMPT_MS);
    expect(snapshotTree(source)).toEqual(sourceState);
  });

  const pidNamespaces =
    process.getuid?.() === 0 && spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true']).status === 0
      ? undefined
      : 'needs root and unshare --pid (util-linux)';
  if (pidNamespaces) console.warn(`skipping the PID 1 SIGTERM check: ${pidNamespaces}`);

  // As PID 1 the kernel ignores the signal the runner sends itself, so it exits normally, after
  // the thread pool's running jobs finish: within the pod's bar with the chart's default gzip.
  it.skipIf(pidNamespaces !== undefined)('as PID 1 (the container entrypoint) it stops within 5 s the same way', async () => {
    const dest = await tempDir('signal-dest-pid1');
    // unshare forks the runner as PID 1 of a new PID namespace and exits with its status.
    const child = spawn(
      'unshare',
      ['--pid', '--fork', '--kill-child', '--', process.execPath, cliPath, 'backup', '--source', source, '--dest', dest, '--compression', 'gzip', '--level', '9'],
      { env: cleanEnv({ PVC_BACKUP_LOG_FORMAT: 'json' }), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // The runner is unshare's only child; signal it directly, as the kubelet signals PID 1.
    const runnerPid = () => {
      const children = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim();
      return children ? Number(children.split(/\s+/)[0]) : undefined;
    };
    const exit = await terminateMidRun(child, runnerPid, dest);
    expectStoppedCleanly(exit, dest, DEADLINE_MS);
  });
});
