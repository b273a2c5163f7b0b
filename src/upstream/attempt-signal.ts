// The cancel signal of one upstream attempt: the client went away, or its per-try / route
// deadline passed. Cheaper than an AbortController + a setTimeout per attempt, which the CPU
// profile put at ~7% of a proxied 1 KiB request (EventTarget listeners on two signals, a timer
// armed and cleared): an attempt is a plain object with one listener slot, and deadlines live
// in one array swept by a single timer aimed at the earliest deadline — a request costs an
// array push and a swap-remove, not a timer. Fetch-based transports, which need a real
// AbortSignal, get one from `toAbortSignal` (only they pay for it).
//
// The client's own signal is not touched while the answer is quick: Bun creates `req.signal`
// lazily, and creating it plus one listener cost ~3% of a 1 KiB request. An attempt still
// waiting after CLIENT_WATCH_MS subscribes then (Bun hands out an already-aborted signal when
// the client left before it was asked for, so nothing is missed: a departure is noticed at
// most CLIENT_WATCH_MS late).
import { clientGone, ProxyError } from "../errors.ts";
import type { AbortLike } from "./transport.ts";

/** How long an attempt runs before it watches the client's signal, ms. */
export const CLIENT_WATCH_MS = 20;

type Listener = EventListenerObject | (() => void);
let ABORT_EVENT: Event | null = null;

function call(l: Listener): void {
  if (typeof l === "function") l();
  else l.handleEvent((ABORT_EVENT ??= new Event("abort")));
}

export class AttemptSignal implements AbortLike {
  aborted = false;
  reason: ProxyError | undefined = undefined;
  /** Next performance.now() ms at which the sweep looks at this attempt; Infinity = never. */
  deadline = Infinity;
  /** Index in `live` while it has a deadline, else -1. */
  slot = -1;
  private timeoutAt = Infinity;
  private watchAt = Infinity;
  private client: Request | null = null;
  private clientSignal: AbortSignal | null = null;
  private l0: Listener | null = null;
  private more: Listener[] | null = null;

  addEventListener(_type: "abort", l: Listener): void {
    if (this.aborted) return; // as EventTarget: an abort that already happened is not replayed
    if (this.l0 === null) this.l0 = l;
    else (this.more ??= []).push(l);
  }

  removeEventListener(_type: "abort", l: Listener): void {
    if (this.l0 === l) this.l0 = null;
    else if (this.more !== null) {
      const i = this.more.indexOf(l);
      if (i >= 0) this.more.splice(i, 1);
    }
  }

  abort(reason: ProxyError): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.disarm();
    const l0 = this.l0;
    const more = this.more;
    this.l0 = null;
    this.more = null;
    if (l0 !== null) call(l0);
    if (more !== null) for (const l of more) call(l);
  }

  /** Time the attempt out at `at` (performance.now() ms), with a `timeout` ProxyError. */
  armAt(at: number): void {
    if (this.aborted) return;
    this.timeoutAt = at;
    this.aim();
  }

  /** Abort with `client_gone` when `req`'s client goes away, watching from `at` on (see above). */
  watch(req: Request, at: number): void {
    if (this.aborted) return;
    this.client = req;
    this.watchAt = at;
    this.aim();
  }

  /** The attempt is over (or has its response head): no deadline, no client watch. */
  disarm(): void {
    this.timeoutAt = Infinity;
    this.watchAt = Infinity;
    this.client = null;
    const cs = this.clientSignal;
    if (cs !== null) {
      this.clientSignal = null;
      cs.removeEventListener("abort", this);
    }
    if (this.deadline !== Infinity) {
      this.deadline = Infinity;
      unlist(this);
    }
  }

  /** The client's signal fired. */
  handleEvent(): void {
    this.clientSignal = null;
    this.abort(clientGone());
  }

  /** Its deadline came (the sweep took it out of the list). */
  expire(now: number): void {
    this.deadline = Infinity;
    if (this.watchAt <= now) {
      const req = this.client!;
      this.watchAt = Infinity;
      this.client = null;
      const cs = req.signal;
      if (cs.aborted) return this.abort(clientGone());
      this.clientSignal = cs;
      cs.addEventListener("abort", this);
    }
    if (this.timeoutAt <= now) return this.abort(new ProxyError("timeout", "upstream timed out", { source: "upstream" }));
    this.aim();
  }

  private aim(): void {
    const d = this.timeoutAt < this.watchAt ? this.timeoutAt : this.watchAt;
    if (d === this.deadline) return;
    this.deadline = d;
    if (d === Infinity) unlist(this);
    else {
      if (this.slot < 0) {
        this.slot = live.length;
        live.push(this);
      }
      schedule(d);
    }
  }
}

// --- deadlines ---------------------------------------------------------------------------
// One timer, set for the earliest deadline it knows of. An attempt that ends first just leaves
// the list; the timer then fires for nothing and re-aims at the earliest remaining deadline
// (one scan of the attempts in flight, at most once per timeout period).
//
// A plain array with swap-remove, not a Set: measured with BUN_JSC_logGC=2 on Bun 1.4.5, the
// module-level Set that gained and lost an entry per request made every young-generation
// collection visit ~550 KB at ~30k requests/s (~25 KB with the array) and lengthened each
// pause by ~0.2 ms (bench/RESULTS.md, third session). Why a Set does that was not
// established; the array never holds more than the attempts in flight.
const live: AttemptSignal[] = [];

function unlist(a: AttemptSignal): void {
  const i = a.slot;
  if (i < 0) return;
  a.slot = -1;
  const last = live.pop()!;
  if (last !== a) {
    live[i] = last;
    last.slot = i;
  }
}
let timer: Timer | null = null;
let timerAt = Infinity;

function schedule(at: number): void {
  if (timer !== null) {
    if (at >= timerAt) return;
    clearTimeout(timer);
  }
  timerAt = at;
  timer = setTimeout(sweep, Math.max(0, Math.ceil(at - performance.now())));
  timer.unref();
}

function sweep(): void {
  timer = null;
  timerAt = Infinity;
  const now = performance.now();
  let next = Infinity;
  // expired ones first (expire() may list an attempt again, at a later deadline)
  const due: AttemptSignal[] = [];
  for (let i = 0; i < live.length; i++) if (live[i]!.deadline <= now) due.push(live[i]!);
  for (const a of due) {
    unlist(a);
    a.expire(now);
  }
  for (let i = 0; i < live.length; i++) if (live[i]!.deadline < next) next = live[i]!.deadline;
  if (next !== Infinity) schedule(next);
}

/** Attempts waiting on a deadline (tests, debug vars). */
export function armedAttempts(): number {
  return live.length;
}

/** A real AbortSignal following `s` (fetch needs one). */
export function toAbortSignal(s: AbortLike): AbortSignal {
  if (s instanceof AbortSignal) return s;
  const ac = new AbortController();
  if (s.aborted) ac.abort(s.reason);
  else s.addEventListener("abort", () => ac.abort(s.reason));
  return ac.signal;
}
