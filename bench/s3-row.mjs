/**
 * One measured row of `npm run bench:s3`, in plain JavaScript on the built runner (dist/), so the
 * process timed and measured holds the runner's code and nothing else (running a .ts file would
 * load Node's TypeScript stripper, ~17 MiB).
 *
 *   s3-row.mjs write SOURCE-DIR DEST NAME   copy archive NAME with its sidecars from SOURCE-DIR into DEST
 *   s3-row.mjs read DEST NAME               stream NAME from DEST and hash it
 *
 * DEST is a directory or s3://BUCKET/PREFIX (S3 settings from the AWS_* environment).
 * Prints one JSON line: {bytes, sha256}.
 */
import { createHash } from 'node:crypto';

const dist = new URL('../dist/runner/', import.meta.url);
const { openRepository } = await import(new URL('repository/open.js', dist).href);
const { copyArchive } = await import(new URL('repository/copy.js', dist).href);
const { parseS3Settings } = await import(new URL('repository/s3-settings.js', dist).href);
const { GarbageGovernor } = await import(new URL('memory.js', dist).href);

const open = (where) =>
  openRepository(where.startsWith('s3://') ? { kind: 'bucket', settings: parseS3Settings({ remote: where }, process.env) } : { kind: 'directory', dir: where });

const [mode, ...args] = process.argv.slice(2);
if (mode === 'write') {
  const [source, dest, name] = args;
  const stored = await copyArchive(await open(source), await open(dest), name);
  process.stdout.write(JSON.stringify({ bytes: stored.size, sha256: stored.sha256 }) + '\n');
} else {
  const [dest, name] = args;
  const { stream } = await (await open(dest)).read(name);
  const hash = createHash('sha256');
  const governor = new GarbageGovernor();
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.length;
    governor.processed(chunk.length);
  }
  process.stdout.write(JSON.stringify({ bytes, sha256: hash.digest('hex') }) + '\n');
}
