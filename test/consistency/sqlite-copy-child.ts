/**
 * Copies databases with copySqliteDatabase in its own process (so a test can run it inside a
 * private mount namespace, where the source is a read-only bind mount):
 *   sqlite-copy-child.ts ROOT SCRATCH REL...
 * prints {"event":"copied",...SqliteCopy} or {"event":"failed","code","message"} per database.
 */
import path from 'node:path';
import { copySqliteDatabase } from '../../runner/consistency/sqlite.js';
import { RunnerError } from '../../runner/errors.js';

const [root, scratch, ...rels] = process.argv.slice(2);
for (const rel of rels) {
  try {
    const copy = await copySqliteDatabase(root!, rel, path.join(scratch!, rel));
    process.stdout.write(`${JSON.stringify({ event: 'copied', ...copy })}\n`);
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ event: 'failed', rel, code: error instanceof RunnerError ? error.code : 'UNEXPECTED', message: (error as Error).message })}\n`);
  }
}
