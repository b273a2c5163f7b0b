// Golden config tests: test/config/cases/<name>/input.yaml with either
//   expected.json  the check output (route table, precedence order) and the validated config
//                  with every default applied, or
//   errors.txt     every error, one per line, exactly as `hecate check` prints them on stderr.
//
// Each case is loaded and compiled as `hecate check -config=test/config/cases/<name>/input.yaml`
// does when run from the repository root (relative paths in a case, e.g. certificate files
// and ../shared/testdata, are relative to the root). Messages that show an absolute path (a
// geo database that cannot be opened) have the repository's path written as <repo>, its
// parent as <repo>/.. (where ../shared/testdata lives).
//
// Regenerate after a deliberate change, then review the diff before committing:
//   UPDATE_GOLDEN=1 bun test test/config/golden.test.ts
import { test, expect } from "bun:test";
import { readdirSync, existsSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { join, relative, dirname } from "node:path";
import { loadConfigFile, formatError, type ConfigError } from "../../src/config/load.ts";
import { compileConfig } from "../../src/config/compile.ts";
import { routeTable } from "../../src/config/route-table.ts";
import { UpstreamRegistry } from "../../src/upstream/registry.ts";
import "../../src/register.ts"; // the optional modules register their stage factories, as in the binary

const root = join(import.meta.dir, "..", "..");
const casesDir = join(import.meta.dir, "cases");
const update = process.env.UPDATE_GOLDEN === "1";
const cases = readdirSync(casesDir, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

type Outcome = { kind: "ok"; json: string } | { kind: "errors"; text: string };

async function run(file: string): Promise<Outcome> {
  const errorsOf = (errors: ConfigError[]): Outcome => ({ kind: "errors", text: errors.map(formatError).join("\n").replaceAll(root, "<repo>").replaceAll(dirname(root) + "/", "<repo>/../") + "\n" });
  const loaded = await loadConfigFile(file);
  if (!loaded.ok) return errorsOf(loaded.errors);
  const res = await compileConfig(loaded.config, new UpstreamRegistry(), { disposers: [] });
  if (!res.ok) return errorsOf(res.errors);
  try {
    const check = routeTable(res.compiled).trimEnd().split("\n");
    return { kind: "ok", json: JSON.stringify({ check, config: loaded.config }, null, 2) + "\n" };
  } finally {
    res.compiled.dispose();
  }
}

test("there are enough golden cases", () => {
  expect(cases.length).toBeGreaterThanOrEqual(24);
});

for (const name of cases) {
  test(name, async () => {
    const dir = join(casesDir, name);
    const expectedJson = join(dir, "expected.json");
    const errorsTxt = join(dir, "errors.txt");
    const cwd = process.cwd();
    process.chdir(root);
    let out: Outcome;
    try {
      out = await run(relative(root, join(dir, "input.yaml")));
    } finally {
      process.chdir(cwd);
    }

    if (update) {
      const [write, remove] = out.kind === "ok" ? [expectedJson, errorsTxt] : [errorsTxt, expectedJson];
      writeFileSync(write, out.kind === "ok" ? out.json : out.text);
      rmSync(remove, { force: true });
      return;
    }
    const hasJson = existsSync(expectedJson);
    const hasErrors = existsSync(errorsTxt);
    expect(hasJson !== hasErrors, `${name}: needs exactly one of expected.json and errors.txt`).toBe(true);
    if (hasJson) {
      expect(out.kind === "errors" ? out.text : "(valid)", `${name}: expected a valid config`).toBe("(valid)");
      expect(out.kind === "ok" ? out.json : "").toBe(readFileSync(expectedJson, "utf8"));
    } else {
      expect(out.kind === "ok" ? out.json : out.text).toBe(readFileSync(errorsTxt, "utf8"));
    }
  });
}
