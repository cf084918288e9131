import fs from 'node:fs';
import os from 'node:os';

/** Niceness of the helper threads: the main thread keeps its own (0), so it wins a contended core. */
const HELPER_NICENESS = 10;

/**
 * The streaming commands run a pipeline whose producer is the main thread (walking, reading,
 * hashing, parsing tar) and whose consumers are libuv's pool threads (zstd, gzip) and V8's
 * helpers (garbage collection). On two cores those threads outnumber the cores, and the kernel
 * shares time evenly, so the main thread gets about two thirds of a core and every consumer ends
 * up waiting for it. A higher niceness for the helper threads lets the main thread run whenever it
 * has work, and the pool threads take the rest (measured on the medium bench set, zstd backup:
 * 7.9–9.0 s → 6.2–6.9 s). Linux only (per-thread priorities); raising one's own niceness needs no
 * privilege. Starts the pool first: libuv creates its threads on the first job.
 */
export async function favourMainThread(): Promise<void> {
  if (process.platform !== 'linux') return;
  await fs.promises.access('/').catch(() => undefined);
  let tasks: string[];
  try {
    tasks = fs.readdirSync('/proc/self/task');
  } catch {
    return;
  }
  for (const task of tasks) {
    if (task === String(process.pid)) continue;
    try {
      const name = fs.readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim();
      if (name === 'libuv-worker' || name === 'V8Worker') os.setPriority(Number(task), HELPER_NICENESS);
    } catch {
      // The thread is gone, or priorities cannot be changed here: run as is.
    }
  }
}
