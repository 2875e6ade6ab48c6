import { describe, expect, it } from "vitest";
import { ApiError } from "../api/client";
import {
  emailDomain,
  nextLoginStep,
  normalizeCode,
  recoveryCodesFile,
  ssoCodeFromHash,
  ssoRetryCode,
} from "./login";

describe("the login's next step", () => {
  it("asks for a code when the account has MFA", () => {
    const error = new ApiError(401, "mfa_required", "send totp", [{ field: "totp" }]);
    expect(nextLoginStep(error)).toEqual({ kind: "code" });
  });
  it("walks through enrolment with the token a login gave", () => {
    const error = new ApiError(403, "mfa_enrolment_required", "enrol", { enrolment_token: "ken_abc", expires_in: 600 });
    expect(nextLoginStep(error)).toEqual({ kind: "enrol", token: "ken_abc", expiresIn: 600 });
  });
  it("shows every other refusal as an error", () => {
    expect(nextLoginStep(new ApiError(401, "unauthenticated", "wrong email or password"))).toBeNull();
    expect(nextLoginStep(new ApiError(401, "mfa_invalid", "wrong code"))).toBeNull();
    expect(nextLoginStep(new ApiError(403, "forbidden", "SSO required"))).toBeNull();
    // A malformed enrolment answer is not followed with some other credential.
    expect(nextLoginStep(new ApiError(403, "mfa_enrolment_required", "enrol", { enrolment_token: "ks_x" }))).toBeNull();
    expect(nextLoginStep(new Error("network"))).toBeNull();
  });
});

describe("codes and addresses", () => {
  it("normalises typed codes", () => {
    expect(normalizeCode(" 123 456 ")).toBe("123456");
    expect(normalizeCode("ABCDE-FGHJK")).toBe("abcde-fghjk");
  });
  it("reads the SSO code from the landing fragment only", () => {
    expect(ssoCodeFromHash("#/sso?code=abc%2Fdef")).toBe("abc/def");
    expect(ssoCodeFromHash("#/sso")).toBeNull();
    expect(ssoCodeFromHash("#/other?code=x")).toBeNull();
    expect(ssoCodeFromHash("")).toBeNull();
  });
  it("routes on a complete email domain", () => {
    expect(emailDomain("Alice@Corp.Example.com ")).toBe("corp.example.com");
    expect(emailDomain("alice@corp")).toBeNull();
    expect(emailDomain("alice@")).toBeNull();
    expect(emailDomain("alice")).toBeNull();
  });
  it("writes the recovery codes file with every code", () => {
    const text = recoveryCodesFile(["aaaaa-bbbbb", "ccccc-ddddd"], "a@example.com", new Date("2026-01-02T03:04:05Z"));
    expect(text).toContain("a@example.com");
    expect(text).toContain("2026-01-02T03:04:05.000Z");
    expect(text.split("\n")).toEqual(expect.arrayContaining(["aaaaa-bbbbb", "ccccc-ddddd"]));
  });
});

describe("an SSO exchange that asks for the second factor", () => {
  it("hands back the fresh code to retry with", () => {
    const asked = new ApiError(401, "mfa_required", "send totp", [{ field: "totp", retry_code: "r-1" }]);
    expect(ssoRetryCode(asked)).toBe("r-1");
    const wrong = new ApiError(401, "mfa_invalid", "wrong code", [{ field: "totp", retry_code: "r-2" }]);
    expect(ssoRetryCode(wrong)).toBe("r-2");
  });

  it("is null for other failures", () => {
    expect(ssoRetryCode(new ApiError(401, "unauthenticated", "code used"))).toBeNull();
    expect(ssoRetryCode(new ApiError(401, "mfa_required", "no retry", []))).toBeNull();
    expect(ssoRetryCode(new Error("network"))).toBeNull();
  });
});
