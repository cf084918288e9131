/**
 * A separate process that streams generated data into a bucket repository, as a bucket-only
 * backup does, for the kill and memory tests. The S3 settings come from the environment
 * (AWS_* of the test RGW), the credentials from the SDK's default chain.
 *
 *   upload-child.mjs s3://BUCKET/PREFIX NAME BYTES    take the lock, clean leftovers, upload, commit
 *   upload-child.mjs s3://BUCKET/PREFIX NAME read     stream NAME back and hash it
 *
 * Prints JSON lines: {"event":"locked"}, {"event":"leftovers",names}, {"event":"progress",bytes} per
 * 8 MiB, {"event":"done",sha256,bytes,maxRssKiB}. On SIGTERM it aborts the upload, releases the
 * lock and exits 143, as the runner's signal handling does.
 */
import { createHash, randomBytes } from 'node:crypto';

// Plain JavaScript on the built runner in dist/: the process measured holds the runner's code
// and nothing else (a .ts file would load Node's TypeScript stripper, ~17 MiB).
const dist = new URL('../../dist/runner/', import.meta.url);
const { exitCodeOf } = await import(new URL('errors.js', dist).href);
const { BucketRepository } = await import(new URL('repository/s3.js', dist).href);
const { parseS3Settings } = await import(new URL('repository/s3-settings.js', dist).href);

const [url, name, what] = process.argv.slice(2);

function say(value) {
  process.stdout.write(JSON.stringify({ pid: process.pid, ...value }) + '\n');
}

/**
 * Incompressible-looking data, cheap to make: one random MiB with a counter stamped into it for
 * each chunk (the same buffer every time: the sink copies what it is given).
 */
function* generate(total) {
  const block = randomBytes(1024 * 1024);
  let made = 0;
  for (let i = 0; made < total; i++) {
    block.writeUInt32BE(i % 2 ** 32, 0);
    const chunk = block.subarray(0, Math.min(block.length, total - made));
    made += chunk.length;
    yield chunk;
  }
}

async function main() {
  const repo = new BucketRepository(parseS3Settings({ remote: url }, process.env));
  if (what === 'read') {
    const { stream, size } = await repo.read(name);
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of stream) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    say({ event: 'done', size, bytes, sha256: hash.digest('hex'), maxRssKiB: process.resourceUsage().maxRSS });
    return 0;
  }
  const total = Number(what);
  const abort = new AbortController();
  const lock = await repo.lock({ command: 'backup', staleSeconds: 600, onWarning: (message) => say({ event: 'warning', message }) });
  say({ event: 'locked' });
  say({ event: 'leftovers', names: await repo.removeLeftovers() });
  const sink = await repo.createArchive(name, { sizeHint: total, signal: abort.signal });
  process.once('SIGTERM', () => {
    abort.abort();
    void sink.abort().then(async () => {
      await lock.release();
      say({ event: 'stopped' });
      process.exit(143);
    });
  });
  const hash = createHash('sha256');
  let reported = 0;
  try {
    for (const chunk of generate(total)) {
      hash.update(chunk);
      sink.append(chunk);
      await sink.drain();
      if (sink.bytes - reported >= 8 * 1024 * 1024) {
        reported = sink.bytes;
        say({ event: 'progress', bytes: sink.bytes });
      }
    }
    const sha256 = hash.digest('hex');
    await sink.commit({ sha256, manifest: JSON.stringify({ format: 1, archive: name, archiveBytes: total, sha256 }) });
    say({ event: 'done', sha256, bytes: sink.bytes, maxRssKiB: process.resourceUsage().maxRSS });
    return 0;
  } catch (error) {
    if (abort.signal.aborted) await new Promise(() => undefined); // the SIGTERM handler finishes
    await sink.abort();
    say({ event: 'failed', message: error.message });
    return exitCodeOf(error);
  } finally {
    await lock.release();
  }
}

process.exitCode = await main();
