import fs from 'node:fs';
import { OperationError, describeSystemError } from '../errors.js';
import { collectAllGarbage } from '../memory.js';
import { compareWalkOrder, decodeName, displayName } from './names.js';
import { type RecordCodec, SortedRunFile } from './sorted-runs.js';

/** Names one listing holds in memory (a few MB); a directory with more is sorted in runs on disk. */
export const NAMES_IN_MEMORY = 50_000;

/** Directory entries fetched per read system call. */
const ENTRIES_PER_READ = 256;

/** A name in a run: the lossless string as UTF-16LE, which keeps lone surrogates. */
const NAME_CODEC: RecordCodec<string> = {
  encode: (name) => Buffer.from(name, 'utf16le'),
  decode: (bytes) => bytes.toString('utf16le'),
};

/**
 * The names of one directory, sorted by UTF-16 code units (the walk order of names.ts), as
 * lossless strings. The directory is read completely by `read`, so errors come from there and
 * later changes to the directory do not change the listing: callers may move or delete entries
 * while they go through it. Up to `namesInMemory` names are sorted in memory; a larger directory
 * (one million mails or thumbnails in one folder) is written in sorted runs to an unlinked
 * temporary file and merged while it is read, so memory stays flat in the size of a directory.
 */
export class NameListing implements Iterable<string> {
  private constructor(
    private readonly inMemory: string[] | undefined,
    private readonly spill: SortedRunFile<string> | undefined,
  ) {}

  static read(dir: Buffer | string, namesInMemory = NAMES_IN_MEMORY): NameListing {
    // Names are read as strings, the fast path; Node turns bytes that are not UTF-8 into
    // U+FFFD, and then the listing is read again as bytes.
    return NameListing.readAs(dir, namesInMemory, false) ?? NameListing.readAs(dir, namesInMemory, true)!;
  }

  /** A listing, or undefined when reading names as strings met a name that is not UTF-8. */
  private static readAs(dir: Buffer | string, namesInMemory: number, asBytes: boolean): NameListing | undefined {
    // Node takes 'buffer' here (the names come as Buffers), though its types do not say so.
    const encoding = (asBytes ? 'buffer' : 'utf8') as BufferEncoding;
    const handle = fs.opendirSync(dir, { bufferSize: ENTRIES_PER_READ, encoding });
    let spill: SortedRunFile<string> | undefined;
    try {
      let chunk: string[] = [];
      for (let entry = handle.readSync(); entry !== null; entry = handle.readSync()) {
        const name = asBytes ? decodeName(entry.name as unknown as Buffer) : entry.name;
        if (!asBytes && name.includes('\ufffd')) {
          spill?.close();
          return undefined;
        }
        chunk.push(name);
        if (chunk.length >= namesInMemory) {
          spill = spillRun(dir, spill, chunk.sort());
          chunk = [];
          // The run's names lived long enough to reach the old generation, which the runner
          // leaves to its own collections (memory.ts): without this, a million names held
          // about 50 MiB of garbage at a time.
          collectAllGarbage();
        }
      }
      chunk.sort();
      if (!spill) return new NameListing(chunk, undefined);
      return new NameListing(undefined, spillRun(dir, spill, chunk));
    } catch (error) {
      spill?.close();
      throw error;
    } finally {
      handle.closeSync();
    }
  }

  /** How many sorted runs are on disk (0: the listing is in memory). */
  get runsOnDisk(): number {
    return this.spill?.runCount ?? 0;
  }

  *[Symbol.iterator](): Iterator<string> {
    if (this.inMemory) {
      yield* this.inMemory;
      return;
    }
    yield* this.spill!.merged();
  }

  close(): void {
    this.spill?.close();
  }
}

/** Every name of a directory, sorted; the listing is released when the loop ends, however it ends. */
export function* sortedNames(dir: Buffer | string): Generator<string> {
  const listing = NameListing.read(dir);
  try {
    yield* listing;
  } finally {
    listing.close();
  }
}

/** Writes one sorted run, to a new run file on the first call; any failure is the one spill error. */
function spillRun(dir: Buffer | string, spill: SortedRunFile<string> | undefined, sorted: readonly string[]): SortedRunFile<string> {
  try {
    // The in-memory sort and this merge agree: for names (no '/') the walk order is code-unit order.
    spill ??= new SortedRunFile(NAME_CODEC, compareWalkOrder);
    spill.writeRun(sorted);
    return spill;
  } catch (error) {
    spill?.close();
    throw spillError(dir, error);
  }
}

function spillError(dir: Buffer | string, error: unknown): OperationError {
  const name = displayName(typeof dir === 'string' ? dir : decodeName(dir));
  return new OperationError(
    `cannot sort the names of the very large directory ${name} in the temporary directory: ${describeSystemError(error)}; ` +
      'free space there or point TMPDIR at a directory with room (about 60 bytes per name)',
    'LISTING_SPILL',
    { cause: error },
  );
}
