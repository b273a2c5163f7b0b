// GeoIP and ASN stages (SPEC §2.4 geoIp / asn) on MaxMind .mmdb files via the `maxmind` package.
//
// - The database is opened when the config is compiled: a `dbPath` that cannot be opened (or is
//   not an MMDB, or is clearly the wrong kind) is a config error at `<policy>.geoIp.dbPath`.
//   A relative `dbPath` is resolved against the working directory of the process (not the
//   config file's folder). A reload re-opens the file, so replacing the .mmdb and reloading
//   picks up the new data.
// - Country = `country.iso_code`, else `registered_country.iso_code`; ASN =
//   `autonomous_system_number`.
// - Lookups are cached per stage in an LRU with a TTL (`cacheTtlSeconds`, `cacheMaxEntries`;
//   TTL 0 = no cache).
// - Deny beats allow; a non-empty allow list admits only what it lists. An address with no
//   country / ASN (or a lookup error) passes when `failOpen`, else gets 403.
import { resolve } from "node:path";
import type { Reader, Response as MmdbRecord } from "maxmind";
import type { Stage } from "../pipeline/stage.ts";
import type { ConfigError } from "../config/load.ts";
import { forbidden } from "./deny.ts";

/** An LRU map with a per-entry TTL. `get` refreshes recency; expired entries are dropped on access. */
export class LruTtlCache<V> {
  private readonly map = new Map<string, { v: V; exp: number }>();
  constructor(
    readonly ttlMs: number,
    readonly max: number,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get(key: string, now: number): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    this.map.delete(key);
    if (e.exp <= now) return undefined;
    this.map.set(key, e); // most recent last
    return e.v;
  }

  set(key: string, v: V, now: number): void {
    if (this.ttlMs <= 0) return;
    this.map.delete(key);
    if (this.map.size >= this.max) {
      // evict the least recently used (first in insertion order)
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
    this.map.set(key, { v, exp: now + this.ttlMs });
  }
}

/** Country of a City/Country record: country.iso_code, else registered_country.iso_code. */
export function countryOf(rec: unknown): string | null {
  if (rec === null || typeof rec !== "object") return null;
  const r = rec as { country?: { iso_code?: unknown }; registered_country?: { iso_code?: unknown } };
  const c = r.country?.iso_code;
  if (typeof c === "string" && c !== "") return c.toUpperCase();
  const rc = r.registered_country?.iso_code;
  if (typeof rc === "string" && rc !== "") return rc.toUpperCase();
  return null;
}

export function asnOf(rec: unknown): number | null {
  if (rec === null || typeof rec !== "object") return null;
  const n = (rec as { autonomous_system_number?: unknown }).autonomous_system_number;
  return typeof n === "number" ? n : null;
}

type Kind = "geoIp" | "asn";

/** Open an .mmdb for a compile; the same file is opened once per compile (`shared`). */
export async function openMmdb(dbPath: string, kind: Kind, at: string, errors: ConfigError[], shared: Map<string, Promise<Reader<MmdbRecord> | string>>): Promise<Reader<MmdbRecord> | null> {
  const file = resolve(process.cwd(), dbPath);
  let p = shared.get(file);
  if (!p) {
    // loaded by the first geoIp/asn block, not by every process (see observability/prom.ts)
    const maxmind = require("maxmind") as typeof import("maxmind");
    p = maxmind.open<MmdbRecord>(file).catch((e: unknown) => {
      const msg = e instanceof Error ? e.message : String(e);
      return /ENOENT|no such file/i.test(msg) ? `cannot open ${JSON.stringify(file)}: no such file` : `cannot open ${JSON.stringify(file)} as a MaxMind database: ${msg}`;
    });
    shared.set(file, p);
  }
  const r = await p;
  if (typeof r === "string") {
    errors.push({ path: `${at}.dbPath`, message: r });
    return null;
  }
  const type = String(r.metadata?.databaseType ?? "");
  const isAsn = /asn|isp/i.test(type);
  const isGeo = /country|city/i.test(type);
  if (kind === "geoIp" && isAsn && !isGeo) {
    errors.push({ path: `${at}.dbPath`, message: `${JSON.stringify(file)} is an ASN database (${type}); geoIp needs a Country or City database` });
    return null;
  }
  if (kind === "asn" && isGeo && !isAsn) {
    errors.push({ path: `${at}.dbPath`, message: `${JSON.stringify(file)} is a ${type} database; asn needs an ASN database` });
    return null;
  }
  return r;
}

interface LookupPolicy<T> {
  lookup: (ip: string) => T | null;
  allow: ReadonlySet<T>;
  deny: ReadonlySet<T>;
  failOpen: boolean;
  cacheTtlSeconds: number;
  cacheMaxEntries: number;
  policy: "geoip" | "asn";
}

/** Value cached for "looked up, nothing found". */
const NONE = null;

function lookupStage<T extends string | number>(p: LookupPolicy<T>): Stage {
  const cache = new LruTtlCache<T | typeof NONE>(p.cacheTtlSeconds * 1000, p.cacheMaxEntries);
  const hasAllow = p.allow.size > 0;
  const hasDeny = p.deny.size > 0;
  return (ex) => {
    const ip = ex.clientIp;
    const now = performance.now();
    let v = cache.get(ip, now);
    if (v === undefined) {
      try {
        v = p.lookup(ip);
      } catch {
        v = NONE; // a lookup error is "no data"
      }
      cache.set(ip, v, now);
    }
    if (v === NONE) return p.failOpen ? undefined : forbidden(ex, p.policy);
    if (hasDeny && p.deny.has(v)) return forbidden(ex, p.policy);
    if (hasAllow && !p.allow.has(v)) return forbidden(ex, p.policy);
    return undefined;
  };
}

export interface GeoIpConfig {
  dbPath: string;
  allowCountries: string[];
  denyCountries: string[];
  cacheTtlSeconds: number;
  cacheMaxEntries: number;
  failOpen: boolean;
}

export interface AsnConfig {
  dbPath: string;
  allowAsn: number[];
  denyAsn: number[];
  cacheTtlSeconds: number;
  cacheMaxEntries: number;
  failOpen: boolean;
}

export async function geoIpStage(cfg: GeoIpConfig, at: string, errors: ConfigError[], shared: Map<string, Promise<Reader<MmdbRecord> | string>>): Promise<Stage | null> {
  const reader = await openMmdb(cfg.dbPath, "geoIp", at, errors, shared);
  if (!reader) return null;
  return lookupStage<string>({
    lookup: (ip) => countryOf(reader.get(ip)),
    allow: new Set(cfg.allowCountries.map((c) => c.toUpperCase())),
    deny: new Set(cfg.denyCountries.map((c) => c.toUpperCase())),
    failOpen: cfg.failOpen,
    cacheTtlSeconds: cfg.cacheTtlSeconds,
    cacheMaxEntries: cfg.cacheMaxEntries,
    policy: "geoip",
  });
}

export async function asnStage(cfg: AsnConfig, at: string, errors: ConfigError[], shared: Map<string, Promise<Reader<MmdbRecord> | string>>): Promise<Stage | null> {
  const reader = await openMmdb(cfg.dbPath, "asn", at, errors, shared);
  if (!reader) return null;
  return lookupStage<number>({
    lookup: (ip) => asnOf(reader.get(ip)),
    allow: new Set(cfg.allowAsn),
    deny: new Set(cfg.denyAsn),
    failOpen: cfg.failOpen,
    cacheTtlSeconds: cfg.cacheTtlSeconds,
    cacheMaxEntries: cfg.cacheMaxEntries,
    policy: "asn",
  });
}
