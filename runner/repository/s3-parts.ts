/**
 * Part sizes for a multipart upload of a stream whose length is unknown in advance.
 *
 * Every part is complete in the temporary directory before it is sent (its Content-MD5 must be
 * known before the first byte goes out; s3-spool.ts), so the part size is the disk space that
 * one part in flight costs, and `maxParts × part size` is the largest archive an upload can take.
 *
 * The plan covers a capacity of twice the size hint (the source's size at the start: an upper
 * estimate of the compressed archive, with room for a source that grows while it is read), or
 * 500 GiB without a hint. Parts grow in three steps so that small archives use small parts:
 *
 *   first 10 % of the parts:  capacity / maxParts / 8   (at least 8 MiB)
 *   next 10 %:                capacity / maxParts / 2
 *   the remaining 80 %:       whatever makes the plan reach the capacity
 *
 * With the default 10,000 parts and no hint that is 8 MiB parts up to 7.8 GiB, 26 MiB up to
 * 33 GiB and 60 MiB parts up to 502 GiB; with a hint every archive up to 39 GiB uses 8 MiB parts.
 * With a store limit of 1,000 parts and no hint: 64, 256 and 600 MiB.
 */

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Smallest part we send (S3's minimum for all but the last part is 5 MiB). */
export const MIN_PART_BYTES = 8 * MiB;
/** S3's largest part. */
export const MAX_PART_BYTES = 5 * GiB;
/** What a plan must hold when nothing is known about the archive's size. */
export const DEFAULT_CAPACITY_BYTES = 500 * GiB;
/** Parts in flight are limited so that their files in the temporary directory stay within about this much. */
export const PART_SPOOL_BYTES = 128 * MiB;
export const MAX_PARTS_IN_FLIGHT = 4;

export interface PartPlan {
  readonly maxParts: number;
  /** The largest archive the plan can take. */
  readonly capacity: number;
  /** Size of part `partNumber` (1-based). */
  size(partNumber: number): number;
  /** How many parts of this size may be uploading at once (bounded disk use). */
  inFlight(partSize: number): number;
}

function ceilMiB(bytes: number): number {
  return Math.ceil(bytes / MiB) * MiB;
}

export interface PlanOptions {
  /** Expected size in bytes (an upper estimate); the plan covers twice this. */
  sizeHint?: number;
  /** For tests: the capacity to plan for instead of the one derived from the hint. */
  capacity?: number;
  /** For tests: a smaller minimum part (S3 itself refuses parts below 5 MiB but the last). */
  minPartBytes?: number;
}

export function planParts(maxParts: number, options: PlanOptions = {}): PartPlan {
  if (!Number.isInteger(maxParts) || maxParts < 1) throw new RangeError(`maxParts must be a positive whole number, got ${maxParts}`);
  const minPart = options.minPartBytes ?? MIN_PART_BYTES;
  const target = options.capacity ?? (options.sizeHint === undefined ? DEFAULT_CAPACITY_BYTES : 2 * Math.max(0, options.sizeHint));
  const average = target / maxParts;
  const firstCount = Math.floor(maxParts / 10);
  const secondCount = Math.floor(maxParts / 10);
  const restCount = maxParts - firstCount - secondCount;
  const clamp = (bytes: number) => Math.min(MAX_PART_BYTES, Math.max(minPart, bytes));
  const first = clamp(ceilMiB(average / 8));
  const second = clamp(Math.max(first, ceilMiB(average / 2)));
  const rest = clamp(Math.max(second, ceilMiB((target - first * firstCount - second * secondCount) / restCount)));
  const capacity = first * firstCount + second * secondCount + rest * restCount;
  return {
    maxParts,
    capacity,
    size: (n) => (n <= firstCount ? first : n <= firstCount + secondCount ? second : rest),
    inFlight: (partSize) => Math.max(1, Math.min(MAX_PARTS_IN_FLIGHT, Math.floor(PART_SPOOL_BYTES / partSize))),
  };
}
