import { describe, expect, it } from "vitest";
import { EMPTY_FORM, createBody, decisionsPath, describeTest, formProblems, target } from "./connectors";

const FORM = { ...EMPTY_FORM, name: "warehouse", host: "db.example.com", database: "shop", username: "reader", password: "pw" };

describe("connectors", () => {
  it("builds the create body, leaving the default port to the API", () => {
    expect(createBody(FORM)).toEqual({
      name: "warehouse",
      type: "postgresql",
      password: "pw",
      settings: { host: "db.example.com", database: "shop", username: "reader", tls: "verify-full", read_only: true, max_rows: 1000 },
    });
    expect(createBody({ ...FORM, port: "6543", password: "" }).settings).toMatchObject({ port: 6543 });
    expect(createBody({ ...FORM, password: "" })).not.toHaveProperty("password");
  });

  it("names the fields the API would refuse", () => {
    expect(formProblems(FORM)).toEqual({});
    expect(Object.keys(formProblems({ ...FORM, name: "Bad Name", database: "x; drop", port: "http" }))).toEqual([
      "name",
      "settings.port",
      "settings.database",
    ]);
  });

  it("says what a failed test means", () => {
    expect(describeTest({ ok: true, message: "", server_version: "PostgreSQL 15" })).toBe(
      "Connected and authenticated — PostgreSQL 15.",
    );
    expect(describeTest({ ok: false, code: "auth_failed", message: "user 'x' refused" })).toMatch(
      /^The database refused the user or password\. user 'x' refused$/,
    );
    expect(describeTest({ ok: false, code: "something_new", message: "m" })).toBe("The connection failed. m");
  });

  it("shows the target and filters decisions by the connector", () => {
    expect(target({ host: "h", port: 5432, database: "d" })).toBe("h:5432/d");
    expect(decisionsPath("warehouse", 5)).toBe("/api/v1/decisions?resource=connector%3Awarehouse&limit=5");
  });
});
