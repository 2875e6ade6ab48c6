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

  it("builds an object store's body: its own fields, the key write-only", () => {
    const s3 = { ...EMPTY_FORM, name: "files", type: "s3", accessKeyId: "AKIA1", password: "sk", buckets: "docs, inbox" };
    expect(createBody(s3)).toEqual({
      name: "files",
      type: "s3",
      password: "sk",
      settings: { access_key_id: "AKIA1", region: "us-east-1", buckets: ["docs", "inbox"], read_only: true,
        max_bytes: 1000000, max_objects: 1000 },
    });
    expect(createBody({ ...s3, endpointUrl: "http://minio:9000" }).settings).toMatchObject({ endpoint_url: "http://minio:9000" });
    const azure = { ...EMPTY_FORM, name: "blobs", type: "azure_blob", accountName: "acct", password: "" };
    expect(createBody(azure)).toEqual({
      name: "blobs",
      type: "azure_blob",
      settings: { account_name: "acct", buckets: [], read_only: true, max_bytes: 1000000, max_objects: 1000 },
    });
    expect(formProblems(s3)).toEqual({});
    expect(Object.keys(formProblems({ ...s3, accessKeyId: "", buckets: "Bad_Bucket", endpointUrl: "ftp://x" }))).toEqual([
      "settings.access_key_id",
      "settings.endpoint_url",
      "settings.buckets",
    ]);
    expect(Object.keys(formProblems({ ...azure, accountName: "A" }))).toEqual(["settings.account_name"]);
  });

  it("says what a failed object-store test means", () => {
    expect(describeTest({ ok: false, code: "no_bucket", message: "bucket 'x' does not exist" }, "s3")).toBe(
      "A bucket (container) named in the settings does not exist. bucket 'x' does not exist",
    );
    expect(describeTest({ ok: false, code: "auth_failed", message: "m" }, "azure_blob")).toMatch(/^The store refused the key/);
  });

  it("shows the target and filters decisions by the connector", () => {
    expect(target({ endpoint_url: "http://127.0.0.1:9000", buckets: ["docs"] }, "s3")).toBe("http://127.0.0.1:9000 [docs]");
    expect(target({ region: "eu-west-1", buckets: [] }, "s3")).toBe("AWS eu-west-1");
    expect(target({ account_name: "acct", buckets: [] }, "azure_blob")).toBe("acct.blob.core.windows.net");
    expect(target({ host: "h", port: 5432, database: "d" })).toBe("h:5432/d");
    expect(decisionsPath("warehouse", 5)).toBe("/api/v1/decisions?resource=connector%3Awarehouse&limit=5");
  });
});
