#!/usr/bin/env node
/**
 * The `pvc-backup` command (package.json `bin`, the image's entry point). It only checks the
 * Node.js version and then loads the CLI: the archive code needs Node 24 (zstd in node:zlib),
 * and an older Node would fail while importing it with a TypeError that names no cause. So this
 * file imports nothing that an old Node cannot load.
 */

/** The oldest Node.js major version the runner works on (package.json `engines`). */
export const REQUIRED_NODE_MAJOR = 24;

const major = Number(process.versions.node.split('.')[0]);
if (major < REQUIRED_NODE_MAJOR) {
  process.stderr.write(
    `pvc-backup: needs Node.js ${REQUIRED_NODE_MAJOR} or newer, but ${process.execPath} is Node.js ${process.version}; ` +
      `in a checkout run it through npm, which uses the Node ${REQUIRED_NODE_MAJOR} that npm ci installs (npm run demo, npx pvc-backup --help), ` +
      `or install Node.js ${REQUIRED_NODE_MAJOR} (https://nodejs.org/en/download)\n`,
  );
  process.exitCode = 2;
} else {
  const { main } = await import('./main.js');
  const { losslessArgs } = await import('./args.js');
  process.exitCode = await main(losslessArgs());
}
