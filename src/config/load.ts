// Read a config file → validated `Config` with defaults, or every error with its key path.
// Errors never throw out of here: a bad config is data (`ConfigError[]`) so that `check`,
// startup and reload can all report every problem at once.
//
// Error shapes (what `hecate check` prints, one per line):
//   <key path>: <message>                e.g. proxy.routes[0].pathPrefx: unknown key, did you mean pathPrefix?
//   <file>:<line>:<col>: <message>       YAML syntax errors (path "", the position is in the message)
//   <file>: <message>                    the file cannot be read
// Errors from a YAML file are sorted by where their key appears in the file.
import * as v from "valibot";
import { parseDocument, LineCounter, isMap, isSeq, isScalar, isPair, type Document, type Node as YamlNode } from "yaml";
import { ConfigSchema, type Config } from "./schema.ts";

export interface ConfigError {
  /** Key path as an operator writes it: `proxy.routes[0].pathPrefix`; "" for the file itself. */
  path: string;
  message: string;
}

export type LoadResult = { ok: true; config: Config; source: string } | { ok: false; errors: ConfigError[] };

/** One error as a line of `hecate check` output. */
export function formatError(e: ConfigError): string {
  return e.path ? `${e.path}: ${e.message}` : e.message;
}

export function formatPath(parts: readonly (string | number)[]): string {
  let out = "";
  for (const p of parts) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? p : `.${p}`;
  }
  return out;
}

/** `proxy.routes[0].name` → ["proxy", "routes", 0, "name"] */
export function parsePath(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of path.matchAll(/\[(\d+)\]|([^.[\]]+)/g)) out.push(m[1] !== undefined ? Number(m[1]) : m[2]!);
  return out;
}

const READ_ERRORS: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EISDIR: "is a directory, not a file",
};

export async function loadConfigFile(file: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await Bun.file(file).text();
  } catch (e) {
    const code = (e as { code?: string }).code ?? "";
    return { ok: false, errors: [{ path: "", message: `${file}: cannot read the config file: ${READ_ERRORS[code] ?? (e as Error).message}` }] };
  }
  return parseConfigText(text, file);
}

/** Parse YAML text and validate it. `file` is only used in messages. */
export function parseConfigText(text: string, file = "<config>"): LoadResult {
  const lineCounter = new LineCounter();
  // merge: `<<: *anchor` works (handy for routes that share settings); uniqueKeys: a key given
  // twice in one mapping is an error rather than "the last one wins".
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        let msg = e.message.split("\n")[0]!;
        if (e.code === "DUPLICATE_KEY") {
          const key = /^["']?([^"':\n]+)/.exec(text.slice(e.pos[0]))?.[1];
          msg = key ? `duplicate key ${JSON.stringify(key.trim())}: a key may appear only once in a mapping` : msg;
        } else if (e.code === "BAD_INDENT" || (e.code === "MISSING_CHAR" && msg.startsWith("Sequence item"))) msg += " (check the indentation of this line and the one above)";
        return { path: "", message: `${file}:${pos.line}:${pos.col}: ${msg}` };
      }),
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    return { ok: false, errors: [{ path: "", message: `${file}: ${(e as Error).message.split("\n")[0]}` }] };
  }
  const res = validateConfig(raw);
  if (!res.ok) sortByPosition(res.errors, doc);
  return res;
}

/** Validate an already-parsed object (YAML or JSON). */
export function validateConfig(input: unknown): LoadResult {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    return { ok: false, errors: [{ path: "", message: `the config must be a mapping of sections (admin, proxy, tls, telemetry) (got ${describe(input)})` }] };
  }
  // A key with no value (`lb:` with everything under it commented out) counts as absent, as
  // it did in the Go original; its defaults apply.
  const raw = dropNulls(input) as Record<string, unknown>;
  const errors: ConfigError[] = [];
  findUnknownKeys(ConfigSchema as unknown as AnySchema, raw, [], errors);
  const res = v.safeParse(ConfigSchema, raw, { abortEarly: false, abortPipeEarly: true });
  if (!res.success) {
    for (const issue of res.issues) {
      const parts = (issue.path ?? []).map((p) => p.key as string | number);
      errors.push({ path: formatPath(parts), message: issueMessage(issue) });
    }
  }
  crossChecks(raw, errors);
  if (errors.length > 0) return { ok: false, errors: dedupe(errors) };
  return { ok: true, config: res.output as Config, source: "" };
}

function dropNulls(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(dropNulls);
  if (x === null || typeof x !== "object") return x;
  const out: Record<string, unknown> = {};
  // defineProperty, not `out[k] =`: a `__proto__` key must stay a key (and be reported as unknown),
  // not become the prototype that valibot would read inherited keys from
  for (const [k, val] of Object.entries(x))
    if (val !== null && val !== undefined) Object.defineProperty(out, k, { value: dropNulls(val), enumerable: true, writable: true, configurable: true });
  return out;
}

function issueMessage(issue: v.BaseIssue<unknown>): string {
  if (issue.kind === "schema" && issue.received === "undefined") return "is required";
  // valibot's own messages ("Invalid type: Expected … but received …") only show up where a
  // schema has no message of ours; say the same thing plainly.
  if (issue.message.startsWith("Invalid ")) return `must be ${issue.expected ?? "valid"} (got ${describe(issue.input)})`;
  return `${issue.message} (got ${describe(issue.input)})`;
}

/** Stands in for a list found where a mapping belongs (valibot would take a list for an object). */
const A_LIST = Symbol("a list");

function describe(x: unknown): string {
  if (x === A_LIST) return "a list";
  if (typeof x === "string") return JSON.stringify(x.length > 60 ? x.slice(0, 60) + "…" : x);
  if (Array.isArray(x)) return x.length === 0 ? "an empty list" : "a list";
  if (x === null || x === undefined) return "nothing";
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

// --- checks across keys -----------------------------------------------------------------
// Each looks only at values of the right type (the schema reports the others), so they run
// beside the schema and their errors come out together with its errors.

const isObj = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === "object" && !Array.isArray(x);

function crossChecks(raw: Record<string, unknown>, errors: ConfigError[]): void {
  const proxy = isObj(raw.proxy) ? raw.proxy : {};
  const tls = isObj(raw.tls) ? raw.tls : undefined;

  if (Array.isArray(proxy.routes)) {
    const first = new Map<string, number>();
    proxy.routes.forEach((r, i) => {
      if (!isObj(r) || typeof r.name !== "string" || r.name === "") return;
      const j = first.get(r.name);
      if (j === undefined) first.set(r.name, i);
      else errors.push({ path: `proxy.routes[${i}].name`, message: `duplicate route name ${JSON.stringify(r.name)} (already used by proxy.routes[${j}])` });
    });
  }
  // `auth: {}` protects nothing: say so rather than run an open listener or route by surprise.
  const emptyAuth = (auth: unknown, path: string) => {
    if (isObj(auth) && auth.bearerToken === undefined && auth.basic === undefined)
      errors.push({ path, message: "needs bearerToken or basic (remove auth for no authentication)" });
  };
  if (isObj(raw.admin)) emptyAuth(raw.admin.auth, "admin.auth");
  if (Array.isArray(proxy.routes)) proxy.routes.forEach((r, i) => isObj(r) && emptyAuth(r.auth, `proxy.routes[${i}].auth`));
  if (proxy.enableHTTP3 === true && tls === undefined)
    errors.push({ path: "proxy.enableHTTP3", message: "HTTP/3 requires TLS: add a tls section (or set enableHTTP3: false)" });
  if (tls) {
    const certs = tls.certFiles ?? [];
    const keys = tls.keyFiles ?? [];
    if (Array.isArray(certs) && Array.isArray(keys) && certs.length !== keys.length)
      errors.push({
        path: "tls.keyFiles",
        message: `needs one key file per certificate file, paired by position (${certs.length} certFiles, ${keys.length} keyFiles)`,
      });
    if (tls.requireClientCert === true && (tls.clientCAFile === undefined || tls.clientCAFile === ""))
      errors.push({ path: "tls.requireClientCert", message: "needs tls.clientCAFile (the CA that signs client certificates)" });
  }
}

// --- where an error is in the file --------------------------------------------------------

/** Sort errors by the position of their key in the document (stable; unknown positions last). */
function sortByPosition(errors: ConfigError[], doc: Document): void {
  const at = new Map<ConfigError, number>();
  for (const e of errors) at.set(e, e.path === "" ? -1 : positionOf(doc, parsePath(e.path)));
  const order = new Map(errors.map((e, i) => [e, i]));
  errors.sort((a, b) => at.get(a)! - at.get(b)! || order.get(a)! - order.get(b)!);
}

/** Offset of the deepest key of `path` present in the document. */
function positionOf(doc: Document, path: (string | number)[]): number {
  let node: unknown = doc.contents;
  let pos = Number.MAX_SAFE_INTEGER;
  for (const part of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(part));
      if (!pair) break;
      pos = (pair.key as YamlNode).range?.[0] ?? pos;
      node = pair.value;
    } else if (isSeq(node) && typeof part === "number") {
      const item = node.items[part] as YamlNode | undefined;
      if (!item) break;
      pos = item.range?.[0] ?? pos;
      node = item;
    } else break;
  }
  return pos;
}

// --- unknown keys ----------------------------------------------------------------------

type AnySchema = {
  type: string;
  entries?: Record<string, AnySchema>;
  wrapped?: AnySchema;
  item?: AnySchema;
  options?: AnySchema[];
  value?: AnySchema;
  getter?: (input: unknown) => AnySchema;
};

/**
 * Walk the schema beside the value; every key the schema does not know is an error. A list
 * where a mapping belongs is swapped for A_LIST through `replace`, so that the schema reports
 * "must be a mapping (got a list)" there (valibot's object() accepts arrays).
 */
function findUnknownKeys(schema: AnySchema, value: unknown, path: (string | number)[], errors: ConfigError[], replace?: (v: unknown) => void): void {
  for (;;) {
    if (schema.type === "optional" || schema.type === "nullable" || schema.type === "nullish") schema = schema.wrapped!;
    else if (schema.type === "lazy") schema = schema.getter!(value);
    else break;
  }
  if (value === null || value === undefined) return;
  switch (schema.type) {
    case "object": {
      if (Array.isArray(value)) replace?.(A_LIST);
      if (typeof value !== "object" || Array.isArray(value)) return; // the type error is valibot's to report
      const entries = schema.entries!;
      const rec = value as Record<string, unknown>;
      for (const key of Object.keys(rec)) {
        // own keys only: `constructor`, `toString`, `__proto__` are not config keys
        const sub = Object.hasOwn(entries, key) ? entries[key] : undefined;
        if (sub) findUnknownKeys(sub, rec[key], [...path, key], errors, (nv) => (rec[key] = nv));
        else {
          const guess = closest(key, Object.keys(entries));
          errors.push({ path: formatPath([...path, key]), message: guess ? `unknown key, did you mean ${guess}?` : `unknown key (known keys here: ${Object.keys(entries).join(", ")})` });
        }
      }
      return;
    }
    case "array":
      if (Array.isArray(value)) value.forEach((item, i) => findUnknownKeys(schema.item!, item, [...path, i], errors, (nv) => (value[i] = nv)));
      return;
    case "record":
      if (Array.isArray(value)) replace?.(A_LIST);
      else if (typeof value === "object") {
        const rec = value as Record<string, unknown>;
        for (const [k, item] of Object.entries(rec)) findUnknownKeys(schema.value!, item, [...path, k], errors, (nv) => (rec[k] = nv));
      }
      return;
    case "union": {
      // Check against the object option when the value is a mapping.
      if (typeof value === "object" && !Array.isArray(value)) {
        const obj = schema.options!.find((o) => o.type === "object");
        if (obj) findUnknownKeys(obj, value, path, errors, replace);
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
