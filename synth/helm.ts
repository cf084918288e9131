import { ApiObject, App, Chart, JsonPatch } from 'cdk8s';
import type { IConstruct } from 'constructs';
import { stringify } from 'yaml';

/**
 * Helm templating for cdk8s output.
 *
 * cdk8s writes frozen YAML, so values-driven fields are first filled with placeholder tokens:
 * bare words (`HELMTPL12X`) that YAML writes unquoted wherever they sit — in a string field, an
 * integer field or in place of a whole object. After cdk8s has synthesized a template, every
 * token is swapped for Helm template text:
 *
 * - an inline token is replaced by its text in place (`suspend: {{ .Values.backup.suspend }}`),
 *   so numbers and booleans come out unquoted;
 * - a line token must stand alone as a value (`key: T`, a list item `- T`, or a map entry `T: ""`)
 *   and its whole line is replaced by lines that know their indentation, which is how `if`/`with`
 *   guards and `toYaml | nindent N` blocks are written.
 */

const TOKEN_PATTERN = /HELMTPL\d+X/g;

/**
 * A value-driven field: the Helm expression that yields it, and how it is written.
 * `optional*` fields are left out while the value is null, `nonEmptyString` ones while empty;
 * `nonEmptyScalar` is text that already is a YAML scalar (a helper's quoted output), written as
 * it is and left out while empty; `yaml` fields (objects and lists) are written with `toYaml`
 * and left out while empty.
 */
export interface HelmValue {
  kind: 'string' | 'integer' | 'boolean' | 'optionalInteger' | 'nonEmptyString' | 'nonEmptyScalar' | 'yaml';
  expr: string;
}

/** Where a line token stood: its indentation and, for `key: T`, the key. */
export interface LinePosition {
  indent: number;
  key?: string;
  listItem: boolean;
}

/** Returns template lines relative to the token's indentation (each gets `indent` spaces prepended). */
export type LineRender = (at: LinePosition) => string[];

export class HelmPlaceholders {
  private readonly inlineText = new Map<string, string>();
  private readonly lineRenders = new Map<string, LineRender>();
  private readonly resolved = new Set<string>();
  private counter = 0;

  /** The registry of the app `scope` belongs to. */
  static of(scope: IConstruct): HelmPlaceholders {
    const root = scope.node.root;
    if (!(root instanceof HelmChartApp)) throw new Error(`${scope.node.path} is not inside a HelmChartApp`);
    return root.placeholders;
  }

  /** A token replaced by `text` verbatim. */
  inline(text: string): string {
    const token = this.nextToken();
    this.inlineText.set(token, text);
    return token;
  }

  /** A token whose whole line is replaced by the lines `render` returns. */
  lines(render: LineRender): string {
    const token = this.nextToken();
    this.lineRenders.set(token, render);
    return token;
  }

  /** Replaces every token in a YAML text (tokens inside rendered lines too). */
  resolve(text: string): string {
    let current = text;
    for (let pass = 0; pass < 8; pass++) {
      const next = current
        .split('\n')
        .flatMap((line) => this.resolveLine(line))
        .join('\n');
      if (next.search(TOKEN_PATTERN) === -1) return next;
      current = next;
    }
    throw new Error('placeholders still unresolved after 8 passes; a line render probably returns its own token');
  }

  /**
   * Placeholders that never appeared in any rendered template. A value that was set but got
   * lost on the way (a field cdk8s-plus dropped, a wrong JSON pointer) shows up here.
   */
  unresolved(): string[] {
    const all = [...this.inlineText.keys(), ...this.lineRenders.keys()];
    return all.filter((token) => !this.resolved.has(token)).map((token) => `${token} (${this.inlineText.get(token) ?? 'line placeholder'})`);
  }

  /** A field in a manifest (`key: T`), written the way its kind needs. */
  field(value: HelmValue): string {
    const { expr } = value;
    switch (value.kind) {
      case 'string':
      case 'integer':
      case 'boolean':
        return this.inline(scalarText(value));
      case 'optionalInteger':
        return this.lines((at) => [`{{- if not (kindIs "invalid" ${expr}) }}`, `${requireKey(at, expr)}: ${scalarText(value)}`, '{{- end }}']);
      case 'nonEmptyString':
        return this.lines((at) => [`{{- with ${expr} }}`, `${requireKey(at, expr)}: {{ . | quote }}`, '{{- end }}']);
      case 'nonEmptyScalar':
        return this.lines((at) => [`{{- with ${expr} }}`, `${requireKey(at, expr)}: {{ . }}`, '{{- end }}']);
      case 'yaml':
        return this.lines((at) => [`{{- with ${expr} }}`, `${requireKey(at, expr)}:`, `  {{- toYaml . | nindent ${at.indent + 2} }}`, '{{- end }}']);
    }
  }

  /** One command-line argument (always a string). */
  arg(value: HelmValue): string {
    const pipeline = isInteger(value) ? `${value.expr} | int64 | quote` : `${value.expr} | quote`;
    return this.inline(`{{ ${pipeline} }}`);
  }

  /** `FLAG VALUE` when the value is set (not null, not empty). */
  optionalArg(flag: string, value: HelmValue): string {
    const condition = value.kind === 'optionalInteger' ? `if not (kindIs "invalid" ${value.expr})` : `if ${value.expr}`;
    return this.listLines([`{{- ${condition} }}`, `- ${flag}`, `- ${this.arg(value)}`, '{{- end }}']);
  }

  /** `FLAG ITEM` once per item of a list value; `item` is the expression of the argument for the item `.`. */
  repeatedArg(flag: string, list: HelmValue, item = '.'): string {
    return this.listLines([`{{- range ${list.expr} }}`, `- ${flag}`, `- {{ ${item} | quote }}`, '{{- end }}']);
  }

  /** `FLAG` alone when a boolean value is true. */
  switchArg(flag: string, value: HelmValue): string {
    return this.argsWhen(value, [flag]);
  }

  /** Several arguments (plain text or `arg` tokens) when a boolean value is true. */
  argsWhen(condition: HelmValue, args: string[]): string {
    return this.listLines([`{{- if ${condition.expr} }}`, ...args.map((a) => `- ${a}`), '{{- end }}']);
  }

  /** `items` (which may hold placeholders) appended to the list this token stands in when a boolean value is true. */
  itemsWhen(condition: HelmValue, items: unknown[]): string {
    return this.listLines([`{{- if ${condition.expr} }}`, ...toYamlLines(items, 0), '{{- end }}']);
  }

  /** The items of a list value appended to the list this token stands in. */
  appendItems(list: HelmValue): string {
    return this.lines((at) => {
      if (!at.listItem) throw new Error(`${list.expr} items must be placed as a list item`);
      return [`{{- with ${list.expr} }}`, `{{- toYaml . | nindent ${at.indent} }}`, '{{- end }}'];
    });
  }

  private listLines(lines: string[]): string {
    return this.lines((at) => {
      if (!at.listItem) throw new Error(`these lines must be placed as a list item: ${lines.join(' ')}`);
      return lines;
    });
  }

  private resolveLine(line: string): string[] {
    const lineToken = [...line.matchAll(TOKEN_PATTERN)].map((m) => m[0]).find((t) => this.lineRenders.has(t));
    if (lineToken) {
      this.resolved.add(lineToken);
      return this.renderLine(line, lineToken);
    }
    return [
      line.replace(TOKEN_PATTERN, (token) => {
        const text = this.inlineText.get(token);
        if (text === undefined) throw new Error(`unknown placeholder ${token} in line: ${line}`);
        this.resolved.add(token);
        return text;
      }),
    ];
  }

  private renderLine(line: string, token: string): string[] {
    const keyed = new RegExp(`^( *)([^\\s:#-][^:]*): ${token}$`).exec(line);
    const item = new RegExp(`^( *)- ${token}$`).exec(line);
    const entry = new RegExp(`^( *)${token}: ""$`).exec(line);
    let at: LinePosition;
    if (keyed) at = { indent: keyed[1]!.length, key: keyed[2]!, listItem: false };
    else if (item) at = { indent: item[1]!.length, listItem: true };
    else if (entry) at = { indent: entry[1]!.length, listItem: false };
    else {
      throw new Error(`placeholder ${token} must stand alone as "key: T", "- T" or "T: \\"\\"", found: ${line.trim()}`);
    }
    const pad = ' '.repeat(at.indent);
    return this.lineRenders.get(token)!(at).map((l) => pad + l);
  }

  private nextToken(): string {
    this.counter += 1;
    return `HELMTPL${this.counter}X`;
  }
}

function requireKey(at: LinePosition, expr: string): string {
  if (at.key === undefined) throw new Error(`${expr} must be placed as the value of a key`);
  return at.key;
}

function isInteger(value: HelmValue): boolean {
  return value.kind === 'integer' || value.kind === 'optionalInteger';
}

/**
 * Template text for a scalar field. Integers go through int64 because Helm reads numbers from
 * values files as float64, which would print 1000000 as 1e+06.
 */
function scalarText(value: HelmValue): string {
  if (isInteger(value)) return `{{ ${value.expr} | int64 }}`;
  if (value.kind === 'boolean') return `{{ ${value.expr} }}`;
  return `{{ ${value.expr} | quote }}`;
}

/** The cdk8s app behind one Helm chart: its charts are the template files. */
export class HelmChartApp extends App {
  readonly placeholders = new HelmPlaceholders();

  /** Every template file, in construction order. */
  get templateFiles(): TemplateFile[] {
    return this.charts.filter((c): c is TemplateFile => c instanceof TemplateFile);
  }
}

export interface TemplateFileProps {
  /** File name under templates/. */
  readonly fileName: string;
  /** Helm condition that guards the whole file, e.g. `.Values.backup.enabled`. */
  readonly condition?: string;
  /** The construct module the template comes from, named in a header comment. */
  readonly source: string;
}

/** Post-processes one synthesized manifest (plain JSON) before it is written as YAML. */
export type ManifestTransform = (manifest: Record<string, unknown>) => Record<string, unknown>;

/** One file under templates/: a cdk8s Chart holding the Kubernetes object(s) of that file. */
export class TemplateFile extends Chart {
  private readonly preamble: string[] = [];
  private readonly scope: { before: string[]; after: string[] } = { before: [], after: [] };
  private readonly transforms: ManifestTransform[] = [];
  private readonly fields = new Map<ApiObject, JsonPatch[]>();

  /** The template file a construct belongs to. */
  static ofConstruct(scope: IConstruct): TemplateFile {
    const chart = Chart.of(scope);
    if (!(chart instanceof TemplateFile)) throw new Error(`${scope.node.path} is not inside a TemplateFile`);
    return chart as TemplateFile;
  }

  constructor(
    scope: HelmChartApp,
    id: string,
    readonly props: TemplateFileProps,
  ) {
    super(scope, id, { disableResourceNameHashes: true });
  }

  /** Template lines placed before the manifest (inside the file's condition), e.g. variables. */
  addPreamble(...lines: string[]): void {
    this.preamble.push(...lines);
  }

  /**
   * Template lines around the preamble and manifest (inside the file's condition): `before` ends
   * in a `range` or `with` that sets `.`, `after` closes it.
   */
  setScope(before: string[], after: string[]): void {
    if (this.scope.before.length > 0) throw new Error(`${this.props.fileName} has a scope already`);
    this.scope.before.push(...before);
    this.scope.after.push(...after);
  }

  addTransform(transform: ManifestTransform): void {
    this.transforms.push(transform);
  }

  /**
   * Sets fields of an API object after it is synthesized. (cdk8s's own addJsonPatch runs before
   * cdk8s-plus maps its typed props to JSON, and that mapping drops a placeholder that stands in
   * for an object or fails on one that stands in for a list.)
   */
  addFields(apiObject: ApiObject, fields: Record<string, unknown>): void {
    const patches = this.fields.get(apiObject) ?? [];
    patches.push(...Object.entries(fields).map(([pointer, value]) => JsonPatch.add(pointer, value)));
    this.fields.set(apiObject, patches);
  }

  private manifests(): Record<string, unknown>[] {
    return (this.toJson() as Record<string, unknown>[]).map((manifest) => {
      const metadata = manifest.metadata as { name?: string } | undefined;
      const source = [...this.fields.keys()].find((o) => o.kind === manifest.kind && o.name === metadata?.name);
      const patches = source ? (this.fields.get(source) ?? []) : [];
      const patched = JsonPatch.apply(manifest, ...patches) as Record<string, unknown>;
      return this.transforms.reduce((m, transform) => transform(m), patched);
    });
  }

  /** The finished Helm template text. */
  render(): string {
    const placeholders = HelmPlaceholders.of(this);
    const body = this.manifests()
      .map((manifest) => toYaml(manifest))
      .join('---\n');
    const lines = [
      `{{- /* Generated by npm run synth from ${this.props.source}; edit that file, not this one. */}}`,
      ...(this.props.condition ? [`{{- if ${this.props.condition} }}`] : []),
      ...this.scope.before,
      ...this.preamble,
      placeholders.resolve(body).replace(/\n$/, ''),
      ...this.scope.after,
      ...(this.props.condition ? ['{{- end }}'] : []),
    ];
    return lines.join('\n') + '\n';
  }
}

/** Deterministic YAML, never wrapped (placeholders must stay on one line). */
export function toYaml(value: unknown): string {
  return stringify(value, { lineWidth: 0, minContentWidth: 0, indent: 2, indentSeq: true, sortMapEntries: true });
}

/** YAML lines of `value` nested `indent` spaces deeper, for embedding in a line render. */
export function toYamlLines(value: unknown, indent: number): string[] {
  const pad = ' '.repeat(indent);
  return toYaml(value)
    .replace(/\n$/, '')
    .split('\n')
    .map((l) => pad + l);
}

/** Puts placeholders (or plain values) at JSON pointers of an API object, after synthesis. */
export function setFields(apiObject: ApiObject, fields: Record<string, unknown>): void {
  TemplateFile.ofConstruct(apiObject).addFields(apiObject, fields);
}
