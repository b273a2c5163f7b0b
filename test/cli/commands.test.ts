// The compiled binary's commands that exit by themselves: --version, --help, check, bad flags.
import { test, expect, beforeAll } from "bun:test";
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { ensureBinary, runHecate } from "./binary.ts";

beforeAll(() => ensureBinary(), 60_000);

const goodCase = "test/config/cases/route-precedence";
const badCase = "test/config/cases/several-errors";
const expectedTable = (JSON.parse(readFileSync(join(import.meta.dir, "..", "..", goodCase, "expected.json"), "utf8")).check as string[]).join("\n") + "\n";

test("--version prints the version and exits 0", async () => {
  for (const flag of ["--version", "-version", "-v"]) {
    const r = await runHecate([flag]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`hecate ${pkg.version} (bun ${Bun.version})\n`);
    expect(r.stderr).toBe("");
  }
});

test("--help prints usage with every config flag form and exits 0", async () => {
  for (const flag of ["--help", "-help", "-h"]) {
    const r = await runHecate([flag]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage:");
    for (const form of ["-config=FILE", "--config FILE", "-c FILE", "check"]) expect(r.stdout).toContain(form);
    expect(r.stderr).toBe("");
  }
});

test("check on a valid file prints the route table in precedence order, exit 0", async () => {
  const file = `${goodCase}/input.yaml`;
  for (const args of [
    ["check", `-config=${file}`],
    ["check", "-config", file],
    ["check", `--config=${file}`],
    ["check", "--config", file],
    ["check", "-c", file],
    [`-config=${file}`, "check"],
  ]) {
    const r = await runHecate(args);
    expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: "" });
    expect(r.stdout).toBe(expectedTable);
  }
  // the order itself: exact hosts (longest prefix first), wildcards (longest suffix first), any host
  const r = await runHecate(["check", `-config=${file}`]);
  const names = r.stdout.split("\n").slice(1, 8).map((l) => l.split(/\s+/)[1]);
  expect(names).toEqual(["exact-deep", "exact-api", "exact-root", "wild-long", "wild-short", "any-api", "catch-all"]);
});

test("check on an invalid file prints every error on stderr as <key path>: <message>, exit 1", async () => {
  const r = await runHecate(["check", `-config=${badCase}/input.yaml`]);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe("");
  expect(r.stderr).toBe(readFileSync(join(import.meta.dir, "..", "..", badCase, "errors.txt"), "utf8"));
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines.length).toBeGreaterThan(10);
  for (const l of lines) expect(l).toMatch(/^[a-zA-Z][a-zA-Z0-9]*(\.[a-zA-Z][a-zA-Z0-9]*|\[\d+\])*: \S/);
});

test("check on a YAML syntax error prints <file>:<line>:<col>: <message>, exit 1", async () => {
  const file = "test/config/cases/yaml-syntax/input.yaml";
  const r = await runHecate(["check", "-c", file]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`^${file.replaceAll(".", "\\.")}:5:\\d+: .+\\n$`));
});

test("check on a missing file: one line naming the file, exit 1", async () => {
  const r = await runHecate(["check", "-config=no/such/file.yaml"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toBe("no/such/file.yaml: cannot read the config file: no such file\n");
});

test("check without -config uses ./config/example.yaml, and says so when there is none", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hecate-cli-"));
  try {
    let r = await runHecate(["check"], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("-config=FILE");
    Bun.spawnSync(["mkdir", "-p", join(dir, "config")]);
    writeFileSync(join(dir, "config", "example.yaml"), 'proxy:\n  routes:\n    - { name: from-default-file, upstreams: ["http://127.0.0.1:1"] }\n');
    r = await runHecate(["check"], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("from-default-file");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a bad command line exits 2 with a message", async () => {
  let r = await runHecate(["--bogus"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toBe('hecate: unknown argument "--bogus" (see hecate --help)\n');
  r = await runHecate(["-c"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain("-c needs a value");
  r = await runHecate(["check", "check"]);
  expect(r.code).toBe(2);
  r = await runHecate(["serve"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain('"serve"');
});
