// Keyed rate limits shared by every Hecate instance through Redis (SPEC §2.4 `store`, §3.10).
//
// One Lua script per decision does the whole token-bucket step atomically on the server: read the
// bucket's TAT, admit or refuse, write the new TAT with PEXPIRE = time until the bucket is full
// again (so a bucket that has refilled simply vanishes and Redis memory stays bounded exactly like
// the memory store's). The math is the GCRA form of token-bucket.ts: TAT = the time the bucket is
// full again; take ⇔ max(TAT, now) + I − now ≤ τ.
//
// Time: the script reads the Redis server's TIME, so every instance decides against the same
// clock whatever the skew between their hosts (performance.now() is per process and meaningless
// across instances; Date.now() differs between hosts). Arithmetic is in whole microseconds, which
// are exact integers in a double (epoch µs ≈ 1.8e15 < 2^53): no float drift, and `burst` takes at
// one instant add up to exactly τ. I is 1e6/rps rounded to whole µs (≥ 1): a relative rate error
// below 1e-6 for any rps ≤ 1000, below 1e-3 up to 1e6 rps per key. Tests may pass an explicit
// time instead of TIME (`takeAt`), which is how the script is checked against the memory store.
//
// Keys: `hecate:rl:<rule>:<key>`; `:` in a rule name is written `%3A` (names never contain `%`) so
// the rule part ends at the first `:`. Keys longer than 64 characters are replaced by a 64-bit
// hash like in the memory store (a huge header value costs no Redis memory).
//
// Outage (Redis unreachable, connection lost, or a decision not answered within DECISION_TIMEOUT_MS):
// the connection goes "down" and every decision is answered at once, without touching Redis,
// by `failOpen` — true admits, false refuses with 429 and `Retry-After: 1` (429 rather than 503:
// it is the rate limiter that says no, and a 429's Retry-After asks clients to come back soon
// without making load balancers eject the proxy). A probe reconnects every PROBE_INTERVAL_MS;
// the first success brings decisions back. The outage is logged once when it starts
// ("rate-limit store unavailable", warn), every REMINDER_MS while it lasts, and once when it ends
// ("rate-limit store recovered", info, with its duration and the decisions it took); every
// failed decision is counted through `hooks.rateLimitStoreError` (metric
// `hecate_ratelimit_store_errors_total{result="fail_open"|"fail_closed"}`). An error reply from a
// reachable server (other than NOSCRIPT, which falls back to EVAL) fails that one decision the
// same way, counted, and is logged at most once per REMINDER_MS.
//
// No request waits on Redis for longer than DECISION_TIMEOUT_MS: pending decisions sit in one
// FIFO checked by a single timer (no timer per request); a timeout closes the connection, which
// rejects whatever was still queued on it.
//
// One client per (runtime, URL), reference-counted by the generations that use it: a reload with
// the same URL keeps the connection, the last generation's dispose (or shutdown) closes it.
import type { RedisClient } from "bun";
import { log } from "../observability/log.ts";
import { hooks } from "../pipeline/hooks.ts";
import { TAKE_OK, type RateSpec, type TakeResult } from "./token-bucket.ts";
import { MemoryRateLimiterStore, type RateLimiterStore } from "./rate-limiter-store.ts";

/** A decision not answered within this is an outage (never let a request hang on Redis). */
export const DECISION_TIMEOUT_MS = 100;
/** Reconnection attempts while down. */
export const PROBE_INTERVAL_MS = 500;
/** While down (or while the server keeps answering errors), repeat the log line this often. */
export const REMINDER_MS = 60_000;
const CONNECT_TIMEOUT_MS = 2_000;
/** A probe (connect + PING) not done within this is abandoned (a frozen server accepts TCP, then says nothing). */
const PROBE_TIMEOUT_MS = 1_000;

/** Same cut-off as the memory store. */
const MAX_KEY = 64;

/**
 * KEYS[1] bucket; ARGV[1] I (µs per token); ARGV[2] τ = burst·I (µs); ARGV[3] now in µs, or ""
 * for the server's TIME. Returns 0 when admitted, else whole seconds until a token (≥ 1).
 */
export const BUCKET_SCRIPT = `
local now
if ARGV[3] == "" then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local interval = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local v = redis.call("GET", KEYS[1])
local tat = now
if v then
  tat = tonumber(v) or now
  if tat < now then tat = now end
end
local nxt = tat + interval
if nxt - now <= cap then
  redis.call("SET", KEYS[1], string.format("%.0f", nxt), "PX", math.ceil((nxt - now) / 1000))
  return 0
end
local s = math.ceil((nxt - cap - now) / 1000000)
if s < 1 then s = 1 end
return s
`;
export const BUCKET_SCRIPT_SHA = new Bun.CryptoHasher("sha1").update(BUCKET_SCRIPT).digest("hex");

/** The answer of every fail-closed decision. */
const FAIL_CLOSED: TakeResult = Object.freeze({ ok: false, retryAfterSec: 1 });
/** Script answers 1…N as shared objects (a refused client usually waits a few seconds). */
const REFUSED: TakeResult[] = Array.from({ length: 61 }, (_, s) => Object.freeze({ ok: false, retryAfterSec: s }));

const UP = 0;
const CONNECTING = 1;
const DOWN = 2;

/** One decision waiting for Redis. */
class Pending {
  done = false;
  resolve: (r: TakeResult) => void = noop;
  readonly promise: Promise<TakeResult>;
  constructor(
    readonly t0: number,
    readonly store: RedisRateLimiterStore,
    readonly args: string[],
  ) {
    this.promise = new Promise<TakeResult>((r) => (this.resolve = r));
  }
}
function noop(): void {}

/** `redis://user:secret@host` → `redis://user:***@host` (for logs). */
export function redactUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)([^@/]*):([^@/]*)@/, "$1$2:***@");
}

/** One Redis connection with its outage state; shared by every rule of the runtime. */
export class RedisConnection {
  readonly client: RedisClient;
  readonly shownUrl: string;
  private state = CONNECTING;
  private closed = false;
  private connectP: Promise<void> | null = null;
  // FIFO of decisions in flight, for the timeout check
  private queue: Pending[] = [];
  private qHead = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  // outage bookkeeping
  private probeTimer: ReturnType<typeof setTimeout> | null = null;
  private probing = false;
  private downSince = 0;
  private lastDownLog = 0;
  private failedWhileDown = 0;
  private lastErrorLog = -Infinity;
  private errorsSinceLog = 0;
  /** Decisions that failed (any reason) since the start; for tests and status pages. */
  failures = 0;
  /** Outages seen (transitions to down). */
  outages = 0;
  /** `failOpen` of the newest generation using this connection (shown in the outage log). */
  failOpen = true;

  constructor(readonly url: string) {
    this.shownUrl = redactUrl(url);
    // Bun.RedisClient, not an import of it: the import would make its class in every process
    this.client = new Bun.RedisClient(url, { autoReconnect: false, enableOfflineQueue: false, connectionTimeout: CONNECT_TIMEOUT_MS });
    this.client.onclose = (err) => {
      // an unexpected close while serving; closes we cause, or failed connects, are handled where they happen
      if (!this.closed && this.state === UP) this.goDown(err?.message ?? "connection closed");
    };
    this.connectP = this.client.connect().then(
      () => {
        this.connectP = null;
        if (!this.closed && this.state === CONNECTING) this.state = UP;
      },
      (e: Error) => {
        this.connectP = null;
        if (!this.closed) this.goDown(e.message);
      },
    );
  }

  get down(): boolean {
    return this.state === DOWN;
  }

  /** Run the bucket script for one decision (the store has checked that the connection is not down). */
  decide(store: RedisRateLimiterStore, args: string[]): Promise<TakeResult> {
    const p = new Pending(performance.now(), store, args);
    this.queue.push(p);
    if (this.timer === null) this.armTimer(DECISION_TIMEOUT_MS);
    if (this.state === UP) this.send(p, false);
    else this.connectP!.then(() => (this.state === UP ? this.send(p, false) : undefined)); // failure paths settle p
    return p.promise;
  }

  private send(p: Pending, evalScript: boolean): void {
    const args = p.args;
    args[0] = evalScript ? BUCKET_SCRIPT : BUCKET_SCRIPT_SHA;
    this.client.send(evalScript ? "EVAL" : "EVALSHA", args).then(
      (n: number) => {
        if (p.done) return;
        p.done = true;
        p.resolve(n === 0 ? TAKE_OK : (REFUSED[n] ?? { ok: false, retryAfterSec: n }));
      },
      (e: Error & { code?: string }) => {
        if (p.done) return;
        if (e.code === "ERR_REDIS_SERVER_ERROR") {
          // first use on this server (or after SCRIPT FLUSH / a restart): EVAL loads the script
          if (!evalScript && e.message.startsWith("NOSCRIPT")) return this.send(p, true);
          this.serverError(e.message);
          this.fail(p);
        } else {
          this.fail(p);
          if (this.state === UP) this.goDown(e.message);
        }
      },
    );
  }

  /** Settle one decision as failed (failOpen decides). */
  private fail(p: Pending): void {
    p.done = true;
    p.resolve(this.failed(p.store));
  }

  /** Count one failed decision and return the answer `failOpen` gives. */
  failed(store: RedisRateLimiterStore): TakeResult {
    this.failures++;
    if (this.state === DOWN) this.failedWhileDown++;
    hooks.rateLimitStoreError(store.failOpen ? "fail_open" : "fail_closed");
    return store.failOpen ? TAKE_OK : FAIL_CLOSED;
  }

  private armTimer(ms: number): void {
    this.timer = setTimeout(() => this.checkTimeouts(), ms);
    this.timer.unref?.();
  }

  private checkTimeouts(): void {
    this.timer = null;
    const q = this.queue;
    while (this.qHead < q.length && q[this.qHead]!.done) this.qHead++;
    if (this.qHead === q.length) {
      q.length = 0;
      this.qHead = 0;
      return;
    }
    if (this.qHead > 1024) {
      this.queue = q.slice(this.qHead);
      this.qHead = 0;
    }
    const oldest = this.queue[this.qHead]!;
    const age = performance.now() - oldest.t0;
    if (age >= DECISION_TIMEOUT_MS) {
      this.goDown(`no answer within ${DECISION_TIMEOUT_MS} ms`);
      this.client.close(); // rejects what is still queued on the connection; the probe reconnects
    } else this.armTimer(DECISION_TIMEOUT_MS - age);
  }

  private failAllPending(): void {
    const q = this.queue;
    for (let i = this.qHead; i < q.length; i++) if (!q[i]!.done) this.fail(q[i]!);
    this.queue = [];
    this.qHead = 0;
  }

  private goDown(reason: string): void {
    if (this.state === DOWN || this.closed) return;
    this.state = DOWN;
    this.outages++;
    this.downSince = performance.now();
    this.lastDownLog = this.downSince;
    this.failedWhileDown = 0;
    log("warn", "rate-limit store unavailable", { store: "redis", url: this.shownUrl, error: reason, failOpen: this.failOpen });
    this.failAllPending();
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.closed || this.probeTimer !== null) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      void this.probe();
    }, PROBE_INTERVAL_MS);
    this.probeTimer.unref?.();
  }

  private async probe(): Promise<void> {
    if (this.closed || this.state !== DOWN || this.probing) return;
    this.probing = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const attempt = (async () => {
        if (!this.client.connected) await this.client.connect();
        await this.client.send("PING", []);
      })();
      attempt.catch(noop); // its failure after a timeout is of no interest
      await Promise.race([
        attempt,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            this.client.close(); // abandon the hanging connect or PING; the next probe starts afresh
            reject(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`));
          }, PROBE_TIMEOUT_MS);
        }),
      ]);
      if (this.closed) return;
      const downMs = Math.round(performance.now() - this.downSince);
      this.state = UP;
      log("info", "rate-limit store recovered", { store: "redis", url: this.shownUrl, downMs, failedDecisions: this.failedWhileDown });
    } catch (e) {
      if (this.closed) return;
      const now = performance.now();
      if (now - this.lastDownLog >= REMINDER_MS) {
        this.lastDownLog = now;
        log("warn", "rate-limit store still unavailable", {
          store: "redis",
          url: this.shownUrl,
          error: (e as Error).message,
          downMs: Math.round(now - this.downSince),
          failedDecisions: this.failedWhileDown,
        });
      }
      this.scheduleProbe();
    } finally {
      clearTimeout(timer);
      this.probing = false;
    }
  }

  private serverError(message: string): void {
    this.errorsSinceLog++;
    const now = performance.now();
    if (now - this.lastErrorLog < REMINDER_MS) return;
    this.lastErrorLog = now;
    log("warn", "rate-limit store error", { store: "redis", url: this.shownUrl, error: message, errors: this.errorsSinceLog });
    this.errorsSinceLog = 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.probeTimer !== null) clearTimeout(this.probeTimer);
    this.timer = this.probeTimer = null;
    const q = this.queue;
    for (let i = this.qHead; i < q.length; i++) if (!q[i]!.done) this.fail(q[i]!);
    this.queue = [];
    this.qHead = 0;
    this.client.onclose = null;
    this.client.close();
  }
}

/** A rule's buckets in Redis. Cheap: one per rule per generation, over a shared connection. */
export class RedisRateLimiterStore implements RateLimiterStore {
  /** Buckets live in Redis; this process holds none. */
  readonly size = 0;
  private readonly prefix: string;
  private readonly intervalArg: string;
  private readonly capacityArg: string;

  constructor(
    readonly conn: RedisConnection,
    readonly rule: string,
    readonly spec: RateSpec,
    readonly failOpen: boolean,
  ) {
    this.prefix = `hecate:rl:${rule.replaceAll(":", "%3A")}:`;
    const intervalUs = Math.max(1, Math.round(1e6 / spec.rps));
    this.intervalArg = String(intervalUs);
    this.capacityArg = String(intervalUs * spec.burst);
  }

  /** The Redis key of a bucket. */
  keyOf(key: string): string {
    return this.prefix + (key.length > MAX_KEY ? "#" + Bun.hash(key).toString(36) : key);
  }

  /** `now` (this process's clock) is not used: the script reads the Redis server's clock. */
  take(key: string, _now: number): TakeResult | Promise<TakeResult> {
    const c = this.conn;
    if (c.down) return c.failed(this);
    return c.decide(this, ["", "1", this.keyOf(key), this.intervalArg, this.capacityArg, ""]);
  }

  /** A decision at an explicit time (ms on any clock shared by the callers), for tests. */
  takeAt(key: string, nowMs: number): TakeResult | Promise<TakeResult> {
    const c = this.conn;
    if (c.down) return c.failed(this);
    return c.decide(this, ["", "1", this.keyOf(key), this.intervalArg, this.capacityArg, String(Math.round(nowMs * 1000))]);
  }

  /** The connection is owned by `acquireRedis`'s holders. */
  close(): void {}
}

// --- connections kept across reloads ---------------------------------------------------------

interface HeldConn {
  conn: RedisConnection;
  refs: number;
}
const connsByOwner = new WeakMap<object, Map<string, HeldConn>>();
const FALLBACK_OWNER = {};

/** The connection of `owner` to `url` (created on first use); `release` closes it after the last user. */
export function acquireRedis(owner: object | undefined, url: string): { conn: RedisConnection; release: () => void } {
  const o = owner ?? FALLBACK_OWNER;
  let m = connsByOwner.get(o);
  if (!m) connsByOwner.set(o, (m = new Map()));
  let h = m.get(url);
  if (!h) m.set(url, (h = { conn: new RedisConnection(url), refs: 0 }));
  h.refs++;
  const held = h;
  const map = m;
  let released = false;
  return {
    conn: h.conn,
    release() {
      if (released) return;
      released = true;
      if (--held.refs === 0) {
        held.conn.close();
        if (map.get(url) === held) map.delete(url);
      }
    },
  };
}

// --- compile-time wiring -------------------------------------------------------------------

export interface StoreConfig {
  redis: { url: string };
  failOpen: boolean;
}

/**
 * The `sharedStore` of a compile (see rate-limit.ts CompileCtx): each keyed rule gets a
 * RedisRateLimiterStore over the runtime's connection to `cfg.redis.url`, acquired on the first
 * keyed rule (no rule, no connection) and released by the generation's disposers.
 */
export function redisStoreFactory(
  cfg: StoreConfig,
  ctx: { owner?: object; disposers: (() => void)[]; errors: { path: string; message: string }[] },
): (name: string, spec: RateSpec) => RateLimiterStore {
  let conn: RedisConnection | null = null;
  let broken = false;
  return (name, spec) => {
    if (conn === null && !broken) {
      try {
        const held = acquireRedis(ctx.owner, cfg.redis.url);
        ctx.disposers.push(held.release);
        conn = held.conn;
        conn.failOpen = cfg.failOpen;
      } catch (e) {
        broken = true;
        ctx.errors.push({ path: "proxy.policy.store.redis.url", message: `cannot be used: ${(e as Error).message}` });
      }
    }
    // a broken URL fails the compile; the rule still needs some store until then
    return conn !== null ? new RedisRateLimiterStore(conn, name, spec, cfg.failOpen) : new MemoryRateLimiterStore(spec, { timer: false });
  };
}
