/**
 * A separate process that takes the directory lock, for the contention tests.
 *   lock-child.ts DIR hold STALE_SECONDS   take the lock, print "acquired", hold it until stdin closes
 *   lock-child.ts DIR try STALE_SECONDS    take the lock and release it at once
 *   lock-child.ts DIR race STALE_SECONDS HOLD_MS   wait for "go" on stdin, try, hold HOLD_MS, release
 * Prints one JSON line; exits with the runner's exit code for errors (4 when the lock is held).
 */
import { exitCodeOf } from '../../runner/errors.js';
import { acquireLock } from '../../runner/store/lock.js';

const [dir, mode, stale, holdMs] = process.argv.slice(2);
const staleSeconds = Number(stale ?? 600);

function say(value: Record<string, unknown>) {
  process.stdout.write(JSON.stringify({ pid: process.pid, ...value }) + '\n');
}

async function waitForStdin(predicate: (text: string) => boolean): Promise<void> {
  let text = '';
  await new Promise<void>((resolve) => {
    process.stdin.on('data', (chunk) => {
      text += String(chunk);
      if (predicate(text)) resolve();
    });
    process.stdin.on('end', () => resolve());
  });
}

async function main() {
  if (mode === 'race') {
    say({ event: 'ready' });
    await waitForStdin((t) => t.includes('go'));
  }
  const warnings: string[] = [];
  const lock = await acquireLock(dir!, { command: `child-${mode}`, staleSeconds, onWarning: (m) => warnings.push(m) });
  say({ event: 'acquired', warnings });
  if (mode === 'hold') await waitForStdin(() => false);
  if (mode === 'race') await new Promise((r) => setTimeout(r, Number(holdMs ?? 500)));
  await lock.release();
  say({ event: 'released' });
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    say({ event: 'error', name: (error as Error).name, message: (error as Error).message });
    process.exit(exitCodeOf(error));
  },
);
