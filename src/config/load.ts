// Read a config file → validated `Config` with defaults, or every error with its key path.
// Errors never throw out of here: a bad config is data (`ConfigError[]`) so that `check`,
// startup and reload can all report every problem at once.
import * as v from "valibot";
import { parseDocument, LineCounter } from "yaml";
import { ConfigSchema, type Config } from "./schema.ts";

export interface ConfigError {
  /** Key path as an operator writes it: `proxy.routes[0].pathPrefix`; "" for the file itself. */
  path: string;
  message: string;
}

export type LoadResult = { ok: true; config: Config; source: string } | { ok: false; errors: ConfigError[] };

export function formatPath(parts: readonly (string | number)[]): string {
  let out = "";
  for (const p of parts) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? p : `.${p}`;
  }
  return out;
}

export async function loadConfigFile(file: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await Bun.file(file).text();
  } catch (e) {
    return { ok: false, errors: [{ path: "", message: `cannot read ${file}: ${(e as Error).message}` }] };
  }
  return parseConfigText(text, file);
}

/** Parse YAML text and validate it. `file` is only used in messages. */
export function parseConfigText(text: string, file = "<config>"): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { path: "", message: `${file}:${pos.line}:${pos.col}: ${e.message.split("\n")[0]}` };
      }),
    };
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  return validateConfig(raw);
}

/** Validate an already-parsed object (YAML or JSON). */
export function validateConfig(raw: unknown): LoadResult {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { ok: false, errors: [{ path: "", message: "the config must be a mapping of sections (admin, proxy, tls, telemetry)" }] };
  }
  const errors: ConfigError[] = [];
  findUnknownKeys(ConfigSchema as unknown as AnySchema, raw, [], errors);
  const res = v.safeParse(ConfigSchema, raw, { abortEarly: false, abortPipeEarly: true });
  if (!res.success) {
    for (const issue of res.issues) {
      const parts = (issue.path ?? []).map((p) => p.key as string | number);
      errors.push({ path: formatPath(parts), message: issueMessage(issue) });
    }
  }
  if (errors.length > 0) return { ok: false, errors: dedupe(errors) };
  return { ok: true, config: res.output as Config, source: "" };
}

function issueMessage(issue: v.BaseIssue<unknown>): string {
  if (issue.kind === "schema" && issue.received === "undefined") return "is required";
  // valibot's own messages are "Invalid type: Expected … but received …"; ours are plain.
  if (issue.message.startsWith("Invalid ")) {
    return `must be ${issue.expected ?? "valid"} (got ${issue.received})`;
  }
  return `${issue.message} (got ${describe(issue.input)})`;
}

function describe(x: unknown): string {
  if (typeof x === "string") return JSON.stringify(x.length > 60 ? x.slice(0, 60) + "…" : x);
  if (Array.isArray(x)) return "a list";
  if (x === null) return "null";
  if (typeof x === "object") return "a mapping";
  return String(x);
}

function dedupe(errors: ConfigError[]): ConfigError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = e.path + "\0" + e.message;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// --- unknown keys ----------------------------------------------------------------------

type AnySchema = { type: string; entries?: Record<string, AnySchema>; wrapped?: AnySchema; item?: AnySchema; options?: AnySchema[]; value?: AnySchema };

/** Walk the schema beside the value; every key the schema does not know is an error. */
function findUnknownKeys(schema: AnySchema, value: unknown, path: (string | number)[], errors: ConfigError[]): void {
  while (schema.type === "optional" || schema.type === "nullable" || schema.type === "nullish") schema = schema.wrapped!;
  if (value === null || value === undefined) return;
  switch (schema.type) {
    case "object": {
      if (typeof value !== "object" || Array.isArray(value)) return; // the type error is valibot's to report
      const entries = schema.entries!;
      for (const key of Object.keys(value)) {
        const sub = entries[key];
        if (sub) findUnknownKeys(sub, (value as Record<string, unknown>)[key], [...path, key], errors);
        else {
          const guess = closest(key, Object.keys(entries));
          errors.push({ path: formatPath([...path, key]), message: guess ? `unknown key, did you mean ${guess}?` : `unknown key (known: ${Object.keys(entries).join(", ")})` });
        }
      }
      return;
    }
    case "array":
      if (Array.isArray(value)) value.forEach((item, i) => findUnknownKeys(schema.item!, item, [...path, i], errors));
      return;
    case "record":
      if (typeof value === "object" && !Array.isArray(value))
        for (const [k, item] of Object.entries(value)) findUnknownKeys(schema.value!, item, [...path, k], errors);
      return;
    case "union": {
      // Check against the object option when the value is a mapping.
      if (typeof value === "object" && !Array.isArray(value)) {
        const obj = schema.options!.find((o) => o.type === "object");
        if (obj) findUnknownKeys(obj, value, path, errors);
      }
      return;
    }
  }
}

/** The known key nearest to `key` by edit distance, if it is plausibly a typo. */
export function closest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const lk = key.toLowerCase();
  for (const k of known) {
    const d = k.toLowerCase() === lk ? 0 : editDistance(lk, k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}
