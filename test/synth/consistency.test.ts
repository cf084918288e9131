import { describe, expect, it } from 'vitest';
import { helmBinaries } from '../helpers/helm.js';
import { helmTemplate, IMAGE_REPOSITORY, REQUIRED_VALUES } from './rendered-chart.js';

/** Values of the consistency features that cannot work: each fails the render with one line saying what to set. */

const image = { repository: IMAGE_REPOSITORY };
const dump = { name: 'postgres', image: 'postgres:16', command: ['pg_dump', '--file=shop.dump'] };

const REFUSED: [string, unknown, RegExp][] = [
  ['no source claim and no dumps', { image }, /claimName/],
  ['SQLite without a source claim', { image, backup: { preBackup: [dump], sqlite: ['*.db'] } }, /backup\.sqlite needs source\.claimName/],
  ['a restore without a source or target claim', { image, backup: { preBackup: [dump] }, restore: { enabled: true } }, /restore\.enabled needs restore\.targetClaim/],
  ['two dumps of one name', { ...REQUIRED_VALUES, backup: { preBackup: [dump, dump] } }, /the name "postgres" is given twice/],
  ['a dump without a command', { ...REQUIRED_VALUES, backup: { preBackup: [{ name: 'x', image: 'busybox' }] } }, /command/],
  ['a dump name that is not a DNS label', { ...REQUIRED_VALUES, backup: { preBackup: [{ ...dump, name: 'Postgres_1' }] } }, /name/],
  ['a workload kind other than Deployment or StatefulSet', { ...REQUIRED_VALUES, restore: { enabled: true, scaleDown: [{ kind: 'DaemonSet', name: 'x' }] } }, /kind/],
  ['a workload listed twice', { ...REQUIRED_VALUES, restore: { enabled: true, scaleDown: [{ kind: 'Deployment', name: 'x' }, { kind: 'Deployment', name: 'x' }] } }, /Deployment\/x is listed twice/],
  ['a timeout that is not a duration', { ...REQUIRED_VALUES, restore: { enabled: true, scaleDown: [{ kind: 'Deployment', name: 'x' }], scaleDownTimeout: 'soon' } }, /scaleDownTimeout/],
];

describe.each(helmBinaries())('consistency values refused by Helm $major', (helm) => {
  it.each(REFUSED)('%s', (_name, values, message) => {
    const result = helmTemplate(helm, values);
    expect(result.code, result.stdout.slice(0, 200)).not.toBe(0);
    expect(result.stderr).toMatch(message);
  });

  it('renders no Role and no token for scaling down while restore.scaleDown is empty or the restore is off', () => {
    for (const values of [{ ...REQUIRED_VALUES, restore: { enabled: true } }, { ...REQUIRED_VALUES, restore: { scaleDown: [{ kind: 'Deployment', name: 'x' }] } }]) {
      const result = helmTemplate(helm, values);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).not.toContain('-scale-down');
    }
  });
});
