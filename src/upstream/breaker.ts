// Circuit breaker per upstream origin (SPEC §3.5), shared by every route that uses the origin.
//
// Failure = transport error, per-try timeout, or 502/503/504 from the upstream. Closed → open
// after `openAfterConsecutiveFailures` consecutive failures; open for `cooldownSec` (the
// balancers skip it); then half-open: at most `halfOpenMaxRequests` trial requests in flight;
// that many trial successes close it, any trial failure re-opens it.

export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerSettings {
  enabled: boolean;
  openAfterConsecutiveFailures: number;
  cooldownMs: number;
  halfOpenMaxRequests: number;
}

export type BreakerListener = (origin: string, from: BreakerState, to: BreakerState) => void;

export class CircuitBreaker {
  readonly origin: string;
  settings: BreakerSettings;
  state: BreakerState = "closed";
  consecutiveFailures = 0;
  openedAt = 0;
  trialsInFlight = 0;
  trialSuccesses = 0;
  onChange: BreakerListener | undefined;

  constructor(origin: string, settings: BreakerSettings, onChange?: BreakerListener) {
    this.origin = origin;
    this.settings = settings;
    this.onChange = onChange;
  }

  /** May a request be sent now? Moves open → half-open when the cooldown is over. Does not reserve. */
  available(now: number): boolean {
    if (!this.settings.enabled) return true;
    if (this.state === "closed") return true;
    if (this.state === "open") {
      if (now - this.openedAt < this.settings.cooldownMs) return false;
      this.transition("half-open");
      this.trialsInFlight = 0;
      this.trialSuccesses = 0;
    }
    return this.trialsInFlight < this.settings.halfOpenMaxRequests;
  }

  /** Called when a request is actually sent; returns whether it counts as a half-open trial. */
  onSend(): boolean {
    if (this.state === "half-open") {
      this.trialsInFlight++;
      return true;
    }
    return false;
  }

  onSuccess(trial: boolean): void {
    if (trial && this.trialsInFlight > 0) this.trialsInFlight--;
    this.consecutiveFailures = 0;
    if (this.state === "half-open" && trial) {
      this.trialSuccesses++;
      if (this.trialSuccesses >= this.settings.halfOpenMaxRequests) this.transition("closed");
    }
  }

  onFailure(trial: boolean, now: number): void {
    if (trial && this.trialsInFlight > 0) this.trialsInFlight--;
    if (!this.settings.enabled) return;
    if (this.state === "half-open") {
      this.open(now);
      return;
    }
    if (this.state === "closed" && ++this.consecutiveFailures >= this.settings.openAfterConsecutiveFailures) this.open(now);
  }

  /** A request that ended without a verdict (client gone): release its trial slot. */
  onAbort(trial: boolean): void {
    if (trial && this.trialsInFlight > 0) this.trialsInFlight--;
  }

  private open(now: number): void {
    this.openedAt = now;
    this.consecutiveFailures = 0;
    this.trialsInFlight = 0;
    this.trialSuccesses = 0;
    this.transition("open");
  }

  private transition(to: BreakerState): void {
    const from = this.state;
    if (from === to) return;
    this.state = to;
    this.onChange?.(this.origin, from, to);
  }
}
