// The login's steps: password, then a second factor when the account has one, or TOTP
// enrolment when the organisation requires MFA for the role and the account has none.
import { ApiError } from "../api/client";

export type LoginStep =
  | { kind: "password" }
  | { kind: "code" }
  | { kind: "enrol"; token: string; expiresIn: number | null };

/** What a refused login asks of the user next, or null when it is an error to show. */
export function nextLoginStep(error: unknown): LoginStep | null {
  if (!(error instanceof ApiError)) return null;
  if (error.status === 401 && error.code === "mfa_required") return { kind: "code" };
  if (error.status === 403 && error.code === "mfa_enrolment_required") {
    const details = error.details as { enrolment_token?: unknown; expires_in?: unknown } | undefined;
    const token = details && typeof details === "object" ? details.enrolment_token : undefined;
    if (typeof token !== "string" || !token.startsWith("ken_")) return null;
    const expiresIn = typeof details?.expires_in === "number" ? details.expires_in : null;
    return { kind: "enrol", token, expiresIn };
  }
  return null;
}

/** A TOTP code as typed (spaces are common: "123 456"); recovery codes keep their dash. */
export function normalizeCode(text: string): string {
  const trimmed = text.trim();
  const digits = trimmed.replace(/\s+/g, "");
  return /^\d{6}$/.test(digits) ? digits : trimmed.toLowerCase();
}

/** The single-use code of a finished SSO login, from the `/#/sso?code=…` it lands on. */
export function ssoCodeFromHash(hash: string): string | null {
  const match = /^#\/sso(?:\?(.*))?$/.exec(hash);
  if (!match) return null;
  const code = new URLSearchParams(match[1] ?? "").get("code");
  return code ? code : null;
}

/** The domain SSO discovery routes on, once the email looks complete. */
export function emailDomain(email: string): string | null {
  const match = /^[^\s@]+@([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,63})$/i.exec(email.trim());
  return match ? match[1].toLowerCase() : null;
}

/** The recovery codes as a text file to keep. */
export function recoveryCodesFile(codes: readonly string[], account: string, issued: Date): string {
  return [
    `Kaizen Studio recovery codes for ${account}`,
    `Issued ${issued.toISOString()}. Each code works once, in place of an authenticator code.`,
    "",
    ...codes,
    "",
  ].join("\n");
}

/** The fresh single-use code a 401 asking for the second factor carries, if it is one. */
export function ssoRetryCode(error: unknown): string | null {
  if (!(error instanceof ApiError) || !["mfa_required", "mfa_invalid"].includes(error.code)) {
    return null;
  }
  const first = Array.isArray(error.details) ? (error.details[0] as { retry_code?: unknown }) : null;
  return typeof first?.retry_code === "string" ? first.retry_code : null;
}
