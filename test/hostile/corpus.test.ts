// Hostile-input corpus (SPEC §6, §3.1 stage 1) over plain TCP, once per upstream transport:
// every case of cases.ts as raw bytes to an in-process Hecate whose upstream records the raw
// bytes it receives. See cases.ts for the contract each case is held to.
import { describe, test, expect, beforeAll, afterAll } from "bun:test";
import { startHecate, type Hecate } from "../helpers/hecate.ts";
import { FetchTransport } from "../../src/upstream/fetch-transport.ts";
import { H1Transport } from "../../src/upstream/h1/transport.ts";
import type { UpstreamTransport } from "../../src/upstream/transport.ts";
import { CASES } from "./cases.ts";
import { corpusConfig, runCase, type CorpusEnv } from "./corpus-runner.ts";
import { recordingUpstream, rawRequest, parseResponses, until, type RecordingUpstream } from "./wire.ts";

test("the corpus has at least 60 cases, each naming its RFC clause", () => {
  expect(CASES.length).toBeGreaterThanOrEqual(60);
  for (const c of CASES) expect(c.rfc).toMatch(/RFC \d{4} §\d+(\.\d+)*/);
  expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
});

const transports: Record<string, () => UpstreamTransport> = {
  fetch: () => new FetchTransport(),
  h1: () => new H1Transport(),
};

for (const [name, make] of Object.entries(transports)) {
  describe(`hostile corpus over TCP, ${name} upstream transport`, () => {
    const env = {} as CorpusEnv;
    beforeAll(async () => {
      env.up = recordingUpstream();
      env.h = await startHecate(corpusConfig(env.up.url));
      env.h.rt.httpTransport.close();
      env.h.rt.httpTransport = make();
      env.port = Number(new URL(env.h.url).port);
      env.tls = false;
    });
    afterAll(async () => {
      await env.h.shutdown();
      env.up.stop();
    });

    for (const c of CASES)
      test(`${c.name} (${c.rfc})`, async () => {
        expect(await runCase(c, env)).toEqual([]);
      });

    test("still serving after the corpus: a normal request succeeds", async () => {
      env.up.reset();
      const r = await fetch(`${env.h.url}/after`, { headers: { host: "h" } });
      expect(r.status).toBe(200);
      expect(await r.text()).toBe("ok GET /after 0\n");
      expect(env.up.violations).toEqual([]);
    });
  });
}

// Absolute-form (RFC 9112 §3.2.2): the URI's authority should win over Host. Bun 1.4.5 builds
// req.url from the Host field and keeps no copy of the request-target (Request has no raw
// target, and oven-sh/bun#33002, which would use the URI authority, is not in 1.4.5), so Hecate
// cannot see the authority at all: `GET http://other/x` with `Host: h` looks exactly like
// `GET /x` with `Host: h`. What Hecate guarantees instead is consistency, so nothing can be
// smuggled past a route: the route is chosen by the Host value, and that same value is what
// the upstream receives as Host and X-Forwarded-Host; the authority `other` is never seen,
// routed on or forwarded. A front proxy that follows RFC 9112 §3.2.2 rewrites Host from the
// URI before it forwards, so the two only disagree when a client talks to Hecate directly.
describe("absolute-form target (documented limitation)", () => {
  let upH: RecordingUpstream;
  let upOther: RecordingUpstream;
  let h: Hecate;
  beforeAll(async () => {
    upH = recordingUpstream();
    upOther = recordingUpstream();
    h = await startHecate({
      proxy: {
        routes: [
          { name: "h", hosts: ["h"], upstreams: [upH.url] },
          { name: "other", hosts: ["other"], upstreams: [upOther.url] },
        ],
      },
    });
  });
  afterAll(async () => {
    await h.shutdown();
    upH.stop();
    upOther.stop();
  });

  test("routed on Host, and the upstream receives that same Host: route and upstream agree", async () => {
    const port = Number(new URL(h.url).port);
    const r = await rawRequest(port, "GET http://other/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    const res = parseResponses(r.bytes, r.closed).responses;
    expect(res.map((x) => x.status)).toEqual([200]);
    await until(() => h.rt.inflight === 0);
    expect(upOther.requests.length).toBe(0);
    expect(upH.requests.length).toBe(1);
    const q = upH.requests[0]!;
    const field = (n: string) => q.fields.find(([k]) => k.toLowerCase() === n)?.[1];
    expect(q.target).toBe("/x");
    expect(field("host")).toBe("h");
    expect(field("x-forwarded-host")).toBe("h");
    expect(q.raw.toString("latin1")).not.toContain("other");
    expect(upH.violations).toEqual([]);
  });

  test("the same request in origin-form takes the same route (the two are indistinguishable to Hecate)", async () => {
    upH.reset();
    const port = Number(new URL(h.url).port);
    const r = await rawRequest(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    expect(parseResponses(r.bytes, r.closed).responses.map((x) => x.status)).toEqual([200]);
    await until(() => upH.requests.length === 1);
    expect(upOther.requests.length).toBe(0);
  });
});
