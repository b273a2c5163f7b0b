// GeoIP / ASN pieces (SPEC §2.4): record fields, the LRU+TTL cache, opening databases.
// End-to-end allow/deny/failOpen decisions are in test/e2e/policy-geo.test.ts.
import { test, expect, describe, afterAll } from "bun:test";
import { mkdtempSync, copyFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { countryOf, asnOf, LruTtlCache, openMmdb } from "../../src/policy/geo.ts";
import type { ConfigError } from "../../src/config/load.ts";

const GEO = join(import.meta.dir, "../../../shared/testdata/geo");
const dir = mkdtempSync(join(tmpdir(), "hecate-geo-"));
copyFileSync(join(GEO, "GeoLite2-Country-Test.mmdb"), join(dir, "country.mmdb"));
copyFileSync(join(GEO, "GeoLite2-ASN-Test.mmdb"), join(dir, "asn.mmdb"));
writeFileSync(join(dir, "junk.mmdb"), "this is not a database\n");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("record fields", () => {
  test("country.iso_code, else registered_country.iso_code", () => {
    expect(countryOf({ country: { iso_code: "GB" }, registered_country: { iso_code: "US" } })).toBe("GB");
    expect(countryOf({ registered_country: { iso_code: "us" } })).toBe("US");
    expect(countryOf({ continent: { code: "EU" } })).toBeNull();
    expect(countryOf(null)).toBeNull();
    expect(asnOf({ autonomous_system_number: 15169 })).toBe(15169);
    expect(asnOf({})).toBeNull();
    expect(asnOf(null)).toBeNull();
  });
});

describe("LruTtlCache", () => {
  test("expires after the TTL", () => {
    const c = new LruTtlCache<string>(1000, 10);
    c.set("a", "GB", 0);
    expect(c.get("a", 999)).toBe("GB");
    expect(c.get("a", 1000)).toBeUndefined();
    expect(c.size).toBe(0);
  });

  test("evicts the least recently used at cacheMaxEntries", () => {
    const c = new LruTtlCache<number>(60_000, 3);
    c.set("a", 1, 0);
    c.set("b", 2, 0);
    c.set("c", 3, 0);
    expect(c.get("a", 1)).toBe(1); // a is now the most recent
    c.set("d", 4, 2); // evicts b
    expect(c.size).toBe(3);
    expect(c.get("b", 3)).toBeUndefined();
    expect(c.get("a", 3)).toBe(1);
    expect(c.get("c", 3)).toBe(3);
    expect(c.get("d", 3)).toBe(4);
  });

  test("TTL 0 caches nothing; null values are cached", () => {
    const off = new LruTtlCache<string | null>(0, 10);
    off.set("a", "GB", 0);
    expect(off.get("a", 0)).toBeUndefined();
    const c = new LruTtlCache<string | null>(1000, 10);
    c.set("a", null, 0);
    expect(c.get("a", 1)).toBeNull();
  });
});

describe("openMmdb", () => {
  const open = async (p: string, kind: "geoIp" | "asn") => {
    const errors: ConfigError[] = [];
    const r = await openMmdb(p, kind, "proxy.policy.geoIp", errors, new Map());
    return { r, errors };
  };

  test("opens Country and ASN databases; a relative path is resolved against the working directory", async () => {
    const c = await open(join(dir, "country.mmdb"), "geoIp");
    expect(c.errors).toEqual([]);
    expect(countryOf(c.r!.get("81.2.69.142"))).toBe("GB");
    const a = await open(relative(process.cwd(), join(dir, "asn.mmdb")), "asn");
    expect(a.errors).toEqual([]);
    expect(asnOf(a.r!.get("1.0.0.1"))).toBe(15169);
  });

  test("a missing file, a non-database or the wrong kind is a config error at .dbPath", async () => {
    for (const [p, kind, msg] of [
      [join(dir, "nope.mmdb"), "geoIp", /cannot open .*no such file/],
      [join(dir, "junk.mmdb"), "geoIp", /cannot open .* as a MaxMind database/],
      [join(dir, "asn.mmdb"), "geoIp", /ASN database/],
      [join(dir, "country.mmdb"), "asn", /needs an ASN database/],
    ] as const) {
      const { r, errors } = await open(p, kind);
      expect(r).toBeNull();
      expect(errors).toHaveLength(1);
      expect(errors[0]!.path).toBe("proxy.policy.geoIp.dbPath");
      expect(errors[0]!.message).toMatch(msg);
    }
  });

  test("the same file is read once per compile", async () => {
    const shared = new Map();
    const errors: ConfigError[] = [];
    const a = await openMmdb(join(dir, "country.mmdb"), "geoIp", "x", errors, shared);
    const b = await openMmdb(join(dir, "country.mmdb"), "geoIp", "y", errors, shared);
    expect(a).toBe(b);
    expect(shared.size).toBe(1);
  });
});
