import { describe, expect, it } from "vitest";
import { isConsentPath, redirectHost, rememberConsent, scopeText, takeConsent } from "./oauth";

function memory() {
  const items = new Map<string, string>();
  return {
    getItem: (k: string) => items.get(k) ?? null,
    setItem: (k: string, v: string) => void items.set(k, v),
    removeItem: (k: string) => void items.delete(k),
  };
}

describe("consent resume", () => {
  it("keeps only our own consent path, once", () => {
    const storage = memory();
    rememberConsent("/oauth-consent?request=abc_DEF-1", storage);
    expect(takeConsent(storage)).toBe("/oauth-consent?request=abc_DEF-1");
    expect(takeConsent(storage)).toBeNull();
  });
  it("never resumes to another place", () => {
    for (const path of ["https://evil.example/oauth-consent?request=a", "//evil.example", "/policies", "/oauth-consent?request=a&next=//x"]) {
      expect(isConsentPath(path)).toBe(false);
      const storage = memory();
      rememberConsent(path, storage);
      expect(takeConsent(storage)).toBeNull();
    }
  });
});

describe("what the consent page shows", () => {
  it("names scopes in words and unknown ones as unknown", () => {
    expect(scopeText("agents:invoke")).toMatch(/Call agents/);
    expect(scopeText("admin:all")).toBe("Unknown permission admin:all");
  });
  it("shows the redirect's origin", () => {
    expect(redirectHost("http://127.0.0.1:33418/callback?x=1")).toBe("http://127.0.0.1:33418");
    expect(redirectHost("not a url")).toBe("not a url");
  });
});
