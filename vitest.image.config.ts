import { defineConfig } from 'vitest/config';

/** `npm run test:image` (scripts/test-image.sh): the image test, which needs a Docker engine; not part of npm test. */
export default defineConfig({
  test: {
    include: ['test/image.docker.ts'],
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 30 * 60_000,
    maxWorkers: 1,
  },
});
