import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { OperationError } from '../errors.js';
import { GarbageGovernor } from '../memory.js';
import type { BucketClient } from './s3-client.js';
import { isPreconditionFailed } from './s3-errors.js';

/**
 * Streams an object through a sequence of ranged GETs, each `segmentBytes` long, passing the
 * response bytes on as they arrive. Memory is bounded by the stream's own buffer (read-ahead is
 * `highWaterMark` bytes, plus what the kernel holds in the socket): the response is paused
 * whenever the consumer is behind, and nothing is collected into big buffers.
 *
 * - Every range asks for the ETag seen when the object was opened (If-Match), so an object
 *   replaced mid-read fails the read instead of mixing two objects.
 * - A range that breaks off (connection reset, timeout, short body) is asked for again from the
 *   first byte not yet delivered, so a network hiccup does not restart a 500 GiB read; a range
 *   that fails `attempts` times without delivering a byte fails the read.
 * - Ranges keep each request short-lived (no request runs for hours).
 */

export interface RangedReadOptions {
  segmentBytes?: number;
  /** Bytes buffered ahead of the consumer. */
  highWaterMark?: number;
  attempts?: number;
  signal?: AbortSignal;
  /** For messages: what is read ("archive X"). */
  label: string;
}

const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const DEFAULT_HIGH_WATER_MARK = 4 * 1024 * 1024;
const DEFAULT_ATTEMPTS = 3;

export function openRangedObject(client: BucketClient, key: string, size: number, etag: string | undefined, options: RangedReadOptions): Readable {
  const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  const attempts = options.attempts ?? DEFAULT_ATTEMPTS;
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  options.signal?.addEventListener('abort', onSignal, { once: true });

  /** The next byte to deliver. */
  let offset = 0;
  let body: IncomingMessage | undefined;
  let opening = false;
  let failures = 0;
  // The HTTP layer hands over many small buffers that are garbage once consumed: collected
  // regularly, so a slow consumer on a busy machine does not let them pile up in the heap.
  const governor = new GarbageGovernor();

  const stream = new Readable({
    highWaterMark: options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK,
    read() {
      if (body) body.resume();
      else if (!opening) void open();
    },
    destroy(error, callback) {
      controller.abort();
      body?.destroy();
      options.signal?.removeEventListener('abort', onSignal);
      callback(error);
    },
  });

  const open = async (): Promise<void> => {
    if (offset >= size) {
      stream.push(null);
      return;
    }
    opening = true;
    const end = Math.min(size, offset + segmentBytes) - 1;
    try {
      const answer = await client.send(
        new GetObjectCommand({ Bucket: client.bucket, Key: key, Range: `bytes=${offset}-${end}`, IfMatch: etag }),
        `read ${options.label}`,
        { signal: controller.signal, raw: true },
      );
      follow(answer.Body as IncomingMessage, end);
    } catch (error) {
      retryOrFail(error);
    } finally {
      opening = false;
    }
  };

  const follow = (response: IncomingMessage, end: number): void => {
    body = response;
    let delivered = false;
    response.on('data', (chunk: Buffer) => {
      if (offset + chunk.length > end + 1) {
        response.destroy(Object.assign(new Error('the store sent more bytes than the range holds'), { code: 'ERANGE' }));
        return;
      }
      offset += chunk.length;
      governor.processed(chunk.length);
      if (!delivered) {
        delivered = true;
        failures = 0;
      }
      if (!stream.push(chunk)) response.pause();
    });
    response.once('end', () => {
      body = undefined;
      if (offset !== end + 1) retryOrFail(Object.assign(new Error(`the range ended after ${offset} of ${end + 1} bytes`), { code: 'ECONNRESET' }));
      else void open();
    });
    response.once('error', (error) => {
      body = undefined;
      retryOrFail(error);
    });
  };

  const retryOrFail = (error: unknown): void => {
    if (stream.destroyed) return;
    if (controller.signal.aborted) {
      stream.destroy(new OperationError(`${client.location}: reading ${options.label} was stopped`, 'STOPPED', { cause: error }));
      return;
    }
    if (isPreconditionFailed(error)) {
      stream.destroy(new OperationError(`${client.location}: ${options.label} was replaced while it was being read; read it again`, 'S3_CHANGED', { cause: error }));
      return;
    }
    // An HTTP answer (403, 404, 5xx after the SDK's own retries) is final; a broken connection is not.
    const answered = (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode !== undefined;
    if (answered || ++failures >= attempts) {
      stream.destroy(client.describe(error, `read ${options.label}`));
      return;
    }
    void open();
  };

  return stream;
}
