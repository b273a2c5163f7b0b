// Forwarding rules of SPEC §3.6 and the error statuses of §3.1, end to end over real sockets.
import { test, expect, afterAll, describe } from "bun:test";
import { connect } from "node:net";
import { startHecate, startUpstream, oneRoute, type Hecate, type Upstream } from "../helpers/hecate.ts";
import { RESPONSE_BUFFER_BYTES } from "../../src/upstream/forward.ts";

const started: { stop(): unknown }[] = [];
afterAll(async () => {
  for (const s of started.reverse()) await s.stop();
});
async function hecate(config: Record<string, any>): Promise<Hecate> {
  const h = await startHecate(config);
  started.push({ stop: () => h.shutdown() });
  return h;
}
function upstream(handler?: Parameters<typeof startUpstream>[0]): Upstream {
  const u = startUpstream(handler);
  started.push(u);
  return u;
}

/** Send raw bytes, return everything the server sent until it closed (or `ms` passed). */
function raw(port: number, data: string, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let out = "";
    const t = setTimeout(() => s.destroy(), ms);
    s.on("data", (d) => (out += d.toString("latin1")));
    s.on("close", () => {
      clearTimeout(t);
      resolve(out);
    });
    s.on("error", () => {});
    s.write(data); // no half-close: Bun.serve drops a request whose client already sent FIN
  });
}

describe("request headers", () => {
  test("hop-by-hop removed, X-Forwarded-* replaced for an untrusted peer, Via and X-Request-Id set", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url]));
    const r = await fetch(`${h.url}/x`, {
      headers: {
        connection: "keep-alive, X-Secret-Hop",
        "x-secret-hop": "1",
        "keep-alive": "timeout=5",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        te: "gzip",
        "x-forwarded-for": "6.6.6.6",
        "x-forwarded-proto": "gopher",
        "x-forwarded-host": "evil.example",
        via: "1.0 other",
        "x-request-id": "abc-123_ok.~:+/=",
        "x-keep": "yes",
      },
    });
    expect(r.status).toBe(200);
    const seen = ((await r.json()) as any).headers as Record<string, string>;
    expect(seen["x-secret-hop"]).toBeUndefined();
    expect(seen["keep-alive"]).toBeUndefined();
    expect(seen["proxy-authorization"]).toBeUndefined();
    expect(seen["te"]).toBeUndefined();
    expect(seen["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen["x-forwarded-proto"]).toBe("http");
    expect(seen["x-forwarded-host"]).toBe(new URL(h.url).host);
    expect(seen["via"]).toBe("1.0 other, 1.1 hecate");
    expect(seen["x-request-id"]).toBe("abc-123_ok.~:+/=");
    expect(seen["x-hecate-retry-attempt"]).toBe("0");
    expect(seen["x-keep"]).toBe("yes");
    expect(seen["host"]).toBe(new URL(h.url).host); // the client's Host is kept
    expect(r.headers.get("x-request-id")).toBe("abc-123_ok.~:+/=");
    expect(r.headers.get("x-retry-attempt")).toBe("0");
  });

  test("TE: trailers is kept; an invalid X-Request-Id is replaced by a UUID", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url]));
    const r = await fetch(`${h.url}/x`, { headers: { te: "trailers", "x-request-id": "bad id with spaces" } });
    const seen = ((await r.json()) as any).headers as Record<string, string>;
    expect(seen["te"]).toBe("trailers");
    expect(seen["x-request-id"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(r.headers.get("x-request-id")).toBe(seen["x-request-id"]!);
    const long = "a".repeat(129);
    const r2 = await fetch(`${h.url}/x`, { headers: { "x-request-id": long } });
    expect(r2.headers.get("x-request-id")).not.toBe(long);
    await r2.text();
  });

  test("a trusted peer's X-Forwarded-* are kept and the peer appended", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url], {}, { trustedProxies: ["127.0.0.1/32"] }));
    const r = await fetch(`${h.url}/x`, {
      headers: { "x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https", "x-forwarded-host": "public.example" },
    });
    const seen = ((await r.json()) as any).headers as Record<string, string>;
    expect(seen["x-forwarded-for"]).toBe("203.0.113.9, 127.0.0.1");
    expect(seen["x-forwarded-proto"]).toBe("https");
    expect(seen["x-forwarded-host"]).toBe("public.example");
  });

  test("route header operations: request set/remove, response set/remove", async () => {
    const up = upstream((req) => Response.json({ h: Object.fromEntries(req.headers) }, { headers: { server: "up/1.0", "x-up": "1" } }));
    const h = await hecate(
      oneRoute([up.url], {
        headers: {
          request: { set: { "X-Added": "v", "X-Replace": "new" }, remove: ["X-Drop"] },
          response: { set: { "X-Served-By": "hecate" }, remove: ["Server"] },
        },
      }),
    );
    const r = await fetch(`${h.url}/x`, { headers: { "x-drop": "1", "x-replace": "old" } });
    const seen = ((await r.json()) as any).h as Record<string, string>;
    expect(seen["x-added"]).toBe("v");
    expect(seen["x-replace"]).toBe("new");
    expect(seen["x-drop"]).toBeUndefined();
    expect(r.headers.get("x-served-by")).toBe("hecate");
    expect(r.headers.get("server")).toBeNull();
    expect(r.headers.get("x-up")).toBe("1");
  });
});

describe("response headers", () => {
  test("hop-by-hop removed from the upstream response, Via appended once, Content-Length and Content-Encoding untouched", async () => {
    const body = new Uint8Array(1000).fill(7);
    const up = upstream(
      () =>
        new Response(body, {
          headers: { connection: "X-Up-Hop", "x-up-hop": "1", "keep-alive": "timeout=3", via: "1.1 origin", "content-encoding": "gzip" },
        }),
    );
    const h = await hecate(oneRoute([up.url]));
    const out = await raw(new URL(h.url).port as unknown as number, `GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
    const head = out.slice(0, out.indexOf("\r\n\r\n")).toLowerCase();
    expect(head).toStartWith("http/1.1 200");
    expect(head).not.toContain("x-up-hop");
    expect(head).not.toContain("keep-alive");
    expect(head).toContain("via: 1.1 origin, 1.1 hecate");
    expect(head).toContain("content-length: 1000");
    expect(head).toContain("content-encoding: gzip");
    expect(out.length - out.indexOf("\r\n\r\n") - 4).toBe(1000);
  });
});

describe("response headers over one upstream connection", () => {
  // The HTTP/1.1 transport keeps the last head of each connection as a template of Hecate's
  // answer and stamps it per response (headers.ts responseTemplate): nothing of one response
  // may reach another, and routes with response ops or retries still get their own fields.
  test("each response carries its own X-Request-Id and attempt, Via once; response ops apply per route", async () => {
    let fail = 0;
    const up = upstream(() => (fail-- > 0 ? new Response("no", { status: 503, headers: { server: "up" } }) : new Response("ok", { headers: { server: "up" } })));
    const h = await hecate({
      proxy: {
        retry: { maxRetries: 1, backoffBaseMs: 1, backoffMaxMs: 1 },
        routes: [
          { name: "ops", pathPrefix: "/ops", upstreams: [up.url], headers: { response: { set: { "X-Served-By": "hecate" }, remove: ["Server"] } } },
          { name: "plain", upstreams: [up.url] },
        ],
      },
    });
    for (let i = 0; i < 40; i++) {
      const ops = i % 3 === 1;
      if (i % 5 === 4) fail = 1; // the next attempt is answered 503, the retry 200
      const retried = fail === 1;
      const id = `req-${i}`;
      const r = await fetch(`${h.url}${ops ? "/ops" : "/p"}`, { headers: { "x-request-id": id } });
      expect(await r.text()).toBe("ok");
      expect(r.headers.get("x-request-id")).toBe(id);
      expect(r.headers.get("via")).toBe("1.1 hecate");
      expect(r.headers.get("x-retry-attempt")).toBe(retried ? "1" : "0");
      expect(r.headers.get("server")).toBe(ops ? null : "up");
      expect(r.headers.get("x-served-by")).toBe(ops ? "hecate" : null);
    }
  });
});

describe("response bodies and Content-Length", () => {
  // Up to RESPONSE_BUFFER_BYTES a body is answered whole with the upstream's Content-Length;
  // above, as a stream (chunked: Bun.serve writes larger fixed-length heads uncorked, see forward.ts).
  for (const size of [0, 1000, RESPONSE_BUFFER_BYTES, RESPONSE_BUFFER_BYTES + 1, 65536, 300_000])
    test(`${size} bytes arrive whole; Content-Length kept up to ${RESPONSE_BUFFER_BYTES}`, async () => {
      const body = new Uint8Array(size);
      for (let i = 0; i < size; i++) body[i] = (i * 7) & 0xff;
      const up = upstream(() => new Response(body));
      const h = await hecate(oneRoute([up.url]));
      const out = Buffer.from(await raw(new URL(h.url).port as unknown as number, `GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`), "latin1");
      const end = out.indexOf("\r\n\r\n");
      const head = out.toString("latin1", 0, end).toLowerCase();
      expect(head).toStartWith("http/1.1 200");
      let got: Buffer;
      if (size <= RESPONSE_BUFFER_BYTES) {
        expect(head).toContain(`content-length: ${size}`);
        got = out.subarray(end + 4);
      } else {
        expect(head).toContain("transfer-encoding: chunked");
        expect(head).not.toContain("content-length");
        got = dechunk(out.subarray(end + 4));
      }
      expect(got.length).toBe(size);
      expect(Buffer.compare(got, Buffer.from(body))).toBe(0);
    });
});

/** The payload of a complete chunked body (no extensions, no trailers). */
function dechunk(b: Buffer): Buffer {
  const parts: Buffer[] = [];
  let p = 0;
  for (;;) {
    const e = b.indexOf("\r\n", p);
    const n = parseInt(b.toString("latin1", p, e), 16);
    if (n === 0) return Buffer.concat(parts);
    parts.push(b.subarray(e + 2, e + 2 + n));
    p = e + 2 + n + 2;
  }
}

describe("paths", () => {
  test("stripPrefix and base paths join with exactly one slash", async () => {
    const up = upstream();
    const cases: [string, string, boolean, string, string][] = [
      ["/base", "/api", true, "/api/x?q=1", "/base/x?q=1"],
      ["/base/", "/api", true, "/api/x", "/base/x"],
      ["/base", "/api", true, "/api", "/base/"],
      ["", "/api", true, "/api", "/"],
      ["", "/api/", true, "/api/x/y", "/x/y"],
      ["", "/api", false, "/api/x", "/api/x"],
    ];
    for (const [base, prefix, strip, path, want] of cases) {
      const h = await hecate(oneRoute([up.url + base], { pathPrefix: prefix, stripPrefix: strip }));
      const r = await fetch(h.url + path);
      expect(((await r.json()) as any).path, `${base} ${prefix} ${path}`).toBe(want);
    }
  });

  test("host routing: exact beats wildcard beats any, port ignored, case-insensitive", async () => {
    const a = upstream(() => new Response("exact"));
    const b = upstream(() => new Response("wild"));
    const c = upstream(() => new Response("any"));
    const h = await hecate({
      proxy: {
        routes: [
          { name: "any", upstreams: [c.url] },
          { name: "wild", hosts: ["*.example.com"], upstreams: [b.url] },
          { name: "exact", hosts: ["api.example.com"], upstreams: [a.url] },
        ],
      },
    });
    const port = Number(new URL(h.url).port);
    const get = async (host: string) => {
      const out = await raw(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      return out.slice(out.indexOf("\r\n\r\n") + 4);
    };
    expect(await get("API.Example.com:8443")).toBe("exact");
    expect(await get("www.example.com")).toBe("wild");
    expect(await get("example.com")).toBe("any");
  });
});

describe("error statuses", () => {
  test("404 no route, with text/plain body and X-Request-Id", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url], { pathPrefix: "/only" }));
    const r = await fetch(`${h.url}/other`);
    expect(r.status).toBe(404);
    expect(r.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await r.text()).toBe("no route\n");
    expect(r.headers.get("x-request-id")).toBeTruthy();
  });

  test("502 when the upstream refuses, 504 when it is slower than the per-try timeout", async () => {
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const deadPort = l.port;
    l.stop(true);
    const slow = upstream(async () => {
      await Bun.sleep(1500);
      return new Response("late");
    });
    const h = await hecate({
      proxy: {
        retry: { maxRetries: 0, perTryTimeoutSec: 0.3 },
        routes: [
          { name: "dead", pathPrefix: "/dead", upstreams: [`http://127.0.0.1:${deadPort}`] },
          { name: "slow", pathPrefix: "/slow", upstreams: [slow.url] },
        ],
      },
    });
    const r1 = await fetch(`${h.url}/dead`);
    expect(r1.status).toBe(502);
    expect((await r1.text()).endsWith("\n")).toBe(true);
    const t0 = performance.now();
    const r2 = await fetch(`${h.url}/slow`);
    expect(r2.status).toBe(504);
    expect(performance.now() - t0).toBeLessThan(1400);
  });

  test("route timeoutSec bounds the time to headers → 504", async () => {
    const slow = upstream(async () => {
      await Bun.sleep(2000);
      return new Response("late");
    });
    const h = await hecate(oneRoute([slow.url], { timeoutSec: 0.3 }, { retry: { perTryTimeoutSec: 0 } }));
    const t0 = performance.now();
    const r = await fetch(`${h.url}/x`);
    expect(r.status).toBe(504);
    expect(performance.now() - t0).toBeLessThan(1500);
  });

  test("413 for a declared Content-Length over the cap, before the upstream is contacted", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url], {}, { limits: { bodyBytesCap: 1000 } }));
    const r = await fetch(`${h.url}/x`, { method: "POST", body: new Uint8Array(1001) });
    expect(r.status).toBe(413);
    expect(up.seen.length).toBe(0);
    const ok = await fetch(`${h.url}/x`, { method: "POST", body: new Uint8Array(1000) });
    expect(ok.status).toBe(200);
    expect(up.seen.length).toBe(1);
  });

  test("413 when a chunked body passes the cap while streaming", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url], {}, { limits: { bodyBytesCap: 100_000 } }));
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (i++ >= 20) return c.close();
        c.enqueue(new Uint8Array(10_000));
      },
    });
    const r = await fetch(`${h.url}/x`, { method: "POST", body, duplex: "half" } as RequestInit);
    expect(r.status).toBe(413);
  });

  test("431 when header fields exceed headerBytesCap", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url], {}, { limits: { headerBytesCap: 2000 } }));
    const r = await fetch(`${h.url}/x`, { headers: { "x-big": "a".repeat(3000) } });
    expect(r.status).toBe(431);
    expect(up.seen.length).toBe(0);
  });

  test("400 for two Host fields, an invalid Host, a fragment; 405 for CONNECT", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url]));
    const port = Number(new URL(h.url).port);
    const status = (out: string) => out.slice(9, 12);
    expect(status(await raw(port, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"))).toBe("400");
    expect(status(await raw(port, "GET / HTTP/1.1\r\nHost: a b@c\r\nConnection: close\r\n\r\n"))).toBe("400");
    expect(status(await raw(port, "GET /x#frag HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))).toBe("400");
    expect(status(await raw(port, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nConnection: close\r\n\r\n"))).toBe("405");
    expect(up.seen.length).toBe(0);
  });
});

describe("connections and streaming", () => {
  test("upstream connections are kept alive and reused", async () => {
    const ports = new Set<number>();
    const u: Upstream = upstream((req) => {
      ports.add(u.server.requestIP(req)!.port);
      return new Response("ok");
    });
    const h = await hecate(oneRoute([u.url]));
    for (let i = 0; i < 30; i++) expect(await (await fetch(`${h.url}/x`)).text()).toBe("ok");
    expect(ports.size).toBeLessThanOrEqual(2);
  });

  test("response chunks reach the client as the upstream sends them (SSE)", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const up = upstream(
      () =>
        new Response(
          new ReadableStream({
            async start(c) {
              c.enqueue(new TextEncoder().encode("data: one\n\n"));
              await gate; // the second event waits until the client has seen the first
              c.enqueue(new TextEncoder().encode("data: two\n\n"));
              c.close();
            },
          }),
          { headers: { "content-type": "text/event-stream" } },
        ),
    );
    const h = await hecate(oneRoute([up.url]));
    const r = await fetch(`${h.url}/events`);
    const reader = r.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toBe("data: one\n\n");
    release();
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe("data: two\n\n");
  });

  test("a client that trickles its header is cut off by the header-read timeout", async () => {
    const up = upstream();
    const h = await hecate(oneRoute([up.url]));
    const port = Number(new URL(h.url).port);
    const closedAfter = await new Promise<number>((resolve) => {
      const t0 = performance.now();
      const s = connect(port, "127.0.0.1");
      s.on("error", () => {});
      s.write("GET / HTTP/1.1\r\nHost: a\r\n");
      const drip = setInterval(() => s.write("X-Slow: 1\r\n"), 500);
      s.on("close", () => {
        clearInterval(drip);
        resolve(performance.now() - t0);
      });
    });
    expect(up.seen.length).toBe(0);
    expect(closedAfter).toBeLessThan(20_000);
  }, 25_000);
});
