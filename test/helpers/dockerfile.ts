import fs from 'node:fs';
import path from 'node:path';

/**
 * A small Dockerfile reader for tests that cannot run `docker build`: instructions per stage,
 * with line continuations, comments, ARG/ENV substitution and the exec-form JSON of
 * ENTRYPOINT/CMD, plus the runtime image's configuration (what a container starts with) and a
 * .dockerignore matcher. It understands the subset of the syntax this repository uses and fails
 * loudly on anything else it meets.
 */

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  keyword: string;
  /** Everything after the keyword, continuations joined with a space. */
  rest: string;
  line: number;
}

export interface Stage {
  /** `AS name`, or the stage's index as a string. */
  name: string;
  /** The base image after ARG substitution. */
  from: string;
  /** `--platform=...` of the FROM line, unsubstituted (e.g. `$BUILDPLATFORM`). */
  platform: string | undefined;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Record<string, string>;
  stages: Stage[];
}

export interface Copy {
  from: string | undefined;
  flags: Record<string, string>;
  sources: string[];
  dest: string;
}

/** What a container of the final stage starts with. */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  workdir: string;
  user: string | undefined;
  env: Record<string, string>;
  labels: Record<string, string>;
}

/** Joins continuation lines and drops comments and blank lines. */
function logicalLines(text: string): { text: string; line: number }[] {
  const out: { text: string; line: number }[] = [];
  let current: string | undefined;
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/\r$/, '');
    if (/^\s*#/.test(line)) return; // comments, also inside a continued instruction
    if (current === undefined) {
      if (line.trim() === '') return;
      current = '';
      start = index + 1;
    }
    if (/\\\s*$/.test(line)) {
      current += line.replace(/\\\s*$/, '') + ' ';
      return;
    }
    current += line;
    out.push({ text: current.trim(), line: start });
    current = undefined;
  });
  if (current !== undefined) throw new Error(`Dockerfile ends inside a continued instruction (line ${start})`);
  return out;
}

/** Splits `a=b c="d e" f='g'` (ENV/LABEL/ARG syntax) into pairs, honouring quotes and backslashes. */
export function parsePairs(text: string): [string, string][] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      inWord = true;
      const end = text.indexOf(c, i + 1);
      if (end === -1) throw new Error(`unterminated quote in: ${text}`);
      word += c === '"' ? text.slice(i + 1, end).replace(/\\(["\\$])/g, '$1') : text.slice(i + 1, end);
      i = end;
    } else if (c === '\\' && i + 1 < text.length) {
      inWord = true;
      word += text[++i];
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      inWord = true;
      word += c;
    }
  }
  if (inWord) words.push(word);
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`expected NAME=value, got "${w}" in: ${text}`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

/** Replaces $NAME and ${NAME} with values; unknown names become empty, as Docker does. */
export function substitute(text: string, vars: Record<string, string>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a?: string, b?: string) => vars[(a ?? b)!] ?? '');
}

export function parseDockerfile(text: string): Dockerfile {
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const { text: lineText, line } of logicalLines(text)) {
    const match = /^([A-Za-z]+)(?:\s+(.*))?$/.exec(lineText);
    if (!match) throw new Error(`line ${line}: not an instruction: ${lineText}`);
    const keyword = match[1]!.toUpperCase();
    const rest = match[2] ?? '';
    if (keyword === 'FROM') {
      const words = rest.split(/\s+/);
      let platform: string | undefined;
      while (words[0]?.startsWith('--')) {
        const flag = words.shift()!;
        if (flag.startsWith('--platform=')) platform = flag.slice('--platform='.length);
        else throw new Error(`line ${line}: unknown FROM flag ${flag}`);
      }
      const image = substitute(words[0] ?? '', globalArgs);
      if (!image) throw new Error(`line ${line}: FROM without an image`);
      const name = words[1]?.toUpperCase() === 'AS' && words[2] ? words[2] : String(stages.length);
      stages.push({ name, from: image, platform, instructions: [] });
      continue;
    }
    if (stages.length === 0) {
      if (keyword !== 'ARG') throw new Error(`line ${line}: only ARG may come before FROM, got ${keyword}`);
      for (const word of rest.split(/\s+/)) {
        const eq = word.indexOf('=');
        globalArgs[eq === -1 ? word : word.slice(0, eq)] = eq === -1 ? '' : word.slice(eq + 1);
      }
      continue;
    }
    stages.at(-1)!.instructions.push({ keyword, rest, line });
  }
  if (stages.length === 0) throw new Error('Dockerfile has no FROM');
  return { globalArgs, stages };
}

export function readDockerfile(file: string): Dockerfile {
  return parseDockerfile(fs.readFileSync(file, 'utf8'));
}

export function stage(dockerfile: Dockerfile, name: string): Stage {
  const found = dockerfile.stages.find((s) => s.name === name);
  if (!found) throw new Error(`no stage "${name}" in: ${dockerfile.stages.map((s) => s.name).join(', ')}`);
  return found;
}

export function finalStage(dockerfile: Dockerfile): Stage {
  return dockerfile.stages.at(-1)!;
}

/** The variables visible to an instruction: the stage's ARGs (globals re-declared keep their default) and ENVs so far. */
function variablesBefore(dockerfile: Dockerfile, s: Stage, index: number): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const ins of s.instructions.slice(0, index)) {
    if (ins.keyword === 'ARG') {
      for (const word of ins.rest.split(/\s+/)) {
        const eq = word.indexOf('=');
        const name = eq === -1 ? word : word.slice(0, eq);
        vars[name] = eq === -1 ? (dockerfile.globalArgs[name] ?? '') : substitute(word.slice(eq + 1), vars);
      }
    } else if (ins.keyword === 'ENV') {
      for (const [k, v] of parsePairs(substitute(ins.rest, vars))) vars[k] = v;
    }
  }
  return vars;
}

/** An exec-form (JSON array) ENTRYPOINT/CMD; the shell form is rejected (it would wrap the CLI in sh -c). */
export function execForm(ins: Instruction): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(ins.rest);
  } catch {
    throw new Error(`line ${ins.line}: ${ins.keyword} is not in exec (JSON array) form: ${ins.rest}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'string')) throw new Error(`line ${ins.line}: ${ins.keyword} must be a JSON array of strings`);
  return parsed as string[];
}

export function parseCopy(ins: Instruction): Copy {
  const words = ins.rest.split(/\s+/);
  const flags: Record<string, string> = {};
  while (words[0]?.startsWith('--')) {
    const flag = words.shift()!.slice(2);
    const eq = flag.indexOf('=');
    flags[eq === -1 ? flag : flag.slice(0, eq)] = eq === -1 ? 'true' : flag.slice(eq + 1);
  }
  if (words.length < 2) throw new Error(`line ${ins.line}: COPY needs a source and a destination`);
  return { from: flags.from, flags, sources: words.slice(0, -1), dest: words.at(-1)! };
}

/**
 * The configuration a container of the final stage starts with. `baseEnv` stands for the
 * environment the base image brings (e.g. PATH); the stage's ENV instructions override it.
 */
export function imageConfig(dockerfile: Dockerfile, baseEnv: Record<string, string> = {}): ImageConfig {
  const s = finalStage(dockerfile);
  const config: ImageConfig = { entrypoint: [], cmd: [], workdir: '/', user: undefined, env: { ...baseEnv }, labels: {} };
  s.instructions.forEach((ins, index) => {
    const vars = { ...variablesBefore(dockerfile, s, index) };
    switch (ins.keyword) {
      case 'ENV':
        for (const [k, v] of parsePairs(substitute(ins.rest, { ...config.env, ...vars }))) config.env[k] = v;
        break;
      case 'LABEL':
        for (const [k, v] of parsePairs(substitute(ins.rest, vars))) config.labels[k] = v;
        break;
      case 'WORKDIR': {
        const dir = substitute(ins.rest.trim(), vars);
        config.workdir = path.posix.resolve(config.workdir, dir);
        break;
      }
      case 'USER':
        config.user = substitute(ins.rest.trim(), vars);
        break;
      case 'ENTRYPOINT':
        config.entrypoint = execForm(ins);
        config.cmd = []; // Docker resets CMD when ENTRYPOINT is set after it
        break;
      case 'CMD':
        config.cmd = execForm(ins);
        break;
    }
  });
  return config;
}

/**
 * .dockerignore: which paths (relative, '/'-separated) are left out of the build context.
 * Same rules as Docker's pattern matcher: a path is excluded when it or one of its parent
 * directories matches a pattern; the last matching pattern wins; `!` re-includes; `*` and `?`
 * stay inside one path segment, `**` spans any number of them.
 */
export function dockerignoreMatcher(text: string): (rel: string) => boolean {
  const patterns = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const body = path.posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+|\/+$/g, '');
      const regex = body
        .split('/')
        .map((segment) =>
          segment === '**'
            ? '\u0000'
            : segment.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'),
        )
        .join('/')
        .replace(/\u0000\//g, '(?:.*/)?')
        .replace(/\/\u0000/g, '(?:/.*)?')
        .replace(/\u0000/g, '.*');
      return { negate, re: new RegExp(`^${regex}$`) };
    });
  return (rel: string) => {
    const parts = rel.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const p of patterns) {
      if (candidates.some((c) => p.re.test(c))) excluded = !p.negate;
    }
    return excluded;
  };
}

/** Every file of the build context (relative paths, sorted) after .dockerignore, like `docker build .` sends it. */
export function buildContextFiles(root: string): string[] {
  const ignorePath = path.join(root, '.dockerignore');
  const ignored = fs.existsSync(ignorePath) ? dockerignoreMatcher(fs.readFileSync(ignorePath, 'utf8')) : () => false;
  const files: string[] = [];
  const visit = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (ignored(childRel) && !(entry.isDirectory() && mayReinclude(childRel))) continue;
      if (entry.isDirectory()) visit(childRel);
      else if (!ignored(childRel)) files.push(childRel);
    }
  };
  // A directory that is excluded may still hold re-included files (`!dir/file`); look inside
  // when a negated pattern could match below it.
  const negations = fs.existsSync(ignorePath)
    ? fs
        .readFileSync(ignorePath, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith('!'))
        .map((l) => l.slice(1).replace(/^\/+/, ''))
    : [];
  const mayReinclude = (dir: string) => negations.some((n) => n.startsWith(`${dir}/`) || n.startsWith('**'));
  visit('');
  return files.sort();
}
