#!/usr/bin/env bun
// CLI (SPEC §1): run, check, --version, --help.
import pkg from "../package.json" with { type: "json" };
import { existsSync } from "node:fs";
import { startFromFile, StartError } from "./runtime/start.ts";
import { ListenError } from "./runtime/listeners.ts";
import { loadAndCompile, reload } from "./runtime/reload.ts";
import { UpstreamRegistry } from "./upstream/registry.ts";
import { routeTable } from "./config/route-table.ts";
import { log, flushLogs } from "./observability/log.ts";
import "./register.ts";

const HELP = `hecate ${pkg.version} — an observable L7 HTTP(S) reverse proxy

Usage:
  hecate [-config=FILE]                      run the proxy
  hecate check [-config=FILE] [--diff URL]   validate FILE, print its route table in precedence
                                             order; with --diff, compare it with the running
                                             config at the admin URL (--token TOKEN for auth)
  hecate --version | --help

Options:
  -config=FILE, -config FILE, --config=FILE, --config FILE, -c FILE
                   the YAML config file. Without it, ./config/example.yaml is used when it
                   exists, else the embedded default: plain HTTP on :8080, admin on
                   127.0.0.1:9000, no routes (every request gets 404).

Exit status: 0 after a graceful stop or a valid check; 1 for an invalid config (every error
on stderr as "<key path>: <message>") or a listener that cannot bind; 2 for a bad command line.

Signals: SIGHUP reloads the config file; SIGTERM/SIGINT drain and stop gracefully
(a second signal stops at once).
`;

/** Used when neither -config nor ./config/example.yaml is given (SPEC §1). */
const DEFAULT_CONFIG = "config/example.yaml";

interface Args {
  command: "run" | "check" | "version" | "help";
  config: string | null;
  diff: string | null;
  token: string | null;
}

/** Go-style flags (`-config=FILE`, `-config FILE`) and GNU-style ones (`--config=FILE`, `-c FILE`). */
export function parseArgs(argv: string[]): Args | string {
  const a: Args = { command: "run", config: null, diff: null, token: null };
  let sawCheck = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const name = arg.startsWith("-") && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = arg.startsWith("-") && eq > 0 ? arg.slice(eq + 1) : null;
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === "") throw new Error(`${name} needs a value (${name}=FILE or ${name} FILE)`);
      return v;
    };
    try {
      switch (name) {
        case "check":
          if (sawCheck) return `unexpected argument ${JSON.stringify(arg)} (see hecate --help)`;
          sawCheck = true;
          if (a.command === "run") a.command = "check";
          break;
        case "-config":
        case "--config":
        case "-c":
          a.config = value();
          break;
        case "--diff":
        case "-diff":
          a.diff = value();
          break;
        case "--token":
          a.token = value();
          break;
        case "--version":
        case "-version":
        case "-v":
          if (a.command !== "help") a.command = "version";
          break;
        case "--help":
        case "-help":
        case "-h":
          a.command = "help";
          break;
        default:
          return `unknown argument ${JSON.stringify(arg)} (see hecate --help)`;
      }
    } catch (e) {
      return (e as Error).message;
    }
  }
  return a;
}

function printErrors(errors: { path: string; message: string }[]): void {
  for (const e of errors) process.stderr.write(`${e.path ? `${e.path}: ` : ""}${e.message}\n`);
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (typeof args === "string") {
    process.stderr.write(`hecate: ${args}\n`);
    return 2;
  }
  if (args.command === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.command === "version") {
    process.stdout.write(`hecate ${pkg.version} (bun ${Bun.version})\n`);
    return 0;
  }
  if (args.command === "check") {
    const file = args.config ?? (existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : null);
    if (file === null) {
      process.stderr.write(`hecate check: no config file: pass -config=FILE (./${DEFAULT_CONFIG} does not exist)\n`);
      return 2;
    }
    const res = await loadAndCompile(file, new UpstreamRegistry());
    if (!res.ok) {
      printErrors(res.errors);
      return 1;
    }
    process.stdout.write(routeTable(res.compiled));
    res.compiled.dispose();
    if (args.diff) {
      const { printDiff } = await import("./admin/diff.ts");
      return printDiff(res.compiled, args.diff, args.token);
    }
    return 0;
  }

  const path = args.config ?? (existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : null);
  let hecate;
  try {
    hecate = await startFromFile(path);
  } catch (e) {
    flushLogs();
    if (e instanceof StartError) {
      printErrors(e.errors);
      return 1;
    }
    if (e instanceof ListenError) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    // Anything else that stops the start (a certificate that cannot be read, a service that
    // fails): one line, exit 1, no stack trace for the operator to dig through.
    process.stderr.write(`hecate: cannot start: ${(e as Error)?.message ?? String(e)}\n`);
    return 1;
  }
  if (path === null)
    log("warn", "no config file: running on the embedded default config (plain HTTP on :8080, admin on 127.0.0.1:9000, no routes); start hecate with -config=FILE", {
      embeddedDefault: true,
    });
  else log("info", "config loaded", { file: path, generation: hecate.rt.gen.id });

  // A bug in one request's asynchronous path must not take the other requests down with it.
  process.on("uncaughtException", (e) => log("error", "uncaught exception", { error: String(e), stack: (e as Error)?.stack }));
  process.on("unhandledRejection", (e) => log("error", "unhandled rejection", { error: String(e), stack: (e as Error)?.stack }));
  process.on("SIGHUP", () => {
    reload(hecate.rt, "SIGHUP").catch((e: Error) => log("error", "reload failed", { reason: "SIGHUP", error: e.message }));
  });
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) {
      // A second signal: the operator does not want to wait for in-flight requests.
      log("warn", "second signal during shutdown: exiting now", { signal: sig });
      flushLogs();
      process.exit(1);
    }
    stopping = true;
    hecate.shutdown(sig).then(
      () => {
        // Exit as soon as the event loop is empty (stdout fully written); force it shortly
        // after if something (an idle upstream socket, an exporter) still holds the loop.
        process.exitCode = 0;
        setTimeout(() => process.exit(0), 500).unref();
      },
      (e: Error) => {
        log("error", "shutdown failed", { error: e.message });
        flushLogs();
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  return -1; // keep running
}

const code = await main();
if (code >= 0) {
  flushLogs();
  process.exit(code);
}
