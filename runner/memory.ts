import v8 from 'node:v8';
import vm from 'node:vm';
import { rawArgsCarrier } from './args.js';

/**
 * Keeps peak memory flat while gigabytes stream through. zlib hands out a fresh buffer for
 * every piece of output, and V8 only collects dead buffers when its small JS heap fills up or
 * external memory has grown by tens of MiB, so garbage alone would push RSS far above what the
 * data in flight needs. A young-generation collection every few dozen MiB is cheap (the JS heap
 * here is a few MiB) and frees those buffers, whose lives are short.
 */
let collect: ((options: { type: 'minor' | 'major' }) => void) | undefined;

function collector() {
  if (!collect) {
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as typeof collect;
  }
  return collect!;
}

/**
 * With V8's own full collections held back (V8_FLAGS below), these two do the work: measured on
 * 1 GiB, young every 8 MiB and full every 32 MiB gave the lowest peak RSS of the settings that
 * kept verify at its fastest (16/64: +15–20 MiB; 8/16: 5–10 % slower).
 */
const EVERY_BYTES = 8 * 1024 * 1024;
/** Buffers in flight across awaits survive young collections; a full one every this many bytes frees them. */
const FULL_EVERY_BYTES = 32 * 1024 * 1024;
/**
 * Per-entry work (names, stats, headers, promises of a read-ahead window) leaves small objects
 * that often live just long enough to be promoted to the old generation, which V8 lets grow by
 * hundreds of MiB before it collects it. A full collection every this many entries keeps the
 * heap at what is really live (a few MiB); it costs a few milliseconds. With V8's own full
 * collections held back, a restore of tiny files (a helper request, promise and path each)
 * needs it this often (measured at 300,000 files: peak RSS 174 MB at every 25,000, 131 MB at
 * every 5,000, as fast).
 */
const EVERY_ENTRIES = 5_000;

let growthLimited = false;

/**
 * V8 doubles its young generation (up to 3 × 16 MiB per semi-space) under a high allocation
 * rate and keeps it committed; a stream of per-entry objects is such a rate. A growth factor of
 * 1 keeps the young generation at its initial size (measured: peak RSS of a 300,000-file backup
 * 273 → 165 MiB, no slower). This V8 flag is read when the space would grow, so setting it at
 * run time works (unlike --max-semi-space-size).
 */
export function limitYoungGeneration(): void {
  if (growthLimited) return;
  growthLimited = true;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * Call with the bytes (and entries) just processed; collects young garbage every EVERY_BYTES, all
 * of it every EVERY_ENTRIES and every FULL_EVERY_BYTES (of kept bytes only, when `fullByBytes`
 * is false).
 */
export class GarbageGovernor {
  private sinceLast = 0;
  private sinceFull = 0;
  private entriesSince = 0;
  private readonly fullByBytes: boolean;

  constructor(
    /** Bytes of fresh buffers the stream leaves behind per byte processed (a codec's own buffers count too). */
    private readonly garbagePerByte = 1,
    /**
     * `fullByBytes: false` for a stream whose buffers die within the step that made them (a read
     * that only parses and hashes): young collections free them all, and the full ones by bytes
     * only cost time (measured: verify of the medium bench set 0.15–0.4 s faster, peak RSS equal).
     */
    options: { fullByBytes?: boolean } = {},
  ) {
    this.fullByBytes = options.fullByBytes !== false;
    limitYoungGeneration();
  }

  /** `keptBytes`: bytes just copied into buffers that live across awaits; they always count toward a full collection. */
  processed(bytes: number, entries = 0, keptBytes = 0): void {
    const garbage = bytes * this.garbagePerByte + keptBytes;
    this.sinceLast += garbage;
    this.sinceFull += this.fullByBytes ? garbage : keptBytes;
    this.entriesSince += entries;
    if (this.entriesSince >= EVERY_ENTRIES || this.sinceFull >= FULL_EVERY_BYTES) {
      this.entriesSince = 0;
      this.sinceLast = 0;
      this.sinceFull = 0;
      collector()({ type: 'major' });
    } else if (this.sinceLast >= EVERY_BYTES) {
      this.sinceLast = 0;
      collector()({ type: 'minor' });
    }
  }
}

/** A full collection, between phases (after writing, before reading the archive back). */
export function collectAllGarbage(): void {
  collector()({ type: 'major' });
}

/**
 * Allocations from this size on are mapped on their own, and returned to the system when freed.
 * zlib's 512 KiB output pieces and the 1 MiB reads stay below it: mapping each of them afresh
 * costs a page fault per 4 KiB (measured: 0.4 million faults and 0.7 s of system time per GiB
 * verified at 128 KiB), and the heap reuses their blocks at no cost in peak RSS.
 */
const MMAP_THRESHOLD = 4 * 1024 * 1024;

/**
 * V8 sets its old-generation limit from the live heap, a few MiB here, so close that it starts
 * incremental marking again and again (measured: 60–70 full collections per GiB, a third of the
 * main thread's time in verify). A 64 MiB starting limit leaves the collections to the governor
 * above, which keeps RSS flat on its own.
 */
const V8_FLAGS = ['--initial-old-space-size=64'];

/**
 * glibc's malloc raises its mmap threshold every time a large block is freed (up to 32 MiB),
 * so the 1–4 MiB buffers a stream churns through end up in the main heap, which keeps their
 * pages after they are freed: measured 15–30 MiB of peak RSS on backup, verify and restore. A
 * fixed threshold (MALLOC_MMAP_THRESHOLD_) keeps that bounded, but glibc reads it only when
 * the process starts, as V8 does its heap flags: so the process replaces itself once (execve:
 * same pid, same descriptors, no child to forward signals to), before it has done anything. A
 * threshold already set in the environment is left alone, and so is the process.
 */
export function tuneRuntimeOnce(): void {
  if (process.platform !== 'linux' || process.env.MALLOC_MMAP_THRESHOLD_ !== undefined || typeof process.execve !== 'function') return;
  const name = (flag: string) => flag.split('=')[0];
  const flags = V8_FLAGS.filter((flag) => !process.execArgv.some((given) => name(given) === name(flag)));
  try {
    process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)], {
      ...process.env,
      MALLOC_MMAP_THRESHOLD_: String(MMAP_THRESHOLD),
      ...rawArgsCarrier(),
    });
  } catch {
    // Not possible here (seccomp, …): run as is.
  }
}
