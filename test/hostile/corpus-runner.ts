// Runs one hostile case (cases.ts) against a Hecate + recording upstream pair and returns the
// list of broken promises (empty = pass). Shared by the TCP and TLS corpus tests.
import { oneRoute, type Hecate } from "../helpers/hecate.ts";
import type { HostileCase, UpMatch } from "./cases.ts";
import { parseResponses, rawRequest, until, type RecordingUpstream, type WireRequest, type WireResponse } from "./wire.ts";

/** The corpus's Hecate: one any-host route, small caps so that 413/431 are reachable. */
export function corpusConfig(upstreamUrl: string): Record<string, any> {
  return oneRoute([upstreamUrl], {}, { limits: { bodyBytesCap: 1_000_000, headerBytesCap: 16_384 }, retry: { maxRetries: 0 } });
}

export interface CorpusEnv {
  h: Hecate;
  up: RecordingUpstream;
  port: number;
  tls: boolean;
}

const show = (b: Buffer | string, n = 300) => JSON.stringify((typeof b === "string" ? b : b.toString("latin1")).slice(0, n));

function matchUp(r: WireRequest, m: UpMatch): string[] {
  const out: string[] = [];
  if (m.method !== undefined && r.method !== m.method) out.push(`upstream method ${r.method}, want ${m.method}`);
  if (m.target !== undefined && r.target !== m.target) out.push(`upstream target ${show(r.target, 80)}, want ${show(m.target, 80)}`);
  if (m.body !== undefined && r.body.toString("latin1") !== m.body) out.push(`upstream body ${show(r.body, 60)}, want ${show(m.body, 60)}`);
  if (m.framing !== undefined && r.framing !== m.framing) out.push(`upstream framing ${r.framing}, want ${m.framing}`);
  const extra = m.check?.(r);
  if (extra) out.push(extra);
  return out;
}

/** Did this response come from the upstream fixture (its body starts with "ok ")? */
const fromUpstream = (res: WireResponse) => res.body.toString("latin1").startsWith("ok ");

export async function runCase(c: HostileCase, env: CorpusEnv): Promise<string[]> {
  const { h, up } = env;
  up.reset();
  const r = await rawRequest(env.port, c.send, { tls: env.tls, gapMs: c.gapMs, deadlineMs: 6000 });
  const problems: string[] = [];
  // settle: every exchange finished, every upstream connection either idle or closed
  try {
    await until(() => h.rt.inflight === 0, 5000, "in-flight requests to finish");
    await until(() => up.pendingBytes() === 0, 5000, "upstream connections to finish or close");
  } catch (e) {
    problems.push((e as Error).message);
  }
  const isHead = typeof c.send === "string" && c.send.startsWith("HEAD");
  const parsed = parseResponses(r.bytes, r.closed, isHead);
  const responses = parsed.responses;
  const statuses = responses.map((x) => x.status).filter((s) => s !== 100);

  // ---- promises that hold for every case ----
  if (r.timedOut) problems.push(`connection still open after ${Math.round(r.ms)} ms`);
  if (up.violations.length > 0) problems.push(`upstream received an ambiguous request: ${up.violations.join("; ")}`);
  if (parsed.garbage) problems.push(`client received bytes that are not a response: ${show(r.bytes)}`);
  if (parsed.partial) problems.push(`client received a half answer: ${show(r.bytes)}`);
  for (const res of responses) {
    const body = res.body.toString("latin1");
    if (/\n\s+at\s|Error:|node_modules|\/src\//.test(body)) problems.push(`response body leaks internals: ${show(body)}`);
    const ours = res.headers.some(([n]) => n === "x-request-id") && !fromUpstream(res);
    if (ours && res.status >= 400 && !isHead) {
      const ct = res.headers.find(([n]) => n === "content-type")?.[1];
      if (ct !== "text/plain; charset=utf-8" || !body.endsWith("\n") || body.length > 200) problems.push(`Hecate error response not short text/plain: ${ct} ${show(body)}`);
    }
  }
  const upBytes = up.raw.reduce((n, b) => n + b.length, 0);
  const nothingUpstream = (partialOk: boolean) => {
    if (up.requests.length > 0) problems.push(`upstream received ${up.requests.length} complete request(s): ${show(up.requests[0]!.raw)}`);
    else if (!partialOk && upBytes > 0) problems.push(`upstream received ${upBytes} bytes: ${show(Buffer.concat(up.raw))}`);
  };

  // ---- the case's own expectation ----
  const e = c.expect;
  switch (e.kind) {
    case "reject": {
      if (statuses.length === 0 && !e.silentOk) problems.push(`no response (want ${e.status.join("/")}); got ${show(r.bytes)}`);
      if (statuses.length > 1) problems.push(`${statuses.length} responses to one request: ${statuses.join(",")}`);
      if (statuses.length >= 1 && !e.status.includes(statuses[0]!)) problems.push(`status ${statuses[0]}, want ${e.status.join("/")}`);
      nothingUpstream(e.partialOk ?? false);
      break;
    }
    case "silent": {
      if (r.bytes.length > 0) problems.push(`want a silent close, got ${show(r.bytes)}`);
      nothingUpstream(false);
      break;
    }
    case "forward":
    case "either": {
      const ok = statuses.some((s) => s >= 200 && s < 300);
      if (e.kind === "either" && !ok) {
        if (statuses.length !== 1 || !e.status.includes(statuses[0]!)) problems.push(`status ${statuses.join(",") || "none"}, want 200 or ${e.status.join("/")}`);
        nothingUpstream(e.partialOk ?? false);
        break;
      }
      const want = e.kind === "forward" && e.responses ? e.responses : [200];
      const all = responses.map((x) => x.status);
      if (all.join(",") !== want.join(",")) problems.push(`statuses ${all.join(",") || "none"}, want ${want.join(",")}; got ${show(r.bytes)}`);
      if (up.requests.length !== 1) problems.push(`upstream received ${up.requests.length} requests, want 1`);
      else {
        problems.push(...matchUp(up.requests[0]!, e.up));
        const last = responses[responses.length - 1];
        const q = up.requests[0]!;
        if (last && last.body.toString("latin1") !== `ok ${q.method} ${q.target} ${q.body.length}\n`) problems.push(`client got ${show(last.body)}, not the upstream's answer to its request`);
      }
      break;
    }
    case "pipeline": {
      const got = up.requests.map((q) => q.target);
      if (got.length > e.targets.length || got.some((t, i) => t !== e.targets[i])) problems.push(`upstream got ${got.join(" ")}, want a prefix of ${e.targets.join(" ")}`);
      if (statuses.length > got.length) problems.push(`${statuses.length} responses for ${got.length} forwarded requests`);
      responses.forEach((res, i) => {
        if (res.status !== 200 || !res.body.toString("latin1").includes(` ${e.targets[i]} `)) problems.push(`response ${i} is not the answer to ${e.targets[i]}: ${res.status} ${show(res.body)}`);
      });
      break;
    }
  }
  return problems;
}
