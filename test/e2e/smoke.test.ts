import { test, expect, afterAll } from "bun:test";
import { startHecate, startUpstream, oneRoute } from "../helpers/hecate.ts";

const up = startUpstream();
const h = await startHecate(oneRoute([up.url + "/base"], { pathPrefix: "/api", stripPrefix: true }));
afterAll(async () => {
  await h.shutdown();
  up.stop();
});

test("forwards with strip and base path", async () => {
  const r = await fetch(`${h.url}/api/x?y=1`);
  expect(r.status).toBe(200);
  const j = (await r.json()) as any;
  expect(j.path).toBe("/base/x?y=1");
  expect(r.headers.get("via")).toBe("1.1 hecate");
});

test("no route → 404", async () => {
  const r = await fetch(`${h.url}/nope`);
  expect(r.status).toBe(404);
  expect(await r.text()).toBe("no route\n");
  expect(r.headers.get("x-request-id")).toBeTruthy();
});
