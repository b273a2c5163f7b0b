// Host + path matcher, compiled once per generation (SPEC §3.2).
//
// Host first, then path, as nginx picks a server then a location. Host classes, best first:
// exact names, then wildcards by suffix length (longest first), then any-host routes. Within
// a class the longest matching pathPrefix wins (ties: earlier in the file). When no route of
// the best matching class matches the path, the next class is tried.

export interface Routable {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly pathPrefix: string;
  /** Position in the file, for ties. */
  readonly order: number;
}

/** Does `prefix` match `path` at a segment boundary? (`path` has no query string) */
export function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length || prefix.endsWith("/")) return true;
  return path.charCodeAt(prefix.length) === 47; // "/"
}

/** Lower-case the Host value and drop its port ("[::1]:8080" → "[::1]"). */
export function normalizeHost(host: string): string {
  let h = host;
  if (h.charCodeAt(0) === 91) {
    const end = h.indexOf("]");
    h = end > 0 ? h.slice(0, end + 1) : h;
  } else {
    const colon = h.lastIndexOf(":");
    if (colon >= 0) h = h.slice(0, colon);
  }
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h.toLowerCase();
}

interface HostClass<R> {
  /** "exact", "*.suffix" or "any" — used by explain and the route listing. */
  readonly label: string;
  readonly routes: R[]; // longest prefix first, then file order
}

export class Router<R extends Routable> {
  private readonly exact = new Map<string, HostClass<R>>();
  /** Wildcard classes, longest suffix first; suffix includes the leading dot. */
  private readonly wildcards: { suffix: string; cls: HostClass<R> }[] = [];
  private readonly any: HostClass<R> = { label: "any", routes: [] };
  /** Every route in precedence order (exact, wildcard, any), for listings. */
  readonly ordered: R[];

  constructor(routes: readonly R[]) {
    const wild = new Map<string, HostClass<R>>();
    for (const r of routes) {
      if (r.hosts.length === 0) {
        this.any.routes.push(r);
        continue;
      }
      for (const raw of r.hosts) {
        const h = raw.toLowerCase();
        if (h.startsWith("*.")) {
          const suffix = h.slice(1);
          let c = wild.get(suffix);
          if (!c) wild.set(suffix, (c = { label: h, routes: [] }));
          if (!c.routes.includes(r)) c.routes.push(r);
        } else {
          let c = this.exact.get(h);
          if (!c) this.exact.set(h, (c = { label: h, routes: [] }));
          if (!c.routes.includes(r)) c.routes.push(r);
        }
      }
    }
    const byPrefix = (a: R, b: R) => b.pathPrefix.length - a.pathPrefix.length || a.order - b.order;
    for (const c of this.exact.values()) c.routes.sort(byPrefix);
    for (const [suffix, cls] of wild) {
      cls.routes.sort(byPrefix);
      this.wildcards.push({ suffix, cls });
    }
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
    this.any.routes.sort(byPrefix);
    const seen = new Set<R>();
    const ordered: R[] = [];
    const add = (rs: R[]) => rs.forEach((r) => (seen.has(r) ? undefined : (seen.add(r), ordered.push(r))));
    for (const c of [...this.exact.values()].sort((a, b) => a.routes[0]!.order - b.routes[0]!.order)) add(c.routes);
    for (const w of this.wildcards) add(w.cls.routes);
    add(this.any.routes);
    this.ordered = ordered;
  }

  /** `host` already normalised (normalizeHost); `path` without the query. */
  match(host: string, path: string): R | undefined {
    const ex = this.exact.get(host);
    if (ex !== undefined) {
      const r = firstMatch(ex.routes, path);
      if (r !== undefined) return r;
    }
    for (let i = 0; i < this.wildcards.length; i++) {
      const w = this.wildcards[i]!;
      if (host.length > w.suffix.length && host.endsWith(w.suffix)) {
        const r = firstMatch(w.cls.routes, path);
        if (r !== undefined) return r;
      }
    }
    return firstMatch(this.any.routes, path);
  }

  /** The host classes that apply to `host`, best first (for explain). */
  classesFor(host: string): HostClass<R>[] {
    const out: HostClass<R>[] = [];
    const ex = this.exact.get(host);
    if (ex) out.push(ex);
    for (const w of this.wildcards) if (host.length > w.suffix.length && host.endsWith(w.suffix)) out.push(w.cls);
    out.push(this.any);
    return out;
  }
}

function firstMatch<R extends Routable>(routes: R[], path: string): R | undefined {
  for (let i = 0; i < routes.length; i++) if (prefixMatches(routes[i]!.pathPrefix, path)) return routes[i];
  return undefined;
}
