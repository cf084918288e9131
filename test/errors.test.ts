import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OperationError, describeSystemError, errorCodeOf, systemErrorCode } from '../runner/errors.js';
import { isRoot, useTempDirs } from './helpers/tree.js';

/** No failure reaches the user without a code and a text that says what happened. */

const tempDir = useTempDirs();

/** The error Node 24's recursive rmSync throws when a mount point is below the tree: code '', errno UV_UNKNOWN. */
async function realBusyError(): Promise<unknown> {
  const dir = await tempDir('busy');
  const mount = path.join(dir, 'a/b');
  fs.mkdirSync(mount, { recursive: true });
  expect(spawnSync('mount', ['-t', 'tmpfs', 'busy', mount]).status).toBe(0);
  try {
    fs.rmSync(path.join(dir, 'a'), { recursive: true, force: true });
    return undefined;
  } catch (error) {
    return error;
  } finally {
    spawnSync('umount', [mount]);
  }
}

describe('system errors', () => {
  it.skipIf(!isRoot)('an error Node left without a code gets its errno name and plain words (real EBUSY from a mount point)', async () => {
    const error = await realBusyError();
    expect(error, 'rmSync over a mount point fails').toBeDefined();
    expect((error as NodeJS.ErrnoException).code, 'the shape this guards against').toBe('');
    expect(systemErrorCode(error)).toBe('EBUSY');
    expect(errorCodeOf(error)).toBe('EBUSY');
    expect(describeSystemError(error)).toMatch(/^device or resource busy \(a mount point, or a file in use\) \(.*\/a\)$/);
  });

  it('errors with a code keep their words; unknown ones get the code in front', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', path: '/data/x' });
    expect(describeSystemError(enospc)).toBe('no space left on device (/data/x)');
    const odd = Object.assign(new Error('something odd happened'), { code: 'EPROTO' });
    expect(describeSystemError(odd)).toBe('EPROTO: something odd happened');
    expect(errorCodeOf(odd)).toBe('EPROTO');
  });

  it('a plain error is described by its message, and an empty one is still described', () => {
    expect(describeSystemError(new Error('boom'))).toBe('boom');
    expect(describeSystemError(new Error(''))).toBe('unexpected Error without a message');
    expect(errorCodeOf(new Error('boom'))).toBe('UNEXPECTED');
    expect(errorCodeOf(new OperationError('x', 'SWAP'))).toBe('SWAP');
  });
});
