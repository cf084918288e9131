import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration tests spawn real processes and write real files; two workers match CI's two cores.
    maxWorkers: 2,
  },
});
