import { useEffect, useState } from "react";
import { useSearchParams } from "react-router";
import { api } from "../api/client";
import type { ConsentAnswer, ConsentRequest } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { ErrorMessage, Loading } from "../components/ui";
import { redirectHost, scopeText, takeConsent } from "../lib/oauth";
import { useResource } from "../lib/useApi";

/** The authorization server's consent step (`/oauth-consent?request=…`): the signed-in
 * person approves or denies one MCP client for one gateway's MCP resource and the scopes
 * shown; the browser then goes back to the client with a code (or `access_denied`). */
export function OAuthConsentPage() {
  const [params] = useSearchParams();
  const { me } = useAuth();
  const id = params.get("request") ?? "";
  const path = id ? `/api/v1/oauth/requests/${encodeURIComponent(id)}` : null;
  const { data: request, error, loading } = useResource<ConsentRequest>(path);
  const [busy, setBusy] = useState<"approve" | "deny" | null>(null);
  const [failed, setFailed] = useState<Error | null>(null);
  useEffect(() => void takeConsent(), []); // arrived: an SSO sign-in need not bring us back

  const decide = async (approve: boolean) => {
    if (!path) return;
    setBusy(approve ? "approve" : "deny");
    setFailed(null);
    try {
      const answer = await api.post<ConsentAnswer>(path, { approve });
      window.location.assign(answer.redirect_to);
    } catch (e) {
      setFailed(e as Error);
      setBusy(null);
    }
  };

  if (!id) return <section><h1>Authorize an MCP client</h1><p>This link names no authorization request.</p></section>;
  if (loading) return <Loading what="Loading the authorization request" />;
  if (error || !request) {
    return (
      <section>
        <h1>Authorize an MCP client</h1>
        <ErrorMessage error={error} />
        <p>Start again from your MCP client: requests expire after ten minutes and can be answered once.</p>
      </section>
    );
  }
  return (
    <section className="consent" aria-labelledby="consent-title">
      <h1 id="consent-title">Authorize {request.client_name || request.client_id}?</h1>
      <p>
        <strong>{request.client_name || "An MCP client"}</strong> asks to use the gateway{" "}
        <strong>{request.gateway}</strong> as <strong>{me?.label}</strong>. Your policy still decides every
        call; you can revoke this at any time under MCP clients.
      </p>
      <dl className="facts">
        <dt>Client</dt>
        <dd><code>{request.client_id}</code></dd>
        <dt>Returns to</dt>
        <dd><code>{redirectHost(request.redirect_uri)}</code></dd>
        <dt>MCP server</dt>
        <dd><code>{request.resource}</code></dd>
      </dl>
      <h2>It will be able to</h2>
      <ul className="scope-list">
        {request.scopes.map((scope) => (
          <li key={scope}>
            {scopeText(scope)} <code>{scope}</code>
          </li>
        ))}
      </ul>
      <ErrorMessage error={failed} />
      <div className="actions">
        <button type="button" className="button-secondary" disabled={busy !== null} onClick={() => void decide(false)}>
          {busy === "deny" ? "Working…" : "Deny"}
        </button>
        <button type="button" disabled={busy !== null} onClick={() => void decide(true)}>
          {busy === "approve" ? "Working…" : "Approve"}
        </button>
      </div>
    </section>
  );
}
