import { execFileSync } from 'node:child_process';
import { afterEach } from 'vitest';

/**
 * Real file systems mounted for a test (tmpfs for a small volume, ramfs for one without
 * extended attributes), unmounted after each test even when it fails. Root only: callers skip
 * with a reason otherwise. Call it after useTempDirs, so the mounts go before their directories.
 */
export function useMounts(): (type: string, dir: string, options?: string) => void {
  const mounted: string[] = [];
  afterEach(() => {
    for (const dir of mounted.splice(0).reverse()) {
      try {
        execFileSync('umount', [dir], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      }
    }
  });
  return (type, dir, options = 'mode=0755') => {
    execFileSync('mount', ['-t', type, '-o', options, type, dir]);
    mounted.push(dir);
  };
}
