import { describe, expect, it } from "vitest";
import type { SsoProvider } from "../api/types";
import { createBody, emptyForm, errorUnder, formOf, mappingBody, mappingFieldError, parseDomains, updateBody } from "./sso";

const provider: SsoProvider = {
  id: "p1",
  type: "oidc",
  name: "Okta",
  preset: "okta",
  enabled: true,
  email_domains: ["acme.com", "acme.io"],
  issuer: "https://acme.okta.com",
  discovery_url: null,
  client_id: "kaizen",
  has_client_secret: true,
  saml_idp_entity_id: null,
  saml_idp_sso_url: null,
  groups_claim: "groups",
  group_mapping: [{ group: "sec", role: "security_admin", teams: ["secops", "audit"] }, { group: "eng", role: null, teams: [] }],
  default_role: null,
  login_url: "http://cp/api/v1/auth/oidc/p1/login",
  redirect_uri: "http://cp/api/v1/auth/oidc/p1/callback",
  sp_entity_id: null,
  sp_acs_url: null,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
};

describe("SSO provider form", () => {
  it("parses email domains loosely", () => {
    expect(parseDomains(" Acme.com, @acme.io;\nacme.com  b.org ")).toEqual(["acme.com", "acme.io", "b.org"]);
    expect(parseDomains("")).toEqual([]);
  });

  it("drops blank mapping rows and splits teams", () => {
    expect(
      mappingBody([
        { group: " sec ", role: "admin", teams: "a, b ,," },
        { group: "", role: "", teams: " " },
        { group: "eng", role: "", teams: "" },
      ]),
    ).toEqual([
      { group: "sec", role: "admin", teams: ["a", "b"] },
      { group: "eng", role: null, teams: [] },
    ]);
  });

  it("round-trips a provider through the form without resending its secret", () => {
    const form = formOf(provider);
    expect(form.mapping).toEqual([
      { group: "sec", role: "security_admin", teams: "secops, audit" },
      { group: "eng", role: "", teams: "" },
    ]);
    const body = updateBody(form);
    expect(body).not.toHaveProperty("client_secret");
    expect(body).not.toHaveProperty("default_role");
    expect(body.email_domains).toEqual(["acme.com", "acme.io"]);
    expect(body.group_mapping).toEqual(provider.group_mapping);
    expect(updateBody({ ...form, clientSecret: "s3cret" })).toMatchObject({ client_secret: "s3cret" });
  });

  it("sends OIDC fields for OIDC and the metadata for SAML", () => {
    const oidc = createBody({ ...emptyForm("oidc"), name: "G", preset: "google", clientId: "id", clientSecret: "x" });
    expect(oidc).toMatchObject({ type: "oidc", preset: "google", client_id: "id", client_secret: "x" });
    expect(oidc).not.toHaveProperty("default_role");
    const saml = createBody({ ...emptyForm("saml"), name: "S", clientId: "ignored", samlMetadata: "<EntityDescriptor/>" });
    expect(saml).toMatchObject({ type: "saml", preset: "generic", saml_idp_metadata: "<EntityDescriptor/>" });
    expect(saml).not.toHaveProperty("client_id");
  });

  it("puts the API's field errors on their rows and fields", () => {
    const fields = { "group_mapping.1.role": "bad role", "email_domains.0": "not a domain" };
    expect(mappingFieldError(fields, 1, "role")).toBe("bad role");
    expect(mappingFieldError(fields, 0, "role")).toBeUndefined();
    expect(errorUnder(fields, "email_domains")).toBe("email_domains.0: not a domain");
    expect(errorUnder({ name: "required" }, "name")).toBe("required");
  });
});
