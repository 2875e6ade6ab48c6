// OAuth for MCP clients: what each scope lets a client do, in the words the consent page
// shows, and where the browser goes after a sign-in that interrupted a consent.

export const SCOPE_TEXT: Record<string, string> = {
  "mcp:connect": "Connect to the gateway's MCP server",
  "mcp:list": "See the tools (agents) you may use",
  "agents:invoke": "Call agents as you, within your policy and budgets",
  "pipelines:run": "Run pipelines as you, within your policy and budgets",
};

export function scopeText(scope: string): string {
  return SCOPE_TEXT[scope] ?? `Unknown permission ${scope}`;
}

/** The client's redirect target as a person checks it: scheme, host and port. */
export function redirectHost(uri: string): string {
  try {
    const url = new URL(uri);
    return `${url.protocol}//${url.host}`;
  } catch {
    return uri;
  }
}

const RESUME_KEY = "kaizen.consent";

/** Remember a consent URL across a sign-in (an SSO login leaves the page). Only our own
 * consent path is kept, so this can never send the browser anywhere else. */
export function rememberConsent(path: string, storage: Pick<Storage, "setItem"> = sessionStorage): void {
  if (isConsentPath(path)) storage.setItem(RESUME_KEY, path);
}

export function takeConsent(storage: Pick<Storage, "getItem" | "removeItem"> = sessionStorage): string | null {
  const path = storage.getItem(RESUME_KEY);
  storage.removeItem(RESUME_KEY);
  return path && isConsentPath(path) ? path : null;
}

export function isConsentPath(path: string): boolean {
  return /^\/oauth-consent\?request=[A-Za-z0-9_-]{1,100}$/.test(path);
}
