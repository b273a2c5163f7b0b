// Per-origin pools of keep-alive HTTP/1.1 connections: an idle stack (LIFO, so the warmest
// socket is reused and the cold ones age out), a count of open connections bounded per origin,
// and a FIFO of requests waiting for a connection when the bound is reached.
//
// Each idle connection has a deadline: the pool's idle timeout, shortened by the upstream's
// `Keep-Alive: timeout=N` hint (minus a margin) so we stop using a connection before the
// upstream closes it — the keep-alive race undici avoids the same way. `take()` checks the
// deadline; one unref'd interval per pool closes expired connections (no timer per connection).

/** What the pool needs from a connection. */
export interface Poolable {
  /** When it must no longer be reused (ms, Date.now() clock). */
  idleDeadline: number;
  /** Whether it sits in its origin's idle stack. */
  inIdle: boolean;
  /** Close it; its bookkeeping then calls `OriginPool.remove()` and decrements `open`. */
  destroy(): void;
  /** Still usable (not closed, not closing). */
  alive(): boolean;
}

/** A request waiting for a connection; `cancelled` ones are skipped. */
export interface Waiting {
  cancelled: boolean;
}

export interface PoolOptions {
  /** Idle connections kept per origin; extra ones are closed when released. Default 512. */
  maxIdlePerOrigin?: number;
  /** Connections open (busy + idle + connecting) per origin; more requests queue. Default 1024. */
  maxConnsPerOrigin?: number;
  /** Idle connections older than this are closed. Default 60 000 ms. */
  idleTimeoutMs?: number;
}

export class OriginPool<C extends Poolable, W extends Waiting> {
  /** Idle connections, most recently released last. */
  readonly idle: C[] = [];
  /** Open or opening connections of this origin (idle ones included). */
  open = 0;
  private readonly q: (W | undefined)[] = [];
  private qHead = 0;

  constructor(
    readonly key: string,
    readonly hostname: string,
    readonly port: number,
  ) {}

  /** The most recently released idle connection that is alive and not expired, or null. */
  take(now: number): C | null {
    const idle = this.idle;
    while (idle.length > 0) {
      const c = idle.pop()!;
      c.inIdle = false;
      if (c.idleDeadline > now && c.alive()) return c;
      c.destroy(); // expired, or closed with its close event still to run
    }
    return null;
  }

  /** Remove a connection from the idle stack (it closed). */
  remove(c: C): void {
    if (!c.inIdle) return;
    c.inIdle = false;
    const idle = this.idle;
    const i = idle.lastIndexOf(c);
    if (i >= 0) idle.splice(i, 1);
  }

  get waiting(): number {
    return this.q.length - this.qHead;
  }

  enqueue(w: W): void {
    this.q.push(w);
  }

  /** The first waiter that was not cancelled, or null. */
  dequeue(): W | null {
    const q = this.q;
    while (this.qHead < q.length) {
      const w = q[this.qHead]!;
      q[this.qHead++] = undefined;
      if (this.qHead === q.length) {
        q.length = 0;
        this.qHead = 0;
      } else if (this.qHead >= 1024 && this.qHead * 2 >= q.length) {
        q.splice(0, this.qHead);
        this.qHead = 0;
      }
      if (!w.cancelled) return w;
    }
    return null;
  }
}

export class ConnPool<C extends Poolable, W extends Waiting> {
  readonly maxIdlePerOrigin: number;
  readonly maxConnsPerOrigin: number;
  readonly idleTimeoutMs: number;
  private readonly origins = new Map<string, OriginPool<C, W>>();
  private sweeper: Timer | null = null;

  constructor(opts: PoolOptions = {}) {
    this.maxIdlePerOrigin = opts.maxIdlePerOrigin ?? 512;
    this.maxConnsPerOrigin = opts.maxConnsPerOrigin ?? 1024;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
  }

  /** The pool of one origin (`key` = `scheme://host:port`), created on first use. */
  origin(key: string, hostname: string, port: number): OriginPool<C, W> {
    let op = this.origins.get(key);
    if (op === undefined) {
      op = new OriginPool<C, W>(key, hostname, port);
      this.origins.set(key, op);
    }
    return op;
  }

  /**
   * Keep an idle connection for at most `maxIdleMs` (the pool's idle timeout when larger);
   * false = the origin has enough idle ones or the window is empty: close it.
   */
  put(op: OriginPool<C, W>, c: C, maxIdleMs: number): boolean {
    const ms = maxIdleMs < this.idleTimeoutMs ? maxIdleMs : this.idleTimeoutMs;
    if (ms <= 0 || op.idle.length >= this.maxIdlePerOrigin) return false;
    c.idleDeadline = Date.now() + ms;
    c.inIdle = true;
    op.idle.push(c);
    if (this.sweeper === null) {
      const every = Math.max(250, Math.min(15_000, this.idleTimeoutMs / 4));
      this.sweeper = setInterval(() => this.sweep(Date.now()), every);
      this.sweeper.unref();
    }
    return true;
  }

  /** Close idle connections whose deadline passed; drop empty origins; stop when nothing is idle. */
  sweep(now: number): void {
    let any = false;
    for (const op of this.origins.values()) {
      const idle = op.idle;
      let expired: C[] | null = null;
      let k = 0;
      for (let i = 0; i < idle.length; i++) {
        const c = idle[i]!;
        if (c.idleDeadline <= now) (expired ??= []).push(c);
        else idle[k++] = c;
      }
      idle.length = k;
      if (expired !== null)
        for (const c of expired) {
          c.inIdle = false;
          c.destroy();
        }
      if (idle.length > 0) any = true;
      else if (op.open === 0 && op.waiting === 0) this.origins.delete(op.key);
    }
    if (!any && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Close every idle connection and stop the sweeper. */
  closeIdle(): void {
    for (const op of this.origins.values()) {
      const idle = op.idle.splice(0);
      for (const c of idle) {
        c.inIdle = false;
        c.destroy();
      }
    }
    if (this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Per-origin counts, for tests and the admin API. */
  stats(): Record<string, { open: number; idle: number; waiting: number }> {
    const out: Record<string, { open: number; idle: number; waiting: number }> = {};
    for (const op of this.origins.values()) out[op.key] = { open: op.open, idle: op.idle.length, waiting: op.waiting };
    return out;
  }
}
