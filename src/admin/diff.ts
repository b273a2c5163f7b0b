// `hecate check -config=FILE --diff ADMIN_URL [--token T]`: compare a (valid) file with the
// config a running instance serves (GET /admin/config) and print what a reload would change:
// routes added / removed / changed (with the changed keys), upstreams added / removed, global
// policy and every other section, key by key. Both sides go through configView(), so
// defaults compare equal and secrets are "<redacted>" on both sides (not compared).
//
// Exit status: 0 when the comparison was printed (differences or not), 2 when the running
// instance could not be asked. An invalid FILE exits 1 before this runs (main.ts).
import type { CompiledConfig } from "../config/compile.ts";
import { configView } from "./config-view.ts";
import { RESTART_KEYS } from "../runtime/reload.ts";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

export interface Change {
  path: string;
  before: Json | undefined;
  after: Json | undefined;
}

export interface ConfigDiff {
  routes: { added: string[]; removed: string[]; changed: { name: string; changes: Change[] }[] };
  upstreams: { added: { url: string; routes: string[] }[]; removed: { url: string; routes: string[] }[] };
  policies: Change[];
  other: Change[];
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

/** Leaf-by-leaf differences of two JSON values; arrays are compared as whole values. */
export function diffValues(a: Json | undefined, b: Json | undefined, path: string, out: Change[]): void {
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) diffValues(a[k], b[k], path ? `${path}.${k}` : k, out);
    return;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path, before: a, after: b });
}

function routesOf(c: Obj): Obj[] {
  const p = c.proxy;
  return isObj(p) && Array.isArray(p.routes) ? (p.routes.filter(isObj) as Obj[]) : [];
}

function upstreamsOf(c: Obj): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const r of routesOf(c)) {
    for (const u of Array.isArray(r.upstreams) ? r.upstreams : []) {
      const url = typeof u === "string" ? u : isObj(u) && typeof u.url === "string" ? u.url : null;
      if (url === null) continue;
      const list = m.get(url) ?? [];
      list.push(String(r.name));
      m.set(url, list);
    }
  }
  return m;
}

/** What changes from `running` to `file` (both configView() shaped). */
export function diffConfigs(running: Obj, file: Obj): ConfigDiff {
  const before = new Map(routesOf(running).map((r) => [String(r.name), r]));
  const after = new Map(routesOf(file).map((r) => [String(r.name), r]));
  const routes: ConfigDiff["routes"] = { added: [], removed: [], changed: [] };
  for (const [name, r] of after) {
    const old = before.get(name);
    if (!old) {
      routes.added.push(name);
      continue;
    }
    const changes: Change[] = [];
    diffValues(old, r, "", changes);
    if (changes.length > 0) routes.changed.push({ name, changes });
  }
  for (const name of before.keys()) if (!after.has(name)) routes.removed.push(name);

  const ub = upstreamsOf(running);
  const ua = upstreamsOf(file);
  const upstreams: ConfigDiff["upstreams"] = {
    added: [...ua].filter(([u]) => !ub.has(u)).map(([url, rs]) => ({ url, routes: rs })),
    removed: [...ub].filter(([u]) => !ua.has(u)).map(([url, rs]) => ({ url, routes: rs })),
  };

  const policy = (c: Obj) => (isObj(c.proxy) ? c.proxy.policy : undefined);
  const policies: Change[] = [];
  diffValues(policy(running), policy(file), "proxy.policy", policies);

  const rest = (c: Obj): Obj => {
    const copy = { ...c };
    if (isObj(c.proxy)) {
      const { routes: _r, policy: _p, ...p } = c.proxy;
      copy.proxy = p;
    }
    return copy;
  };
  const other: Change[] = [];
  diffValues(rest(running), rest(file), "", other);
  return { routes, upstreams, policies, other };
}

function show(v: Json | undefined): string {
  if (v === undefined) return "(absent)";
  const s = JSON.stringify(v);
  return s.length > 120 ? s.slice(0, 117) + "…" : s;
}

const RESTART = new Set<string>(RESTART_KEYS);

function changeLine(c: Change, indent: string): string {
  const restart = RESTART.has(c.path) || (c.path === "tls" && (c.before === undefined || c.after === undefined)) ? "  (needs restart)" : "";
  return `${indent}${c.path}: ${show(c.before)} → ${show(c.after)}${restart}\n`;
}

export function formatDiff(d: ConfigDiff, file: Obj): string {
  let out = "";
  const fileRoutes = new Map(routesOf(file).map((r) => [String(r.name), r]));
  const n = d.routes.added.length + d.routes.removed.length + d.routes.changed.length;
  out += `routes: ${n === 0 ? "no changes" : `${d.routes.added.length} added, ${d.routes.removed.length} removed, ${d.routes.changed.length} changed`}\n`;
  for (const name of d.routes.added) {
    const r = fileRoutes.get(name)!;
    const hosts = Array.isArray(r.hosts) && r.hosts.length > 0 ? r.hosts.join(",") : "*";
    out += `  + ${name}  hosts=${hosts} pathPrefix=${String(r.pathPrefix)} upstreams=${show(r.upstreams)}\n`;
  }
  for (const name of d.routes.removed) out += `  - ${name}\n`;
  for (const c of d.routes.changed) {
    out += `  ~ ${c.name}: ${c.changes.map((x) => x.path).join(", ")}\n`;
    for (const x of c.changes) out += changeLine(x, "      ");
  }
  const u = d.upstreams.added.length + d.upstreams.removed.length;
  out += `upstreams: ${u === 0 ? "no changes" : `${d.upstreams.added.length} added, ${d.upstreams.removed.length} removed`}\n`;
  for (const x of d.upstreams.added) out += `  + ${x.url}  (routes: ${x.routes.join(", ")})\n`;
  for (const x of d.upstreams.removed) out += `  - ${x.url}  (was in routes: ${x.routes.join(", ")})\n`;
  out += `policies: ${d.policies.length === 0 ? "no changes" : `${d.policies.length} changed key${d.policies.length === 1 ? "" : "s"}`}\n`;
  for (const x of d.policies) out += changeLine(x, "  ~ ");
  out += `other settings: ${d.other.length === 0 ? "no changes" : `${d.other.length} changed key${d.other.length === 1 ? "" : "s"}`}\n`;
  for (const x of d.other) out += changeLine(x, "  ~ ");
  return out;
}

export async function printDiff(next: CompiledConfig, adminUrl: string, token: string | null): Promise<number> {
  const base = (/^https?:\/\//i.test(adminUrl) ? adminUrl : `http://${adminUrl}`).replace(/\/+$/, "");
  const headers: Record<string, string> = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  let running: Obj;
  try {
    const res = await fetch(`${base}/admin/config`, { headers, signal: AbortSignal.timeout(10_000) });
    if (res.status === 401) {
      process.stderr.write(`hecate check --diff: ${base}/admin/config answered 401: pass the admin token with --token\n`);
      return 2;
    }
    if (!res.ok) {
      process.stderr.write(`hecate check --diff: ${base}/admin/config answered ${res.status}\n`);
      return 2;
    }
    const body: unknown = await res.json();
    if (!isObj(body)) throw new Error("the answer is not a JSON object");
    running = body;
  } catch (e) {
    process.stderr.write(`hecate check --diff: cannot read the running config from ${base}/admin/config: ${(e as Error).message}\n`);
    return 2;
  }
  const file = JSON.parse(JSON.stringify(configView(next.config))) as Obj;
  const d = diffConfigs(running, file);
  process.stdout.write(`\ndiff: running instance at ${base} → this file (secrets are redacted on both sides and not compared)\n`);
  process.stdout.write(formatDiff(d, file));
  return 0;
}
