// IP ACL and client IP end to end (SPEC §2.4 ipAcl, §3.1 stages 4 and 7, §3.8), over real
// sockets. Test clients connect from 127.0.0.1 (or ::1) and present other addresses through
// X-Forwarded-For, which only a trusted peer may do.
import { test, expect, afterAll, describe } from "bun:test";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { getAs, recordDenials, expectGenerated } from "../helpers/policy.ts";

const up = startUpstream();
const denials = recordDenials();

// Trusts the loopback peer: X-Forwarded-For decides the client IP.
const trusted = await startHecate({
  proxy: {
    trustedProxies: ["127.0.0.1/32"],
    policy: { ipAcl: { denyCidrs: ["203.0.113.0/24"] } },
    routes: [
      {
        name: "acl",
        pathPrefix: "/acl",
        upstreams: [up.url],
        policy: { ipAcl: { allowCidrs: ["198.51.100.0/24", "2001:db8::/32"], denyCidrs: ["198.51.100.66", "2001:db8:bad::/48"] } },
      },
      { name: "denyonly", pathPrefix: "/open", upstreams: [up.url], policy: { ipAcl: { denyCidrs: ["192.0.2.0/24"], allowCidrs: [] } } },
    ],
  },
});

// Trusts nobody: X-Forwarded-For must change nothing.
const untrusted = await startHecate({
  proxy: {
    routes: [
      { name: "allow-doc", pathPrefix: "/allow", upstreams: [up.url], policy: { ipAcl: { allowCidrs: ["198.51.100.0/24"] } } },
      { name: "deny-lo", pathPrefix: "/deny", upstreams: [up.url], policy: { ipAcl: { denyCidrs: ["127.0.0.0/8"] } } },
      { name: "limited", pathPrefix: "/limited", upstreams: [up.url], policy: { rateLimit: { rps: 0.01, burst: 2 } } },
      { name: "plain", pathPrefix: "/plain", upstreams: [up.url] },
    ],
  },
});

// Dual-stack listener: IPv4 peers arrive as ::ffff:127.0.0.1 and must still match 127.0.0.1/32.
const dual = await startHecate({
  proxy: {
    listen: "[::]:0",
    trustedProxies: ["127.0.0.1/32"],
    routes: [{ name: "dual", upstreams: [up.url], policy: { ipAcl: { denyCidrs: ["::1/128", "198.51.100.13"] } } }],
  },
});

// clientIPHeader: the first entry of X-Real-IP, and X-Forwarded-For is not read.
const realIp = await startHecate({
  proxy: {
    trustedProxies: ["127.0.0.1/32"],
    limits: { clientIPHeader: "X-Real-IP" },
    routes: [{ name: "real", upstreams: [up.url], policy: { ipAcl: { allowCidrs: ["198.51.100.0/24"] } } }],
  },
});

afterAll(async () => {
  denials.stop();
  await Promise.all([trusted.shutdown(), untrusted.shutdown(), dual.shutdown(), realIp.shutdown()]);
  up.stop();
});

describe("trusted proxy", () => {
  test("global deny → 403 before routing", async () => {
    const before = denials.list.length;
    await expectGenerated(await getAs(`${trusted.url}/acl/x`, "203.0.113.5"), 403, "forbidden\n", expect);
    await expectGenerated(await getAs(`${trusted.url}/no-such-route`, "203.0.113.5"), 403, "forbidden\n", expect); // not 404
    expect(denials.list.slice(before)).toEqual([
      { route: "", policy: "ip_acl" },
      { route: "", policy: "ip_acl" },
    ]);
  });

  test("route allow list; deny beats allow", async () => {
    expect((await getAs(`${trusted.url}/acl/x`, "198.51.100.7")).status).toBe(200);
    expect(up.seen.at(-1)!.headers["x-forwarded-for"]).toBe("198.51.100.7, 127.0.0.1");
    const before = denials.list.length;
    await expectGenerated(await getAs(`${trusted.url}/acl/x`, "198.51.100.66"), 403, "forbidden\n", expect);
    await expectGenerated(await getAs(`${trusted.url}/acl/x`, "192.0.2.1"), 403, "forbidden\n", expect);
    expect(denials.list.slice(before)).toEqual([
      { route: "acl", policy: "ip_acl" },
      { route: "acl", policy: "ip_acl" },
    ]);
  });

  test("IPv6 rules and IPv4-mapped clients", async () => {
    expect((await getAs(`${trusted.url}/acl`, "2001:db8::5")).status).toBe(200);
    expect((await getAs(`${trusted.url}/acl`, "[2001:DB8:0::5]:1234")).status).toBe(200);
    expect((await getAs(`${trusted.url}/acl`, "2001:db8:bad::1")).status).toBe(403);
    expect((await getAs(`${trusted.url}/acl`, "2001:db9::1")).status).toBe(403);
    expect((await getAs(`${trusted.url}/acl`, "::ffff:198.51.100.7")).status).toBe(200);
    expect((await getAs(`${trusted.url}/acl`, "::ffff:198.51.100.66")).status).toBe(403);
  });

  test("right-most untrusted entry decides; left-most spoofing is ignored", async () => {
    expect((await getAs(`${trusted.url}/acl`, "198.51.100.7, 203.0.113.99")).status).toBe(403); // global deny on the real client
    expect((await getAs(`${trusted.url}/acl`, "203.0.113.99, 198.51.100.7")).status).toBe(200);
  });

  test("without X-Forwarded-For the peer (127.0.0.1) is the client", async () => {
    expect((await getAs(`${trusted.url}/acl`, null)).status).toBe(403);
  });

  test("an empty allow list is no allow rule", async () => {
    expect((await getAs(`${trusted.url}/open`, "8.8.8.8")).status).toBe(200);
    expect((await getAs(`${trusted.url}/open`, null)).status).toBe(200);
    expect((await getAs(`${trusted.url}/open`, "192.0.2.9")).status).toBe(403);
  });
});

describe("untrusted peer: X-Forwarded-For is ignored for every decision", () => {
  test("ACL allow and deny use the peer address", async () => {
    expect((await getAs(`${untrusted.url}/allow`, "198.51.100.7")).status).toBe(403);
    expect((await getAs(`${untrusted.url}/deny`, "198.51.100.7")).status).toBe(403);
  });

  test("rate-limit keys use the peer address", async () => {
    expect((await getAs(`${untrusted.url}/limited`, "198.51.100.1")).status).toBe(200);
    expect((await getAs(`${untrusted.url}/limited`, "198.51.100.2")).status).toBe(200);
    expect((await getAs(`${untrusted.url}/limited`, "198.51.100.3")).status).toBe(429);
  });

  test("upstream sees X-Forwarded-For = the peer only", async () => {
    expect((await getAs(`${untrusted.url}/plain`, "198.51.100.7")).status).toBe(200);
    expect(up.seen.at(-1)!.headers["x-forwarded-for"]).toBe("127.0.0.1");
  });
});

describe("dual-stack listener", () => {
  test("IPv4 peer (::ffff:127.0.0.1) is trusted as 127.0.0.1", async () => {
    const port = dual.listeners.publicServer.port;
    expect((await getAs(`http://127.0.0.1:${port}/`, "198.51.100.12")).status).toBe(200);
    expect(up.seen.at(-1)!.headers["x-forwarded-for"]).toBe("198.51.100.12, 127.0.0.1");
    expect((await getAs(`http://127.0.0.1:${port}/`, "198.51.100.13")).status).toBe(403);
  });

  test("IPv6 peer ::1 is matched by an IPv6 rule and is not trusted", async () => {
    const port = dual.listeners.publicServer.port;
    expect((await getAs(`http://[::1]:${port}/`, "198.51.100.12")).status).toBe(403);
  });
});

describe("clientIPHeader", () => {
  test("first entry of the configured header; X-Forwarded-For not used", async () => {
    expect((await getAs(`${realIp.url}/`, null, { "X-Real-IP": "198.51.100.9, 10.0.0.1" })).status).toBe(200);
    expect((await getAs(`${realIp.url}/`, "198.51.100.9")).status).toBe(403);
  });
});
