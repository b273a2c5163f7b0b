// GeoIP and ASN policies end to end (SPEC §2.4 geoIp / asn), with MaxMind's test databases
// (../shared/testdata/geo, see its README): 81.2.69.142 → GB, 216.160.83.56 → US,
// 89.160.20.115 → SE, 111.235.160.1 → CN, 2001:218::1 → JP; ASN 1.0.0.1 → 15169,
// 1.128.0.1 → 1221, 12.81.92.5 → 7018, 89.160.20.115 → SE + 29518, 216.160.83.56 → US + 209;
// 127.0.0.1 has neither.
import { test, expect, afterAll, describe } from "bun:test";
import { mkdtempSync, copyFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { StartError } from "../../src/runtime/start.ts";
import { getAs, recordDenials, expectGenerated } from "../helpers/policy.ts";

const dir = mkdtempSync(join(tmpdir(), "hecate-geo-e2e-"));
const GEO = join(import.meta.dir, "../../../shared/testdata/geo");
copyFileSync(join(GEO, "GeoLite2-Country-Test.mmdb"), join(dir, "country.mmdb"));
copyFileSync(join(GEO, "GeoLite2-ASN-Test.mmdb"), join(dir, "asn.mmdb"));
const COUNTRY = join(dir, "country.mmdb");
// a relative dbPath is resolved against the working directory of the process
const ASN_REL = relative(process.cwd(), join(dir, "asn.mmdb"));

const up = startUpstream();
const denials = recordDenials();
const h = await startHecate({
  proxy: {
    trustedProxies: ["127.0.0.1/32"],
    policy: { geoIp: { dbPath: COUNTRY, denyCountries: ["CN"] } },
    routes: [
      { name: "eu", pathPrefix: "/eu", upstreams: [up.url], policy: { geoIp: { dbPath: COUNTRY, allowCountries: ["gb", "SE"], denyCountries: ["SE"] } } },
      { name: "strict", pathPrefix: "/strict", upstreams: [up.url], policy: { geoIp: { dbPath: COUNTRY, allowCountries: ["US"], failOpen: false } } },
      { name: "jp", pathPrefix: "/jp", upstreams: [up.url], policy: { geoIp: { dbPath: COUNTRY, allowCountries: ["JP"] } } },
      { name: "no-google", pathPrefix: "/asn-deny", upstreams: [up.url], policy: { asn: { dbPath: ASN_REL, denyAsn: [15169] } } },
      { name: "att-only", pathPrefix: "/asn-allow", upstreams: [up.url], policy: { asn: { dbPath: ASN_REL, allowAsn: [7018], failOpen: false, cacheTtlSeconds: 0 } } },
      {
        name: "both",
        pathPrefix: "/both",
        upstreams: [up.url],
        policy: {
          ipAcl: { denyCidrs: ["89.160.20.0/24"] },
          geoIp: { dbPath: COUNTRY, denyCountries: ["SE", "US"] },
          asn: { dbPath: ASN_REL, denyAsn: [29518, 209, 1221] },
        },
      },
    ],
  },
});

afterAll(async () => {
  denials.stop();
  await h.shutdown();
  up.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("geoIp", () => {
  test("global deny list applies before routing", async () => {
    const before = denials.list.length;
    await expectGenerated(await getAs(`${h.url}/eu`, "111.235.160.1"), 403, "forbidden\n", expect);
    expect(denials.list.slice(before)).toEqual([{ route: "", policy: "geoip" }]);
    expect((await getAs(`${h.url}/nowhere`, "111.235.160.1")).status).toBe(403);
    expect((await getAs(`${h.url}/nowhere`, "81.2.69.142")).status).toBe(404);
  });

  test("route allow list (codes case-insensitive); deny beats allow", async () => {
    expect((await getAs(`${h.url}/eu`, "81.2.69.142")).status).toBe(200); // GB
    expect((await getAs(`${h.url}/eu`, "216.160.83.56")).status).toBe(403); // US: not allowed
    const before = denials.list.length;
    expect((await getAs(`${h.url}/eu`, "89.160.20.115")).status).toBe(403); // SE: allowed and denied
    expect(denials.list.slice(before)).toEqual([{ route: "eu", policy: "geoip" }]);
  });

  test("IPv6 and IPv4-mapped clients", async () => {
    expect((await getAs(`${h.url}/jp`, "2001:218::1")).status).toBe(200);
    expect((await getAs(`${h.url}/jp`, "::ffff:81.2.69.142")).status).toBe(403); // GB
  });

  test("no country: failOpen true passes, failOpen false denies", async () => {
    expect((await getAs(`${h.url}/eu`, null)).status).toBe(200); // 127.0.0.1, not in the database
    expect((await getAs(`${h.url}/eu`, "10.1.2.3")).status).toBe(200);
    expect((await getAs(`${h.url}/strict`, null)).status).toBe(403);
    expect((await getAs(`${h.url}/strict`, "216.160.83.56")).status).toBe(200);
  });

  test("repeated lookups give the same answer (cache)", async () => {
    for (let i = 0; i < 5; i++) {
      expect((await getAs(`${h.url}/eu`, "81.2.69.142")).status).toBe(200);
      expect((await getAs(`${h.url}/eu`, "216.160.83.56")).status).toBe(403);
    }
  });
});

describe("asn", () => {
  test("deny list", async () => {
    const before = denials.list.length;
    expect((await getAs(`${h.url}/asn-deny`, "1.0.0.1")).status).toBe(403);
    expect(denials.list.slice(before)).toEqual([{ route: "no-google", policy: "asn" }]);
    expect((await getAs(`${h.url}/asn-deny`, "1.128.0.1")).status).toBe(200);
    expect((await getAs(`${h.url}/asn-deny`, null)).status).toBe(200); // no ASN, failOpen
  });

  test("allow list with failOpen false (no cache)", async () => {
    expect((await getAs(`${h.url}/asn-allow`, "12.81.92.5")).status).toBe(200);
    expect((await getAs(`${h.url}/asn-allow`, "1.128.0.1")).status).toBe(403);
    expect((await getAs(`${h.url}/asn-allow`, null)).status).toBe(403);
  });
});

test("stage order within a policy: ipAcl → geoIp → asn", async () => {
  const before = denials.list.length;
  expect((await getAs(`${h.url}/both`, "89.160.20.115")).status).toBe(403); // denied by all three: the ACL says so first
  expect((await getAs(`${h.url}/both`, "216.160.83.56")).status).toBe(403); // US and AS209: geoIp first
  expect((await getAs(`${h.url}/both`, "1.128.0.1")).status).toBe(403); // AS1221 only
  expect((await getAs(`${h.url}/both`, "12.81.92.5")).status).toBe(200);
  expect(denials.list.slice(before).map((d) => d.policy)).toEqual(["ip_acl", "geoip", "asn"]);
});

test("a dbPath that cannot be opened is a config error with its key path", async () => {
  let err: unknown;
  try {
    await startHecate({
      proxy: {
        policy: { asn: { dbPath: join(dir, "missing.mmdb") } },
        routes: [{ name: "r", upstreams: [up.url], policy: { geoIp: { dbPath: join(dir, "asn.mmdb") } } }],
      },
    });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(StartError);
  const paths = (err as StartError).errors.map((e) => e.path).sort();
  expect(paths).toEqual(["proxy.policy.asn.dbPath", "proxy.routes[0].policy.geoIp.dbPath"]);
});
