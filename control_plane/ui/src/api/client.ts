// The one way the UI talks to the control plane.
//
// Tokens: the access token lives only in memory; the refresh token is kept in
// sessionStorage so a reload of the tab keeps the session (it dies with the tab).
// Refresh tokens are single-use, so concurrent refreshes share one request.
import type { TokenResponse } from "./types";

const REFRESH_KEY = "kaizen.refresh_token";

export interface ErrorDetail {
  field?: string | null;
  message: string;
  [key: string]: unknown;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = undefined,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** Field errors of a 422 as `{field: message}` (first message per field). */
  get fieldErrors(): Record<string, string> {
    return fieldErrors(this.details);
  }
}

export function fieldErrors(details: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(details)) return out;
  for (const detail of details) {
    if (detail && typeof detail === "object" && typeof detail.message === "string") {
      const field = typeof detail.field === "string" ? detail.field : "";
      if (field && !(field in out)) out[field] = detail.message;
    }
  }
  return out;
}

export async function errorFromResponse(response: Response): Promise<ApiError> {
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  const error = (body as { error?: { code?: string; message?: string; details?: unknown } })?.error;
  if (error && typeof error.message === "string") {
    return new ApiError(response.status, error.code ?? "error", error.message, error.details);
  }
  return new ApiError(response.status, "error", `${response.status} ${response.statusText || "request failed"}`);
}

type Listener = () => void;

function tabStorage(): Pick<Storage, "getItem" | "setItem" | "removeItem"> {
  if (typeof sessionStorage !== "undefined") return sessionStorage;
  const memory = new Map<string, string>();
  return {
    getItem: (key) => memory.get(key) ?? null,
    setItem: (key, value) => void memory.set(key, value),
    removeItem: (key) => void memory.delete(key),
  };
}

export class ApiClient {
  private access: string | null = null;
  private refreshing: Promise<boolean> | null = null;
  private sessionEnded = new Set<Listener>();

  constructor(
    private readonly base = "",
    private readonly storage: Pick<Storage, "getItem" | "setItem" | "removeItem"> = tabStorage(),
    private readonly fetcher: typeof fetch = (...args) => fetch(...args),
  ) {}

  get hasSession(): boolean {
    return this.access !== null || this.storage.getItem(REFRESH_KEY) !== null;
  }

  onSessionEnded(listener: Listener): () => void {
    this.sessionEnded.add(listener);
    return () => this.sessionEnded.delete(listener);
  }

  setTokens(tokens: TokenResponse): void {
    this.access = tokens.access_token;
    this.storage.setItem(REFRESH_KEY, tokens.refresh_token);
  }

  clearTokens(): void {
    this.access = null;
    this.storage.removeItem(REFRESH_KEY);
  }

  /** Trades the stored refresh token for new tokens; false when there is no session. */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    const refreshToken = this.storage.getItem(REFRESH_KEY);
    if (!refreshToken) return false;
    const response = await this.fetcher(`${this.base}/api/v1/auth/refresh`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
    });
    if (!response.ok) {
      this.clearTokens();
      return false;
    }
    this.setTokens((await response.json()) as TokenResponse);
    return true;
  }

  async request<T>(method: string, path: string, body?: unknown, retry = true): Promise<T> {
    if (this.access === null && retry && this.storage.getItem(REFRESH_KEY)) await this.refresh();
    return this.send<T>(method, path, body, this.access, retry);
  }

  /** A call carrying another credential than the session's: an MFA enrolment token (`ken_…`). */
  requestWith<T>(token: string, method: string, path: string, body?: unknown): Promise<T> {
    return this.send<T>(method, path, body, token, false);
  }

  private async send<T>(method: string, path: string, body: unknown, token: string | null, retry: boolean): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await this.fetcher(`${this.base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && retry && !path.startsWith("/api/v1/auth/")) {
      if (await this.refresh()) return this.request<T>(method, path, body, false);
      this.endSession();
    }
    if (!response.ok) throw await errorFromResponse(response);
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  private endSession(): void {
    this.clearTokens();
    for (const listener of this.sessionEnded) listener();
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }
  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>("POST", path, body);
  }
  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PATCH", path, body);
  }
  put<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PUT", path, body);
  }
  delete<T = void>(path: string, body?: unknown): Promise<T> {
    return this.request<T>("DELETE", path, body);
  }

  /** GETs a file with the session's credentials (a plain link would carry none). */
  async download(path: string, retry = true): Promise<{ blob: Blob; filename: string | null }> {
    if (this.access === null && retry && this.storage.getItem(REFRESH_KEY)) await this.refresh();
    const headers: Record<string, string> = {};
    if (this.access) headers.authorization = `Bearer ${this.access}`;
    const response = await this.fetcher(`${this.base}${path}`, { headers });
    if (response.status === 401 && retry && (await this.refresh())) return this.download(path, false);
    if (!response.ok) throw await errorFromResponse(response);
    const disposition = response.headers.get("content-disposition") ?? "";
    const filename = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? null;
    return { blob: await response.blob(), filename };
  }

  /** Password login; `totp` is a code from the authenticator or a recovery code. */
  async login(email: string, password: string, totp?: string): Promise<void> {
    const body = totp ? { email, password, totp } : { email, password };
    this.setTokens(await this.request<TokenResponse>("POST", "/api/v1/auth/login", body, false));
  }

  /** Trades the single-use code of a finished SSO login for tokens; `totp` when MFA applies
   * (a 401 `mfa_required`/`mfa_invalid` carries a fresh `retry_code` in its details). */
  async exchangeSsoCode(code: string, totp?: string): Promise<void> {
    const body = totp ? { code, totp } : { code };
    this.setTokens(await this.request<TokenResponse>("POST", "/api/v1/auth/sso/exchange", body, false));
  }

  async signup(email: string, password: string, organization: string): Promise<void> {
    this.setTokens(
      await this.request<TokenResponse>("POST", "/api/v1/auth/signup", { email, password, organization }, false),
    );
  }

  async logout(): Promise<void> {
    try {
      if (this.access) await this.request<void>("POST", "/api/v1/auth/logout", undefined, false);
    } finally {
      this.clearTokens();
    }
  }
}

export const api = new ApiClient();

/** Query string from defined values. */
export function qs(params: Record<string, string | number | boolean | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
