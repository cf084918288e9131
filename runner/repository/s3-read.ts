import { Readable } from 'node:stream';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { OperationError } from '../errors.js';
import type { BucketClient } from './s3-client.js';
import { isPreconditionFailed } from './s3-errors.js';

/**
 * Streams an object as a sequence of ranged GETs with a bounded read-ahead: `readAhead` ranges
 * of `rangeBytes` are fetched at once, and the next ones only when the consumer has taken the
 * earlier ones (memory ≤ readAhead × rangeBytes, whatever the object's size). Every range asks
 * for the ETag seen when the object was opened (If-Match), so an object replaced mid-read fails
 * the read instead of mixing two objects. A range that breaks off (connection reset, short
 * body) is fetched again, so one network hiccup does not restart a 500 GiB read.
 */

export interface RangedReadOptions {
  rangeBytes?: number;
  readAhead?: number;
  signal?: AbortSignal;
  /** For messages: what is read ("archive X"). */
  label: string;
}

const DEFAULT_RANGE_BYTES = 8 * 1024 * 1024;
const DEFAULT_READ_AHEAD = 3;
const RANGE_ATTEMPTS = 3;

export function openRangedObject(client: BucketClient, key: string, size: number, etag: string | undefined, options: RangedReadOptions): Readable {
  const rangeBytes = options.rangeBytes ?? DEFAULT_RANGE_BYTES;
  const readAhead = options.readAhead ?? DEFAULT_READ_AHEAD;
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  options.signal?.addEventListener('abort', onSignal, { once: true });
  const inFlight: Promise<Buffer>[] = [];
  let nextOffset = 0;

  const fetchRange = async (start: number, end: number): Promise<Buffer> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const answer = await client.send(
          new GetObjectCommand({ Bucket: client.bucket, Key: key, Range: `bytes=${start}-${end}`, IfMatch: etag }),
          `read ${options.label}`,
          { signal: controller.signal, raw: true },
        );
        const bytes = Buffer.from(await answer.Body!.transformToByteArray());
        if (bytes.length !== end - start + 1) throw Object.assign(new Error(`short range: ${bytes.length} of ${end - start + 1} bytes`), { code: 'ECONNRESET' });
        return bytes;
      } catch (error) {
        if (controller.signal.aborted) throw new OperationError(`${client.location}: reading ${options.label} was stopped`, 'STOPPED', { cause: error });
        if (isPreconditionFailed(error)) {
          throw new OperationError(`${client.location}: ${options.label} was replaced while it was being read; read it again`, 'S3_CHANGED', { cause: error });
        }
        const transient = (error as NodeJS.ErrnoException)?.code !== undefined || (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === undefined;
        if (!transient || attempt >= RANGE_ATTEMPTS) throw client.describe(error, `read ${options.label}`);
      }
    }
  };

  const schedule = () => {
    while (inFlight.length < readAhead && nextOffset < size) {
      const start = nextOffset;
      const end = Math.min(size, start + rangeBytes) - 1;
      nextOffset = end + 1;
      const range = fetchRange(start, end);
      range.catch(() => undefined); // handled when its turn comes
      inFlight.push(range);
    }
  };

  const stream = new Readable({
    highWaterMark: rangeBytes,
    read() {
      schedule();
      const next = inFlight.shift();
      if (!next) {
        this.push(null);
        return;
      }
      next.then(
        (bytes) => {
          schedule();
          this.push(bytes);
        },
        (error) => this.destroy(error),
      );
    },
    destroy(error, callback) {
      controller.abort();
      options.signal?.removeEventListener('abort', onSignal);
      callback(error);
    },
  });
  return stream;
}
