import { LocalRepository } from './local.js';
import type { Repository } from './repository.js';
import type { S3Settings } from './s3-settings.js';

/**
 * Opens the repository a command works on. The AWS SDK (~35 MiB of resident memory once
 * loaded) is imported only when a bucket is asked for, so directory-only runs never pay for it.
 */
export type RepositoryTarget = { kind: 'directory'; dir: string } | { kind: 'bucket'; settings: S3Settings };

export async function openRepository(target: RepositoryTarget): Promise<Repository> {
  if (target.kind === 'directory') return new LocalRepository(target.dir);
  const { BucketRepository } = await import('./s3.js');
  return new BucketRepository(target.settings);
}

/** The repository a command's config names: the bucket of --remote, else the directory of --dest. */
export function targetOf(config: { dest?: string | undefined; remote?: S3Settings }): RepositoryTarget {
  if (config.remote) return { kind: 'bucket', settings: config.remote };
  if (config.dest === undefined) throw new Error('a command config without --dest or --remote (config.ts must refuse it)');
  return { kind: 'directory', dir: config.dest };
}
