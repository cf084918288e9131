import { afterAll, beforeAll } from 'vitest';
import { type Rgw, type RgwOptions, startRgw } from './rgw-server.js';

export * from './rgw-server.js';

/**
 * Starts one RGW for the test file and points the SDK's default credential chain of this
 * process at it (vitest runs each file in its own process). Returns a getter for it.
 */
export function useRgw(options: RgwOptions = {}): () => Rgw {
  let rgw: Rgw | undefined;
  const saved: Record<string, string | undefined> = {};
  beforeAll(async () => {
    rgw = await startRgw(options);
    for (const [k, v] of Object.entries(rgw.env())) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
  }, 180_000);
  afterAll(() => {
    rgw?.stop();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  return () => {
    if (!rgw) throw new Error('RGW is not running (useRgw must be called at the top of the test file)');
    return rgw;
  };
}

/** Runs `fn` with the process environment changed (the SDK's default chain reads it), then restores it. */
export async function withEnv<T>(changes: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(changes)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
