import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The values contract: values.schema.json at the repository top level. */
export const SCHEMA_PATH = fileURLToPath(new URL('../values.schema.json', import.meta.url));

/** The part of JSON Schema draft-07 the values schema uses. */
export interface SchemaNode {
  description?: string;
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
  required?: string[];
  items?: SchemaNode;
  enum?: unknown[];
  default?: unknown;
  examples?: unknown[];
  $ref?: string;
  anyOf?: SchemaNode[];
  allOf?: SchemaNode[];
  definitions?: Record<string, SchemaNode>;
  [keyword: string]: unknown;
}

export function readSchemaText(): string {
  return readFileSync(SCHEMA_PATH, 'utf8');
}

export function readSchema(): SchemaNode {
  return JSON.parse(readSchemaText()) as SchemaNode;
}

/**
 * The node a value's shape is read from: a `$ref` (`#/definitions/NAME`) is followed, and so is
 * the single `allOf` entry the schema uses to give a referenced shape its own description and
 * default.
 */
export function deref(root: SchemaNode, node: SchemaNode): SchemaNode {
  if (node.$ref !== undefined) {
    const name = /^#\/definitions\/([A-Za-z0-9]+)$/.exec(node.$ref)?.[1];
    const target = name ? root.definitions?.[name] : undefined;
    if (!target) throw new Error(`values.schema.json: unknown $ref ${node.$ref}`);
    return deref(root, target);
  }
  if (node.allOf?.length === 1 && node.type === undefined && node.properties === undefined) return deref(root, node.allOf[0]!);
  return node;
}

/** The alternatives a value may take (`anyOf` entries), each dereferenced; one entry otherwise. */
export function alternatives(root: SchemaNode, node: SchemaNode): SchemaNode[] {
  const resolved = deref(root, node);
  return resolved.anyOf ? resolved.anyOf.flatMap((entry) => alternatives(root, entry)) : [resolved];
}

/** Sections whose keys are open: a parent chart may put anything into global. */
const OPEN_SECTIONS = new Set(['global']);

/** A section is an object with declared properties; everything else is a value (a leaf). */
export function isSection(node: SchemaNode): boolean {
  return node.properties !== undefined;
}

export interface ValueEntry {
  /** Dotted path, e.g. `backup.keepLast`. */
  path: string;
  key: string;
  node: SchemaNode;
}

/** Every value (leaf) of the schema, depth first in declaration order. */
export function valueEntries(schema: SchemaNode, prefix = ''): ValueEntry[] {
  return Object.entries(schema.properties ?? {}).flatMap(([key, node]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    return isSection(node) ? valueEntries(node, path) : [{ path, key, node }];
  });
}

/** The defaults the schema declares, as the values tree Helm starts from. */
export function schemaDefaults(schema: SchemaNode): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [key, node] of Object.entries(schema.properties ?? {})) {
    if (isSection(node)) result[key] = schemaDefaults(node);
    else if ('default' in node) result[key] = node.default;
  }
  return result;
}

/**
 * Checks the conventions values.yaml depends on: every key documented with a description
 * that starts with the key name, and every value defaulted, required, or given an example.
 */
export function checkSchemaConventions(schema: SchemaNode, prefix = ''): string[] {
  const problems: string[] = [];
  for (const [key, node] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (!node.description?.startsWith(`${key} `)) problems.push(`${path}: description must start with "${key} "`);
    if (isSection(node)) {
      if (node.additionalProperties !== false && !OPEN_SECTIONS.has(path)) problems.push(`${path}: sections need additionalProperties: false`);
      problems.push(...checkSchemaConventions(node, path));
    } else if (!('default' in node) && !(schema.required ?? []).includes(key) && node.examples === undefined) {
      problems.push(`${path}: needs a default, an example (shown commented out) or must be required`);
    }
  }
  return problems;
}
