// Circuit breaker per upstream origin (SPEC §3.5), shared by every route that uses the origin.
//
// Failure = transport error, per-try timeout, or 502/503/504 from the upstream. Closed → open
// after `openAfterConsecutiveFailures` consecutive failures; open for `cooldownSec` (the
// balancers skip it); then half-open: at most `halfOpenMaxRequests` trial requests in flight;
// that many trial successes close it, any trial failure re-opens it.
//
// Only trial requests decide a half-open breaker: the verdict of a request sent while the
// breaker was still closed (and that ends after it opened) does not re-open or close it.
// Every transition is logged here ("breaker opened" / "breaker half-open" / "breaker closed");
// `onChange` is for the other observers (metrics).
import { log } from "../observability/log.ts";

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
  /**
   * Number of the current half-open period. A trial is tagged with it when sent, so that a
   * trial of an earlier period (the breaker re-opened meanwhile) cannot decide this one.
   */
  private period = 0;
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
      this.period++;
      this.trialsInFlight = 0;
      this.trialSuccesses = 0;
      this.transition("half-open");
    }
    return this.trialsInFlight < this.settings.halfOpenMaxRequests;
  }

  /**
   * Called when a request is actually sent. Returns its trial tag: the half-open period it is
   * a trial of, or 0 when it is not a trial. Pass it back to onSuccess/onFailure/onAbort.
   */
  onSend(): number {
    if (this.state === "half-open" && this.settings.enabled) {
      this.trialsInFlight++;
      return this.period;
    }
    return 0;
  }

  /** Does `trial` belong to the half-open period in progress? Releases its slot if so. */
  private settle(trial: number): boolean {
    if (trial === 0 || trial !== this.period || this.state !== "half-open") return false;
    if (this.trialsInFlight > 0) this.trialsInFlight--;
    return true;
  }

  onSuccess(trial: number): void {
    const current = this.settle(trial);
    this.consecutiveFailures = 0;
    if (current && ++this.trialSuccesses >= this.settings.halfOpenMaxRequests) this.transition("closed");
  }

  onFailure(trial: number, now: number): void {
    const current = this.settle(trial);
    if (!this.settings.enabled) return;
    if (this.state === "half-open") {
      if (current) this.open(now);
      return;
    }
    if (this.state === "closed" && ++this.consecutiveFailures >= this.settings.openAfterConsecutiveFailures) this.open(now);
  }

  /** A request that ended without a verdict (client gone): release its trial slot. */
  onAbort(trial: number): void {
    this.settle(trial);
  }

  /** For the admin API and metrics: the state as of `now` (an expired cooldown reads half-open). */
  stateAt(now: number): BreakerState {
    if (this.state === "open" && this.settings.enabled && now - this.openedAt >= this.settings.cooldownMs) return "half-open";
    return this.state;
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
    if (to === "open") log("warn", "breaker opened", { upstream: this.origin, from, cooldownSec: this.settings.cooldownMs / 1000 });
    else log("info", to === "closed" ? "breaker closed" : "breaker half-open", { upstream: this.origin, from });
    this.onChange?.(this.origin, from, to);
  }
}
