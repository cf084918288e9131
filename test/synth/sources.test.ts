import { beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine, type BackupConfig, type RestoreConfig, type VerifyConfig } from '../../runner/config.js';
import { helmBinaries, runHelm } from '../helpers/helm.js';
import { baselineViolations, podSecurityLevel, restrictedViolations, type PodLike } from './pod-security.js';
import { renderNotes, useNotesProbe } from './notes-probe.js';
import { CHART_PATH, environmentOf, find, fullname, helmTemplate, VALUES_FROM_STDIN, valuesInput, IMAGE_REPOSITORY, podTemplateOf, renderChart, validateKubernetesObject, workloadsOf, type Manifest } from './rendered-chart.js';

/** Several volumes in one release: `sources`, rendered by real Helm 3 and 4. */

const F = fullname();

const TWO_SOURCES = {
  image: { repository: IMAGE_REPOSITORY },
  source: {},
  backup: { schedule: '10 2 * * *', prefix: 'shop', exclude: ['*.tmp'] },
  sources: [
    { name: 'db', claimName: 'shop-db', subPath: 'pgdata', colocateWith: { app: 'db' } },
    { name: 'media', claimName: 'shop-media', exclude: ['cache/**'] },
  ],
};

function containers(workload: Manifest): any[] {
  const spec = podTemplateOf(workload).spec;
  return [...(spec.initContainers ?? []), ...spec.containers];
}

function parsed<T>(container: any): T {
  const result = parseCommandLine(container.args, environmentOf(container), { checkPaths: false });
  if (result.kind !== 'run') throw new Error(`the runner reads ${JSON.stringify(container.args)} as ${result.kind}`);
  return result.config as T;
}

function renderFails(helm: Parameters<typeof helmTemplate>[0], values: unknown): string {
  const result = helmTemplate(helm, values);
  expect(result.code, result.stdout).not.toBe(0);
  return result.stderr;
}

useNotesProbe();

describe.each(helmBinaries())('sources rendered by Helm $major', (helm) => {
  let manifests: Manifest[];
  beforeAll(() => {
    // (nonce 2: with the default nonce this request's id, 7e687159, reads as a number to a YAML 1.2 parser.)
    manifests = renderChart(helm, { ...TWO_SOURCES, restore: { enabled: true, source: 'media', archive: 'latest', nonce: '2' } } as never);
  });

  it('renders one backup CronJob per source, each with its claim, prefix, staggered schedule and excludes', () => {
    const cronJobs = manifests.filter((m) => m.kind === 'CronJob' && m.metadata.labels?.['app.kubernetes.io/component'] === 'backup');
    expect(cronJobs.map((c) => c.metadata.name)).toEqual([`${F}-db`, `${F}-media`]);
    const [db, media] = cronJobs as [Manifest, Manifest];
    expect(db.spec.schedule).toBe('10 2 * * *');
    expect(media.spec.schedule).toBe('15 2 * * *');
    const dbConfig = parsed<BackupConfig>(podTemplateOf(db).spec.containers[0]);
    const mediaConfig = parsed<BackupConfig>(podTemplateOf(media).spec.containers[0]);
    expect(dbConfig.prefix).toBe('shop-db');
    expect(mediaConfig.prefix).toBe('shop-media');
    expect(dbConfig.excludes).toEqual(['*.tmp']);
    expect(mediaConfig.excludes).toEqual(['cache/**']);
    const claimOf = (m: Manifest) => podTemplateOf(m).spec.volumes.find((v: any) => v.name === 'source').persistentVolumeClaim.claimName;
    expect([claimOf(db), claimOf(media)]).toEqual(['shop-db', 'shop-media']);
    const subPathOf = (m: Manifest) => podTemplateOf(m).spec.containers[0].volumeMounts.find((v: any) => v.name === 'source').subPath;
    expect([subPathOf(db), subPathOf(media)]).toEqual(['pgdata', undefined]);
    // Both write into the one backup volume.
    const backupClaimOf = (m: Manifest) => podTemplateOf(m).spec.volumes.find((v: any) => v.name === 'backup').persistentVolumeClaim.claimName;
    expect(backupClaimOf(db)).toBe(backupClaimOf(media));
    // colocateWith is the source's own.
    expect(podTemplateOf(db).spec.affinity?.podAffinity).toBeDefined();
    expect(podTemplateOf(media).spec.affinity?.podAffinity).toBeUndefined();
  });

  it('verifies every prefix, each against its own schedule', () => {
    const verify = find(manifests, 'CronJob', `${F}-verify`);
    const checks = containers(verify).map((c) => ({ name: c.name, config: parsed<VerifyConfig>(c) }));
    expect(checks.map((c) => c.name)).toEqual(['verify-db', 'verify']);
    expect(checks.map((c) => c.config.prefix)).toEqual(['shop-db', 'shop-media']);
    expect(checks.map((c) => (c.config as any).freshness?.schedule ?? (c.config as any).schedule)).toEqual(['10 2 * * *', '15 2 * * *']);
  });

  it('restores the source restore.source names, into its claim by default', () => {
    const restore = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`))!;
    const config = parsed<RestoreConfig>(podTemplateOf(restore).spec.containers[0]);
    expect(config.prefix).toBe('shop-media');
    expect(podTemplateOf(restore).spec.volumes.find((v: any) => v.name === 'target').persistentVolumeClaim.claimName).toBe('shop-media');
    const db = renderChart(helm, { ...TWO_SOURCES, restore: { enabled: true, source: 'db', archive: 'latest' } } as never);
    const dbRestore = db.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`))!;
    expect(parsed<RestoreConfig>(podTemplateOf(dbRestore).spec.containers[0]).prefix).toBe('shop-db');
    expect(dbRestore.metadata.name).not.toBe(restore.metadata.name);
  });

  it('binds with the first source, and every rendered object is valid and runs a command line the runner accepts', () => {
    const bind = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-bind`))!;
    expect(podTemplateOf(bind).spec.volumes.find((v: any) => v.name === 'source').persistentVolumeClaim.claimName).toBe('shop-db');
    for (const manifest of manifests) validateKubernetesObject(manifest);
    for (const workload of workloadsOf(manifests)) for (const container of containers(workload)) parsed(container);
  });

  it.each(['baseline', 'restricted'] as const)('under securityProfile %s, every pod of every source meets that Pod Security level', (level) => {
    const rendered = renderChart(helm, { ...TWO_SOURCES, securityProfile: level, restore: { enabled: true, source: 'db' } } as never);
    const workloads = workloadsOf(rendered);
    expect(workloads.filter((w) => w.kind === 'CronJob')).toHaveLength(3);
    for (const workload of workloads) {
      const pod = podTemplateOf(workload) as PodLike;
      expect(podSecurityLevel(pod), `${workload.metadata.name}: ${[...baselineViolations(pod), ...restrictedViolations(pod)].join('; ')}`).toBe(level);
    }
  });

  it('an explicit schedule and prefix win; a minute field that cannot be staggered asks for one', () => {
    const own = renderChart(helm, { ...TWO_SOURCES, sources: [TWO_SOURCES.sources[0], { name: 'media', claimName: 'shop-media', schedule: '0 4 * * 0', prefix: 'pics' }] } as never);
    const media = find(own, 'CronJob', `${F}-media`);
    expect(media.spec.schedule).toBe('0 4 * * 0');
    expect(parsed<BackupConfig>(podTemplateOf(media).spec.containers[0]).prefix).toBe('pics');
    expect(renderFails(helm, { ...TWO_SOURCES, backup: { schedule: '*/30 * * * *' } })).toContain('"db" needs a schedule of its own');
    const daily = renderChart(helm, { ...TWO_SOURCES, backup: { schedule: '@daily' } } as never);
    expect(find(daily, 'CronJob', `${F}-media`).spec.schedule).toBe('5 0 * * *');
  });

  it('refuses duplicate names, duplicate prefixes, unknown or missing restore.source, and sources beside source.claimName', () => {
    const twice = [TWO_SOURCES.sources[0], { name: 'db', claimName: 'other' }];
    expect(renderFails(helm, { ...TWO_SOURCES, sources: twice })).toContain('the name "db" is given twice');
    const samePrefix = [{ ...TWO_SOURCES.sources[0], prefix: 'x' }, { name: 'media', claimName: 'shop-media', prefix: 'x' }];
    expect(renderFails(helm, { ...TWO_SOURCES, sources: samePrefix })).toContain('the prefix "x" is used by "db" and "media"');
    // The default prefix of one source can collide with another's explicit prefix too.
    const collide = [{ ...TWO_SOURCES.sources[0], prefix: 'shop-media' }, TWO_SOURCES.sources[1]];
    expect(renderFails(helm, { ...TWO_SOURCES, sources: collide })).toContain('the prefix "shop-media"');
    expect(renderFails(helm, { ...TWO_SOURCES, restore: { enabled: true, source: 'nope' } })).toContain('restore.source "nope" is not the name of an entry of sources (db, media)');
    expect(renderFails(helm, { ...TWO_SOURCES, restore: { enabled: true } })).toContain('restore.enabled with sources needs restore.source');
    expect(renderFails(helm, { ...TWO_SOURCES, source: { claimName: 'shop-data' } })).toContain('sources and source.claimName are both set');
    expect(renderFails(helm, { image: { repository: IMAGE_REPOSITORY }, source: { claimName: 'shop-data' }, restore: { source: 'db' } })).toContain('restore.source names an entry of sources');
    expect(renderFails(helm, { ...TWO_SOURCES, offsite: { enabled: true, url: 's3://bucket/x', existingSecret: 's' } })).toContain('offsite.enabled works with source only');
    // The schema: a name that is not a DNS label, an entry without a claim.
    expect(renderFails(helm, { ...TWO_SOURCES, sources: [{ name: 'Media_1', claimName: 'x' }] })).toMatch(/name/);
    expect(renderFails(helm, { ...TWO_SOURCES, sources: [{ name: 'media' }] })).toMatch(/claimName/);
    // F-verify is the verify CronJob's name.
    expect(renderFails(helm, { ...TWO_SOURCES, sources: [{ name: 'verify', claimName: 'x' }] })).toMatch(/sources.0.name/);
  });

  it('the notes list every source with its CronJob, schedule and prefix, and the commands use the first', () => {
    const notes = renderNotes(helm, TWO_SOURCES as never);
    expect(notes).toContain(`db: "shop-db" (directory pgdata), CronJob ${F}-db, schedule "10 2 * * *", archives shop-db-<time>`);
    expect(notes).toContain(`media: "shop-media", CronJob ${F}-media, schedule "15 2 * * *", archives shop-media-<time>`);
    expect(notes).toContain(`create job --from=cronjob/${F}-db `);
  });

  it('passes helm lint --strict', () => {
    const result = runHelm(helm, ['lint', '--strict', CHART_PATH, ...VALUES_FROM_STDIN], { input: valuesInput({ ...TWO_SOURCES, restore: { enabled: true, source: 'db' } }) });
    expect(result.code, result.stdout + result.stderr).toBe(0);
  });

  it('keeps a one-volume install as it was: one CronJob named F with the backup prefix', () => {
    const single = renderChart(helm, { image: { repository: IMAGE_REPOSITORY }, source: { claimName: 'shop-data' }, backup: { prefix: 'shop' } });
    const backup = find(single, 'CronJob', F);
    expect(parsed<BackupConfig>(podTemplateOf(backup).spec.containers[0]).prefix).toBe('shop');
    expect(containers(find(single, 'CronJob', `${F}-verify`)).map((c) => c.name)).toEqual(['verify']);
  });
});
