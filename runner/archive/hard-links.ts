import { OperationError, describeSystemError } from '../errors.js';
import { compareWalkOrder, displayName } from './names.js';
import { ExternalSort, type RecordCodec, type SortedRecords } from './sorted-runs.js';

/** Hard-linked paths sorted in memory (a few MB); a source with more is sorted in runs on disk. */
export const LINKS_IN_MEMORY = 50_000;

/** One path of an inode with more than one link, as the source scan met it (seq: walk order). */
interface Sighting {
  inode: string;
  seq: number;
  rel: string;
  size: number;
  dataBytes: number;
}

/** A hard-linked path in walk order: the inode's first path (no `first`), or a later one linking to it. */
interface PlannedPath {
  rel: string;
  inode: string;
  first?: string;
}

export type LinkDecision =
  /** The inode's first path: archive its data. */
  | { kind: 'first' }
  /** A later path of an inode whose first path is archived: a hard link entry to `target`. */
  | { kind: 'link'; target: string }
  /** Not as the scan saw it (created or replaced since): the packer finds its links itself. */
  | { kind: 'unplanned' };

/** Device and inode number: what makes two paths one file. */
export function inodeKey(stat: { dev: bigint; ino: bigint }): string {
  return `${stat.dev}:${stat.ino}`;
}

const FIRST: LinkDecision = { kind: 'first' };
const UNPLANNED: LinkDecision = { kind: 'unplanned' };

/** JSON keeps lossless names exact: a lone surrogate is written as its \u escape. */
const SIGHTING_CODEC: RecordCodec<Sighting> = {
  encode: (s) => Buffer.from(JSON.stringify([s.inode, s.seq, s.rel, s.size, s.dataBytes]), 'utf8'),
  decode: (bytes) => {
    const [inode, seq, rel, size, dataBytes] = JSON.parse(bytes.toString('utf8')) as [string, number, string, number, number];
    return { inode, seq, rel, size, dataBytes };
  },
};

const PLANNED_CODEC: RecordCodec<PlannedPath> = {
  encode: (p) => Buffer.from(JSON.stringify(p.first === undefined ? [p.rel, p.inode] : [p.rel, p.inode, p.first]), 'utf8'),
  decode: (bytes) => {
    const [rel, inode, first] = JSON.parse(bytes.toString('utf8')) as [string, string, string?];
    return first === undefined ? { rel, inode } : { rel, inode, first };
  },
};

const byInodeThenWalk = (a: Sighting, b: Sighting) => (a.inode < b.inode ? -1 : a.inode > b.inode ? 1 : a.seq - b.seq);
const byWalkOrder = (a: PlannedPath, b: PlannedPath) => compareWalkOrder(a.rel, b.rel);

/**
 * Collects the hard-linked regular files of the source during its scan and works out, before
 * the backup starts, which path of each inode comes first in walk order and which later paths
 * link to it. Sorting on disk keeps memory flat however many hard links there are: a volume of
 * hard-linked snapshots or a pnpm store has one for almost every file, and a map of every inode
 * seen (what GNU tar keeps) grew by 250 bytes per inode until its last link was met.
 */
export class HardLinkCollector {
  private readonly sightings: ExternalSort<Sighting>;
  private seq = 0;

  constructor(
    private readonly source: string,
    private readonly inMemory = LINKS_IN_MEMORY,
  ) {
    this.sightings = new ExternalSort(SIGHTING_CODEC, byInodeThenWalk, inMemory, (error) => spillError(source, error));
  }

  /** A regular file with more than one link, in walk order; `inode` is device and inode number. */
  add(inode: string, rel: string, size: number, dataBytes: number): void {
    this.sightings.add({ inode, seq: this.seq++, rel, size, dataBytes });
  }

  /** The plan, and what the later paths add to the scan's counts (they are archived as links, not data). */
  finish(): HardLinkPlan {
    const byInode = this.sightings.finish();
    const planned = new ExternalSort(PLANNED_CODEC, byWalkOrder, this.inMemory, (error) => spillError(this.source, error));
    const later = { paths: 0, bytes: 0, dataBytes: 0 };
    try {
      let first: Sighting | undefined;
      for (const sighting of byInode.records()) {
        if (first?.inode !== sighting.inode) {
          first = sighting;
          planned.add({ rel: sighting.rel, inode: sighting.inode });
          continue;
        }
        planned.add({ rel: sighting.rel, inode: sighting.inode, first: first.rel });
        later.paths++;
        later.bytes += sighting.size;
        later.dataBytes += sighting.dataBytes;
      }
      return new HardLinkPlan(planned.finish(), later);
    } catch (error) {
      planned.close();
      throw error;
    } finally {
      byInode.close();
    }
  }

  close(): void {
    this.sightings.close();
  }
}

/**
 * The scan's hard links, asked in walk order by the packer for each regular file of the source
 * with more than one link. A later path becomes a link only when it is still the inode the scan
 * saw and that inode's first path was archived from that same inode; anything else (a file
 * created, replaced or removed since the scan) is left to the packer, which then archives the
 * data again rather than link to the wrong file.
 */
export class HardLinkPlan {
  private readonly paths: Iterator<PlannedPath>;
  private next: PlannedPath | undefined;
  /** Inodes whose first path was not archived as planned. Only changes since the scan put one here. */
  private readonly broken = new Set<string>();
  private closed = false;

  constructor(
    private readonly sorted: SortedRecords<PlannedPath>,
    /** The later paths of each inode: how many, and their sizes. */
    readonly later: { paths: number; bytes: number; dataBytes: number },
  ) {
    this.paths = sorted.records()[Symbol.iterator]();
    this.advance();
  }

  decide(rel: string, inode: string): LinkDecision {
    while (this.next && compareWalkOrder(this.next.rel, rel) < 0) {
      // A first path the packer never asked about: gone, excluded or no longer hard-linked.
      if (this.next.first === undefined) this.broken.add(this.next.inode);
      this.advance();
    }
    const planned = this.next;
    if (!planned || planned.rel !== rel) return UNPLANNED;
    this.advance();
    if (planned.inode !== inode) {
      if (planned.first === undefined) this.broken.add(planned.inode);
      return UNPLANNED;
    }
    if (planned.first === undefined) return FIRST;
    return this.broken.has(inode) ? UNPLANNED : { kind: 'link', target: planned.first };
  }

  /** The first path of `inode` was not archived after all (it vanished, was replaced or was skipped). */
  firstMissing(inode: string): void {
    this.broken.add(inode);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.next = undefined;
    this.paths.return?.();
    this.sorted.close();
  }

  private advance(): void {
    const step = this.paths.next();
    this.next = step.done ? undefined : step.value;
  }
}

function spillError(source: string, error: unknown): OperationError {
  return new OperationError(
    `cannot sort the hard-linked files of ${displayName(source)} in the temporary directory: ${describeSystemError(error)}; ` +
      'free space there or point TMPDIR at a directory with room (about 150 bytes per hard-linked path)',
    'HARDLINKS_SPILL',
    { cause: error },
  );
}
