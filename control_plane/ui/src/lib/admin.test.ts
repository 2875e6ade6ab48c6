import { describe, expect, it } from "vitest";
import type { SessionInfo } from "../api/types";
import { providerNameProblem, providerOf } from "./secrets";
import { describeDevice, orderSessions } from "./sessions";
import { deliveryOutcome, toggle } from "./webhooks";

describe("webhooks", () => {
  it("toggles events without duplicates", () => {
    expect(toggle(["a"], "b", true)).toEqual(["a", "b"]);
    expect(toggle(["a", "b"], "a", true)).toEqual(["b", "a"]);
    expect(toggle(["a", "b"], "a", false)).toEqual(["b"]);
  });
  it("says what happened to a delivery", () => {
    expect(deliveryOutcome({ status: "delivered", attempts: 1, last_status_code: 204 })).toBe("delivered (HTTP 204)");
    expect(deliveryOutcome({ status: "failed", attempts: 5, last_status_code: 500, last_error: "server error" })).toBe(
      "failed after 5 attempts (HTTP 500): server error",
    );
    expect(deliveryOutcome({ status: "pending", attempts: 0 })).toBe("pending");
    expect(deliveryOutcome({ status: "pending", attempts: 1, last_error: "timeout" })).toBe("retrying, 1 attempt so far: timeout");
  });
});

describe("provider keys", () => {
  it("recognises provider keys among the store's names", () => {
    expect(providerOf("providers/openai/api_key")).toBe("openai");
    expect(providerOf("webhooks/123/secret")).toBeNull();
  });
  it("checks provider names as the API does", () => {
    expect(providerNameProblem("")).toBe("required");
    expect(providerNameProblem("open-ai.v2")).toBeNull();
    expect(providerNameProblem("a/b")).not.toBeNull();
    expect(providerNameProblem("-x")).not.toBeNull();
  });
});

describe("sessions", () => {
  it("names devices", () => {
    expect(describeDevice("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/130.0 Safari/537.36")).toBe("Chrome on Linux");
    expect(describeDevice("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15")).toBe("Safari on macOS");
    expect(describeDevice("python-httpx/0.28.1")).toBe("a Python client");
    expect(describeDevice(null)).toBe("Unknown device");
  });
  it("lists this session first, then the most recently active", () => {
    const s = (id: string, current: boolean, seen: string): SessionInfo => ({
      id, kind: "token", created_at: "2026-01-01T00:00:00Z", last_seen_at: seen, user_agent: null, source_ip: null, current,
    });
    const ordered = orderSessions([s("old", false, "2026-01-01T01:00:00Z"), s("me", true, "2026-01-01T00:30:00Z"), s("new", false, "2026-01-01T02:00:00Z")]);
    expect(ordered.map((x) => x.id)).toEqual(["me", "new", "old"]);
  });
});
