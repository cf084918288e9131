import { type PerformanceEntry, PerformanceObserver, constants } from 'node:perf_hooks';
import { expect, test } from 'vitest';
import { bothVisitors } from '../../runner/archive/check.js';
import type { TarVisitor } from '../../runner/archive/tar-reader.js';
import { GarbageGovernor } from '../../runner/memory.js';

const MiB = 1024 * 1024;

/** Full (mark-compact) collections while `work` runs, seen through V8's own GC events. */
async function fullCollectionsDuring(work: () => void): Promise<number> {
  let full = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) full++;
  });
  observer.observe({ entryTypes: ['gc'] });
  work();
  // GC entries are delivered asynchronously.
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  return full;
}

const stream = (governor: GarbageGovernor) => () => {
  for (let i = 0; i < 320; i++) governor.processed(MiB);
};

test('the governor collects everything every 32 MiB by default, and only young garbage when the stream says its buffers die young', async () => {
  const byBytes = await fullCollectionsDuring(stream(new GarbageGovernor()));
  const youngOnly = await fullCollectionsDuring(stream(new GarbageGovernor(1, { fullByBytes: false })));
  expect(byBytes).toBeGreaterThanOrEqual(10);
  expect(youngOnly).toBeLessThanOrEqual(1);
});

test('full collections by entries, and by bytes copied into buffers kept across awaits, stay on either way', async () => {
  const byEntries = new GarbageGovernor(1, { fullByBytes: false });
  const afterEntries = await fullCollectionsDuring(() => {
    for (let i = 0; i < 20; i++) byEntries.processed(0, 1_000);
  });
  expect(afterEntries).toBeGreaterThanOrEqual(4);
  const byKept = new GarbageGovernor(1, { fullByBytes: false });
  const afterKept = await fullCollectionsDuring(() => {
    for (let i = 0; i < 320; i++) byKept.processed(MiB, 0, MiB);
  });
  expect(afterKept).toBeGreaterThanOrEqual(10);
});

test('a visitor that keeps chunks keeps the full collections for the pair it rides along with', () => {
  const plain: TarVisitor = { entry: () => undefined };
  const keeper: TarVisitor = { entry: () => undefined, keepsChunks: true };
  expect(bothVisitors(plain, plain).keepsChunks).toBe(false);
  expect(bothVisitors(plain, keeper).keepsChunks).toBe(true);
  expect(bothVisitors(keeper, plain).keepsChunks).toBe(true);
});
