import { describe, expect, it } from "vitest";
import { ApiClient, ApiError } from "./client";

function memory() {
  const map = new Map<string, string>();
  return {
    map,
    getItem: (k: string) => map.get(k) ?? null,
    setItem: (k: string, v: string) => void map.set(k, v),
    removeItem: (k: string) => void map.delete(k),
  };
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

const tokens = (n: number) => ({
  access_token: `access-${n}`,
  refresh_token: `refresh-${n}`,
  token_type: "bearer" as const,
  expires_in: 900,
  user_id: "u",
  organization_id: "o",
});

describe("ApiClient", () => {
  it("turns the API's error body into an ApiError with field errors", async () => {
    const client = new ApiClient("", memory(), async () =>
      json(422, {
        error: {
          code: "invalid",
          message: "email: not an email",
          details: [{ field: "email", message: "not an email" }],
        },
      }),
    );
    const error = (await client.post("/api/v1/teams", {}).catch((e: unknown) => e)) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(422);
    expect(error.message).toBe("email: not an email");
    expect(error.fieldErrors).toEqual({ email: "not an email" });
  });

  it("refreshes once on 401 and retries, sharing one refresh between concurrent calls", async () => {
    const storage = memory();
    let refreshes = 0;
    const client = new ApiClient("", storage, async (input, init) => {
      const url = String(input);
      if (url.endsWith("/auth/refresh")) {
        refreshes++;
        expect(JSON.parse(String(init?.body))).toEqual({ refresh_token: "refresh-1" });
        return json(200, tokens(2));
      }
      const auth = new Headers(init?.headers).get("authorization");
      return auth === "Bearer access-2" ? json(200, { ok: true }) : json(401, { error: { code: "unauthenticated", message: "expired" } });
    });
    client.setTokens(tokens(1));
    const results = await Promise.all([client.get("/api/v1/me"), client.get("/api/v1/teams")]);
    expect(results).toEqual([{ ok: true }, { ok: true }]);
    expect(refreshes).toBe(1);
    expect(storage.map.get("kaizen.refresh_token")).toBe("refresh-2");
  });

  it("ends the session when the refresh fails", async () => {
    const storage = memory();
    const client = new ApiClient("", storage, async () => json(401, { error: { code: "unauthenticated", message: "no" } }));
    client.setTokens(tokens(1));
    let ended = false;
    client.onSessionEnded(() => (ended = true));
    await expect(client.get("/api/v1/me")).rejects.toMatchObject({ status: 401 });
    expect(ended).toBe(true);
    expect(client.hasSession).toBe(false);
  });

  it("keeps only the refresh token in storage", async () => {
    const storage = memory();
    const client = new ApiClient("", storage, async () => json(200, tokens(7)));
    await client.login("a@example.com", "pw");
    expect([...storage.map.values()]).toEqual(["refresh-7"]);
  });

  it("downloads a file with the bearer token and its server-given name", async () => {
    const seen: string[] = [];
    const client = new ApiClient("", memory(), async (_url, init) => {
      seen.push(String((init?.headers as Record<string, string>)?.authorization));
      return new Response("a,b\n", { status: 200, headers: { "content-disposition": 'attachment; filename="decisions.csv"' } });
    });
    client.setTokens(tokens(1));
    const { blob, filename } = await client.download("/api/v1/decisions/export?format=csv");
    expect(filename).toBe("decisions.csv");
    expect(await blob.text()).toBe("a,b\n");
    expect(seen).toEqual(["Bearer access-1"]);
  });

  it("turns a refused download into the API's error", async () => {
    const client = new ApiClient("", memory(), async () =>
      json(403, { error: { code: "forbidden", message: "needs decisions:export" } }),
    );
    await expect(client.download("/x")).rejects.toMatchObject({ status: 403, message: "needs decisions:export" });
  });

  it("sends the second factor with the login only when given", async () => {
    const bodies: unknown[] = [];
    const client = new ApiClient("", memory(), async (_url, init) => {
      bodies.push(JSON.parse(String(init?.body)));
      return json(200, tokens(3));
    });
    await client.login("a@example.com", "pw");
    await client.login("a@example.com", "pw", "123456");
    expect(bodies).toEqual([
      { email: "a@example.com", password: "pw" },
      { email: "a@example.com", password: "pw", totp: "123456" },
    ]);
  });

  it("calls with an enrolment token without touching the session", async () => {
    const storage = memory();
    const seen: (string | null)[] = [];
    const client = new ApiClient("", storage, async (_url, init) => {
      seen.push(new Headers(init?.headers).get("authorization"));
      return json(401, { error: { code: "unauthenticated", message: "enrolment token is invalid or expired" } });
    });
    await expect(client.requestWith("ken_1", "POST", "/api/v1/me/mfa/totp", {})).rejects.toMatchObject({
      status: 401,
      message: "enrolment token is invalid or expired",
    });
    expect(seen).toEqual(["Bearer ken_1"]);
    expect(storage.map.size).toBe(0);
  });

  it("trades an SSO code for tokens", async () => {
    const storage = memory();
    const client = new ApiClient("", storage, async (url, init) => {
      expect(String(url)).toBe("/api/v1/auth/sso/exchange");
      expect(JSON.parse(String(init?.body))).toEqual({ code: "c0de" });
      return json(200, tokens(5));
    });
    await client.exchangeSsoCode("c0de");
    expect(storage.map.get("kaizen.refresh_token")).toBe("refresh-5");
  });
});
