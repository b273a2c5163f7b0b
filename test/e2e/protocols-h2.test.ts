// HTTP/2 on both sides (SPEC §2.2 enableH2C/enableUpstreamH2C, §3.6): h2c by prior knowledge
// on the plain listener, HTTPS upstreams negotiated to h2 by ALPN, cleartext h2 to http://
// upstreams; requests to one upstream share one HTTP/2 connection.
import { test, expect, afterAll } from "bun:test";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { startHecate, startUpstream } from "../helpers/hecate.ts";
import { makePki, curl } from "../helpers/tls-certs.ts";
import { hooks } from "../../src/pipeline/hooks.ts";
import type { FetchTransport } from "../../src/upstream/fetch-transport.ts";
import { ALPN_H1 } from "../../src/upstream/alpn.ts";

// the test CA is not in the system store: this runtime skips upstream certificate checks (the
// variable is read when a runtime is made, and restored below for other files in this process)
const insecureBefore = process.env.HECATE_UPSTREAM_INSECURE_TLS;
process.env.HECATE_UPSTREAM_INSECURE_TLS = "1";

const pki = makePki();
const [crt, key] = pki.server("up", ["127.0.0.1"]);

/** An upstream on node:http2 that reports the HTTP version and counts connections. */
function h2Upstream(secure: boolean) {
  const counts = { sessions: 0, requests: 0, versions: [] as string[] };
  const handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    counts.requests++;
    counts.versions.push(req.httpVersion);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const url = req.url;
      if (url.endsWith("/big")) {
        res.setHeader("content-type", "application/octet-stream");
        res.end(Buffer.alloc(1 << 20, 7));
        return;
      }
      res.setHeader("content-type", "application/json");
      res.end(
        JSON.stringify({
          version: req.httpVersion,
          method: req.method,
          path: url,
          authority: req.headers[":authority"] ?? req.headers.host,
          xff: req.headers["x-forwarded-for"],
          bodyLength: body.length,
          bodySum: body.reduce((a, b) => (a + b) % 65521, 0),
        }),
      );
    });
  };
  const server = secure ? http2.createSecureServer({ cert: readFileSync(crt), key: readFileSync(key), allowHTTP1: true }, handler) : http2.createServer(handler);
  server.on("session", () => counts.sessions++);
  return {
    counts,
    server,
    ready: new Promise<number>((r) => server.listen(0, "127.0.0.1", () => r((server.address() as AddressInfo).port))),
  };
}

const tlsUp = h2Upstream(true);
const plainUp = h2Upstream(false);
const tlsPort = await tlsUp.ready;
const plainPort = await plainUp.ready;
const echo = startUpstream();
// an HTTPS upstream without h2 (Bun.serve without http2)
let h1Requests = 0;
const tlsH1 = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  tls: { cert: readFileSync(crt, "utf8"), key: readFileSync(key, "utf8") },
  fetch(req) {
    h1Requests++;
    return new Response(`h1 ${new URL(req.url).pathname}`);
  },
});

const h2c = await startHecate({
  proxy: {
    enableH2C: true,
    enableUpstreamH2C: true,
    routes: [
      { name: "tls", pathPrefix: "/tls", upstreams: [`https://127.0.0.1:${tlsPort}`] },
      { name: "plain", pathPrefix: "/plain", upstreams: [`http://127.0.0.1:${plainPort}`] },
      { name: "tlsh1", pathPrefix: "/h1tls", upstreams: [`https://127.0.0.1:${tlsH1.port}`] },
      { name: "dead", pathPrefix: "/dead", upstreams: ["http://127.0.0.1:1"], retry: { maxRetries: 0 } },
    ],
  },
});
const h1only = await startHecate({ proxy: { routes: [{ name: "e", upstreams: [echo.url] }] } });
if (insecureBefore === undefined) delete process.env.HECATE_UPSTREAM_INSECURE_TLS;
else process.env.HECATE_UPSTREAM_INSECURE_TLS = insecureBefore;

const protoById = new Map<string, string>();
const prevFinish = hooks.finish;
hooks.finish = (ex, d) => {
  protoById.set(ex.requestId, ex.proto);
  prevFinish(ex, d);
};

afterAll(async () => {
  hooks.finish = prevFinish;
  await h2c.shutdown();
  await h1only.shutdown();
  tlsUp.server.close();
  plainUp.server.close();
  tlsH1.stop(true);
  echo.stop();
  pki.cleanup();
});

test("enableH2C: curl --http2-prior-knowledge gets HTTP/2 on the plain listener", async () => {
  const r = await curl(["--http2-prior-knowledge", "-w", "\n%{http_version}", `${h2c.url}/plain/x`]);
  expect(r.code).toBe(0);
  const [body, version] = r.out.split("\n");
  expect(version).toBe("2");
  expect(JSON.parse(body!).path).toBe("/plain/x");
  // HTTP/1.1 still works on the same port
  const h1 = await curl(["--http1.1", "-w", "\n%{http_version}", `${h2c.url}/plain/y`]);
  expect(h1.out.split("\n")[1]).toBe("1.1");
});

test("without enableH2C the plain listener is HTTP/1.1 only (and says so in proto)", async () => {
  const r = await curl(["--http2-prior-knowledge", "-w", "\n%{http_version}", `${h1only.url}/x`]);
  expect(r.out.endsWith("\n2")).toBe(false);
  const ok = await fetch(`${h1only.url}/y`);
  expect(ok.status).toBe(200);
  expect(protoById.get(ok.headers.get("x-request-id")!)).toBe("HTTP/1.1");
});

test("an HTTPS upstream that offers h2 is spoken to over HTTP/2, on one connection", async () => {
  // the first request may go over HTTP/1.1 while the origin's ALPN answer is learned
  const deadline = Date.now() + 5000;
  let version = "";
  while (version !== "2.0" && Date.now() < deadline) {
    const r = await fetch(`${h2c.url}/tls/probe`, { headers: { host: "site.example:8080" } });
    const j = (await r.json()) as any;
    version = j.version;
    if (version === "2.0") expect(j.authority).toBe("site.example:8080");
    else await Bun.sleep(20);
  }
  expect(version).toBe("2.0");
  const sessions = tlsUp.counts.sessions;
  const body = new Uint8Array(100_000).map((_, i) => i % 251);
  const rs = await Promise.all(
    Array.from({ length: 20 }, (_, i) => fetch(`${h2c.url}/tls/c${i}`, { method: "POST", body }).then((r) => r.json() as Promise<any>)),
  );
  for (const [i, j] of rs.entries()) {
    expect(j.version).toBe("2.0");
    expect(j.path).toBe(`/tls/c${i}`);
    expect(j.bodyLength).toBe(body.length);
  }
  expect(tlsUp.counts.sessions - sessions).toBeLessThanOrEqual(1);
});

test("an HTTPS upstream without h2 keeps being spoken to over HTTP/1.1", async () => {
  const alpn = (h2c.rt.httpsTransport as FetchTransport).alpn!;
  const origin = `https://127.0.0.1:${tlsH1.port}`;
  for (let i = 0; i < 10; i++) {
    const r = await fetch(`${h2c.url}/h1tls/${i}`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe(`h1 /h1tls/${i}`);
    if (i === 0) {
      // the ALPN answer (HTTP/1.1 only) arrives; the next requests are sent knowing it
      const deadline = Date.now() + 5000;
      while (alpn.peek(origin) !== ALPN_H1 && Date.now() < deadline) await Bun.sleep(5);
      expect(alpn.peek(origin)).toBe(ALPN_H1);
    }
  }
  expect(h1Requests).toBe(10);
});

test("enableUpstreamH2C: http:// upstreams get cleartext HTTP/2, multiplexed, bodies both ways", async () => {
  const sessions = plainUp.counts.sessions;
  const big = new Uint8Array(300_000).map((_, i) => (i * 7) % 256);
  const sum = big.reduce((a, b) => (a + b) % 65521, 0);
  const rs = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      fetch(`${h2c.url}/plain/p${i}?q=${i}`, { method: i % 2 ? "POST" : "PUT", body: i % 4 === 0 ? new Blob([big]).stream() : big, headers: { host: "front.example" } }).then(
        (r) => r.json() as Promise<any>,
      ),
    ),
  );
  for (const [i, j] of rs.entries()) {
    expect(j.version).toBe("2.0");
    expect(j.path).toBe(`/plain/p${i}?q=${i}`);
    expect(j.authority).toBe("front.example");
    expect(j.xff).toBe("127.0.0.1");
    expect(j.bodyLength).toBe(big.length);
    expect(j.bodySum).toBe(sum);
  }
  expect(plainUp.counts.sessions - sessions).toBeLessThanOrEqual(1);
  // a streamed 1 MiB response arrives whole
  const r = await fetch(`${h2c.url}/plain/big`);
  const got = new Uint8Array(await r.arrayBuffer());
  expect(got.length).toBe(1 << 20);
  expect(got.every((b) => b === 7)).toBe(true);
  // HEAD has no body
  const head = await fetch(`${h2c.url}/plain/h`, { method: "HEAD" });
  expect(head.status).toBe(200);
  expect(await head.text()).toBe("");
});

test("enableUpstreamH2C: a refused connection is a 502", async () => {
  const r = await fetch(`${h2c.url}/dead/x`);
  expect(r.status).toBe(502);
});

test("HTTP/2 request bodies without Content-Length reach the upstream (streamed)", async () => {
  const sess = http2.connect(h2c.url);
  try {
    const big = Buffer.alloc(200_000, 3);
    const answer = await new Promise<string>((res, rej) => {
      const st = sess.request({ ":method": "POST", ":path": "/plain/upload", "content-type": "application/octet-stream" });
      st.on("error", rej);
      let d = "";
      st.on("data", (c) => (d += c));
      st.on("end", () => res(d));
      // two writes and END_STREAM, no content-length
      st.write(big.subarray(0, 100_000));
      st.end(big.subarray(100_000));
    });
    const j = JSON.parse(answer);
    expect(j.path).toBe("/plain/upload");
    expect(j.bodyLength).toBe(200_000);
    expect(j.bodySum).toBe((200_000 * 3) % 65521);
  } finally {
    sess.close();
  }
});
