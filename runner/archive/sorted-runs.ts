import fs from 'node:fs';
import { collectAllGarbage } from '../memory.js';
import { openAnonymousFile, readExactly, writeAll } from './fd-io.js';

/** How a record becomes bytes in a run and back. */
export interface RecordCodec<T> {
  encode(record: T): Buffer;
  decode(bytes: Buffer): T;
}

interface Run {
  start: number;
  end: number;
}

/** A record on disk: u32 byte length, then the codec's bytes. */
const HEADER = 4;
const WRITE_BUFFER = 1024 * 1024;
/** Each run's read window while merging; a record larger than it is read on its own. */
const RUN_WINDOW = 64 * 1024;

/**
 * Sorted runs of records in one unlinked temporary file (it disappears with the descriptor,
 * however the process ends), merged back into one sorted sequence: the disk half of every
 * external sort here, so a sort's memory is one run whatever the number of records.
 */
export class SortedRunFile<T> {
  private readonly fd: number;
  private readonly runs: Run[] = [];
  private readonly buffer = Buffer.allocUnsafe(WRITE_BUFFER);
  private filled = 0;
  private offset = 0;
  private closed = false;

  constructor(
    private readonly codec: RecordCodec<T>,
    private readonly compare: (a: T, b: T) => number,
  ) {
    this.fd = openAnonymousFile();
  }

  get runCount(): number {
    return this.runs.length;
  }

  /** Appends one run; `sorted` must already be in order. */
  writeRun(sorted: Iterable<T>): void {
    const start = this.offset + this.filled;
    for (const record of sorted) {
      const bytes = this.codec.encode(record);
      if (this.filled + HEADER + bytes.length > this.buffer.length) this.flush();
      if (HEADER + bytes.length > this.buffer.length) {
        const header = Buffer.alloc(HEADER);
        header.writeUInt32LE(bytes.length);
        writeAll(this.fd, Buffer.concat([header, bytes]), this.offset);
        this.offset += HEADER + bytes.length;
        continue;
      }
      this.buffer.writeUInt32LE(bytes.length, this.filled);
      bytes.copy(this.buffer, this.filled + HEADER);
      this.filled += HEADER + bytes.length;
    }
    this.flush();
    if (this.offset > start) this.runs.push({ start, end: this.offset });
  }

  /** Every record of every run, in order (a k-way merge through a binary heap); may be read more than once. */
  *merged(): Generator<T> {
    const heap = this.runs.map((run) => new RunReader(this.fd, run, this.codec));
    const less = (i: number, j: number) => this.compare(heap[i]!.current!, heap[j]!.current!) < 0;
    const siftDown = (i: number) => {
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && less(left, smallest)) smallest = left;
        if (right < heap.length && less(right, smallest)) smallest = right;
        if (smallest === i) return;
        [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
        i = smallest;
      }
    };
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(i);
    while (heap.length > 0) {
      const top = heap[0]!;
      yield top.current!;
      if (!top.advance()) {
        const last = heap.pop()!;
        if (heap.length === 0) return;
        heap[0] = last;
      }
      siftDown(0);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  private flush(): void {
    writeAll(this.fd, this.buffer.subarray(0, this.filled), this.offset);
    this.offset += this.filled;
    this.filled = 0;
  }
}

/** One run's records in order, through a small window; a run is never empty. */
class RunReader<T> {
  current: T | undefined;
  private readonly window = Buffer.allocUnsafe(RUN_WINDOW);
  private windowStart: number;
  private windowEnd: number;
  private position: number;

  constructor(
    private readonly fd: number,
    private readonly run: Run,
    private readonly codec: RecordCodec<T>,
  ) {
    this.position = run.start;
    this.windowStart = this.windowEnd = run.start;
    this.advance();
  }

  /** Moves to the next record; false at the end of the run. */
  advance(): boolean {
    if (this.position >= this.run.end) {
      this.current = undefined;
      return false;
    }
    const length = this.bytesAt(this.position, HEADER).readUInt32LE(0);
    this.current = this.codec.decode(this.bytesAt(this.position + HEADER, length));
    this.position += HEADER + length;
    return true;
  }

  /** `length` bytes at file offset `at`: from the window, refilled when they are not all in it. */
  private bytesAt(at: number, length: number): Buffer {
    if (length > this.window.length) {
      const own = Buffer.allocUnsafe(length);
      readExactly(this.fd, own, length, at);
      return own;
    }
    if (at < this.windowStart || at + length > this.windowEnd) {
      const size = Math.min(this.window.length, this.run.end - at);
      readExactly(this.fd, this.window, size, at);
      this.windowStart = at;
      this.windowEnd = at + size;
    }
    return this.window.subarray(at - this.windowStart, at - this.windowStart + length);
  }
}

/** The sorted records of an ExternalSort: read them (more than once if need be), then close. */
export interface SortedRecords<T> {
  records(): Iterable<T>;
  close(): void;
}

/**
 * Sorts any number of records in bounded memory: up to `inMemory` of them are sorted in memory,
 * and beyond that each batch of that size becomes a sorted run in a SortedRunFile. A failure to
 * write a run is handed to `spillError`, which names what was being sorted and what to do.
 */
export class ExternalSort<T> {
  private batch: T[] = [];
  private spill: SortedRunFile<T> | undefined;

  constructor(
    private readonly codec: RecordCodec<T>,
    private readonly compare: (a: T, b: T) => number,
    private readonly inMemory: number,
    private readonly spillError: (error: unknown) => Error = (error) => error as Error,
  ) {}

  add(record: T): void {
    this.batch.push(record);
    if (this.batch.length >= this.inMemory) this.writeRun();
  }

  /** Ends the adding; the records come back in order. */
  finish(): SortedRecords<T> {
    if (!this.spill) {
      const sorted = this.batch.sort(this.compare);
      this.batch = [];
      return { records: () => sorted, close: () => sorted.splice(0) };
    }
    this.writeRun();
    const spill = this.spill;
    return { records: () => spill.merged(), close: () => spill.close() };
  }

  /** Drops everything (a run that fails before finish). */
  close(): void {
    this.batch = [];
    this.spill?.close();
  }

  private writeRun(): void {
    try {
      this.spill ??= new SortedRunFile(this.codec, this.compare);
      this.spill.writeRun(this.batch.sort(this.compare));
    } catch (error) {
      this.close();
      throw this.spillError(error);
    }
    this.batch = [];
    // The batch lived long enough to reach the old generation, which the runner leaves to its
    // own collections (memory.ts).
    collectAllGarbage();
  }
}
