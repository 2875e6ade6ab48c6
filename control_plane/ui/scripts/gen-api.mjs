// Regenerates src/api/schema.d.ts from the control plane's OpenAPI document.
// Source: $KAIZEN_OPENAPI_URL (a running control plane's /openapi.json) when set,
// otherwise the schema of the app built in-process by the repository's Python venv.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "../../..");
const out = resolve(import.meta.dirname, "../src/api/schema.d.ts");
let source = process.env.KAIZEN_OPENAPI_URL;
let scratch;
if (!source) {
  const python = process.env.PYTHON ?? join(root, ".venv/bin/python");
  const schema = execFileSync(
    python,
    ["-c", "import json; from control_plane.app import create_app; print(json.dumps(create_app().openapi()))"],
    { cwd: root, encoding: "utf8", env: { ...process.env, KAIZEN_HOME: process.env.KAIZEN_HOME ?? tmpdir() } },
  );
  scratch = mkdtempSync(join(tmpdir(), "kaizen-openapi-"));
  source = join(scratch, "openapi.json");
  writeFileSync(source, schema);
}
try {
  execFileSync(resolve(import.meta.dirname, "../node_modules/.bin/openapi-typescript"), [source, "-o", out], {
    stdio: "inherit",
  });
} finally {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}
