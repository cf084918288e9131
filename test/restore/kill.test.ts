import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { recoverInterrupted } from '../../runner/restore/staging.js';
import { cleanEnv, cliPath, ensureBuilt, tool } from '../helpers/cli.js';
import { useTempDirs } from '../helpers/tree.js';
import { cli, controlEntries, describe as describeRun, treeState } from './support.js';

/**
 * SIGKILL in the middle of a replace restore: at random times over the whole run, the moment the
 * staging directory appears, and during the swap (right after its .old directory appears, with a
 * random delay). Afterwards the target is exactly the old tree or exactly the new one once the
 * recovery every restore starts with has run — never a mix — and the next CLI run leaves no
 * control entries behind.
 */

const tempDir = useTempDirs();
const fixtures = useTempDirs('file');

let oldTree: string;
let dest: string;
let archive: string;
let oldState: string;
let newState: string;
let duration: number;

function fill(root: string, prefix: string, count: number, content: (i: number) => string): void {
  for (let i = 0; i < count; i++) fs.writeFileSync(path.join(root, `${prefix}${String(i).padStart(4, '0')}.txt`), content(i));
}

async function freshOldTarget(): Promise<string> {
  const target = await tempDir('target');
  tool('cp', ['-a', `${oldTree}/.`, target]);
  return target;
}

beforeAll(async () => {
  ensureBuilt();
  oldTree = await fixtures('old');
  const newTree = await fixtures('new');
  dest = await fixtures('dest');
  // Many top-level entries on both sides make the swap long enough to be hit.
  fill(oldTree, 'old-', 1000, (i) => `old ${i}\n`);
  fs.mkdirSync(path.join(oldTree, 'shared'));
  fill(path.join(oldTree, 'shared'), 's-', 200, (i) => `old shared ${i}\n`);
  fs.writeFileSync(path.join(oldTree, 'common.txt'), 'old common\n');
  fill(newTree, 'new-', 1000, (i) => `new ${i}\n`);
  fs.mkdirSync(path.join(newTree, 'shared'));
  fill(path.join(newTree, 'shared'), 's-', 300, (i) => `new shared ${i}\n`);
  fs.writeFileSync(path.join(newTree, 'common.txt'), 'new common, longer\n');
  fs.writeFileSync(path.join(newTree, 'big-1.bin'), randomBytes(6 * 1024 * 1024));
  fs.writeFileSync(path.join(newTree, 'big-2.bin'), randomBytes(6 * 1024 * 1024));
  const made = await cli(['backup', '--source', newTree, '--dest', dest, '--compression', 'zstd']);
  expect(made.code, describeRun(made)).toBe(0);
  archive = made.lines.find((l) => l.event === 'backup.done')!.archive as string;

  const calibration = await freshOldTarget();
  oldState = treeState(calibration);
  const t0 = Date.now();
  const run = await cli(['restore', '--dest', dest, '--archive', archive, '--target', calibration, '--no-snapshot']);
  expect(run.code, describeRun(run)).toBe(0);
  duration = Date.now() - t0;
  newState = treeState(calibration);
  expect(newState).not.toBe(oldState);
}, 120_000);

type Trigger = { kind: 'time'; ms: number } | { kind: 'staging' } | { kind: 'journal'; delayMs: number };

/** Starts a restore and SIGKILLs it at the trigger; resolves with whether a journal existed at the kill. */
function restoreAndKill(target: string, trigger: Trigger): Promise<{ killed: boolean; journal: string | false }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, 'restore', '--dest', dest, '--archive', archive, '--target', target, '--no-snapshot', '--log-format', 'json'], {
      env: cleanEnv(),
      stdio: 'ignore',
    });
    let done = false;
    const kill = () => {
      if (done) return;
      done = true;
      child.kill('SIGKILL');
    };
    // The phase the swap was in, from the journal the killed child left in DEST. Read once it has
    // exited: right after kill() it may still run for a moment, long enough to finish the swap.
    const journalLeft = (): string | false => {
      const file = fs.readdirSync(dest).find((n) => /^\.pvc-backup-restore-.*\.journal$/.test(n));
      if (!file) return false;
      try {
        const phase = (JSON.parse(fs.readFileSync(path.join(dest, file), 'utf8')) as { phase: string }).phase;
        return phase === 'extracting' ? false : phase;
      } catch {
        return 'unreadable';
      }
    };
    let watcher: fs.FSWatcher | undefined;
    if (trigger.kind === 'time') setTimeout(kill, trigger.ms);
    else if (trigger.kind === 'staging') {
      watcher = fs.watch(target, (_event, name) => {
        if (name && !done && /^\.pvc-backup-restore-[a-z0-9]+$/.test(name)) kill();
      });
    } else {
      // The swap begins when the run makes its .old directory (its journal in DEST says evacuate right after).
      watcher = fs.watch(target, (_event, name) => {
        if (!name || done || !name.endsWith('.old')) return;
        if (trigger.delayMs === 0) kill();
        else setTimeout(kill, trigger.delayMs);
      });
    }
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      watcher?.close();
      done = true;
      const killed = signal === 'SIGKILL';
      resolve({ killed, journal: killed && journalLeft() });
    });
  });
}

describe('SIGKILL during a replace restore', () => {
  it('leaves exactly the old or the new tree after recovery, and the next run cleans up', async () => {
    const seed = Number(process.env.PVC_RESTORE_SEED ?? 20261122);
    let state = seed;
    const random = () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 2 ** 32;
    };
    const triggers: Trigger[] = [
      ...Array.from({ length: 6 }, (): Trigger => ({ kind: 'time', ms: Math.floor(30 + random() * duration) })),
      { kind: 'staging' },
      { kind: 'staging' },
      ...[0, 0, 1, 2, 4, 8, 15].map((d): Trigger => ({ kind: 'journal', delayMs: Math.floor(d * random() + d / 2) })),
    ];
    const outcomes: string[] = [];
    let midSwap = 0;
    for (const [i, trigger] of triggers.entries()) {
      const target = await freshOldTarget();
      const { killed, journal } = await restoreAndKill(target, trigger);
      if (killed && journal) midSwap++;
      const label = `seed ${seed}, trial ${i} ${JSON.stringify(trigger)} (killed: ${killed}, journal at kill: ${journal})`;
      if (i % 2 === 0) {
        // What the next restore does first, on its own: recovery.
        recoverInterrupted(dest, target);
        const now = treeState(target);
        const verdict = now === oldState ? 'old' : now === newState ? 'new' : 'MIX';
        outcomes.push(`${label}: ${verdict}`);
        expect(verdict, label).not.toBe('MIX');
        expect(controlEntries(target), label).toEqual([]);
        // A swap that had started always completes (the journal rolls forward).
        if (journal) expect(verdict, label).toBe('new');
      } else {
        const next = await cli(['restore', '--dest', dest, '--archive', archive, '--target', target, '--no-snapshot']);
        expect(next.code, `${label}\n${describeRun(next)}`).toBe(0);
        if (killed && journal) expect(next.lines.some((l) => l.event === 'restore.recovered'), label).toBe(true);
        expect(treeState(target), label).toBe(newState);
        expect(controlEntries(target), label).toEqual([]);
        outcomes.push(`${label}: new after the next run`);
      }
    }
    process.stdout.write(`[restore-kill] calibration ${duration} ms\n${outcomes.join('\n')}\n`);
    // The journal triggers really hit the swap.
    expect(midSwap, outcomes.join('\n')).toBeGreaterThanOrEqual(3);
    // 15 restores of 2,300 files each: about 20 s on an idle 2-core machine, several times that under load.
  }, 300_000);
});
