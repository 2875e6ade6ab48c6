import { useEffect, useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate } from "react-router";
import { api, ApiError, qs } from "../api/client";
import type { SsoDiscovery } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { TotpEnrolmentFlow } from "../components/TotpEnrolment";
import { Field, Loading } from "../components/ui";
import { emailDomain, nextLoginStep, normalizeCode, ssoRetryCode, type LoginStep } from "../lib/login";
import { takeConsent } from "../lib/oauth";
import { useSubmit } from "../lib/useSubmit";

/** A sign-in form: the shared submit state, then back to where the user was going. */
function useSignIn(action: () => Promise<void>) {
  const navigate = useNavigate();
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from;
  return useSubmit(async () => {
    await action();
    navigate(from && from !== "/login" && from !== "/signup" ? from : "/", { replace: true });
  });
}

function FormError({ error }: { error: Error | null }) {
  if (!error) return null;
  return (
    <div className="alert alert-error" role="alert">
      {error.message}
    </div>
  );
}

function useReturnPath(): () => void {
  const navigate = useNavigate();
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from;
  return () => navigate(from && from !== "/login" && from !== "/signup" ? from : "/", { replace: true });
}

/** Email-domain routing: which identity provider signs this address in (null: none). */
function useSsoDiscovery(email: string): SsoDiscovery | null {
  const [found, setFound] = useState<SsoDiscovery | null>(null);
  const domain = emailDomain(email);
  useEffect(() => {
    setFound(null);
    if (!domain) return;
    let live = true;
    const timer = setTimeout(() => {
      api
        .get<SsoDiscovery>(`/api/v1/auth/sso/discover${qs({ email: email.trim() })}`)
        .then((d) => live && setFound(d))
        .catch(() => undefined); // 404: this domain has no SSO; password login it is
    }, 350);
    return () => {
      live = false;
      clearTimeout(timer);
    };
    // Rediscover per domain, not per keystroke in the local part.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [domain]);
  return found;
}

export function LoginPage() {
  const { login, adopt } = useAuth();
  const done = useReturnPath();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [step, setStep] = useState<LoginStep>({ kind: "password" });
  const [error, setError] = useState<Error | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const sso = useSsoDiscovery(email);
  const fields = error instanceof ApiError ? error.fieldErrors : {};

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      await login(email, password, step.kind === "code" ? normalizeCode(code) : undefined);
      done();
    } catch (e) {
      const next = nextLoginStep(e);
      if (next && !(next.kind === "code" && step.kind === "code")) {
        setStep(next);
        setCode("");
      } else {
        setError(e as Error);
      }
    } finally {
      setBusy(false);
    }
  };

  if (step.kind === "enrol") {
    return (
      <div className="auth-page">
        <div className="card auth-card">
          <h1>Set up two-factor authentication</h1>
          <p>
            Your organisation requires an authenticator app for your role. Set it up now to finish logging in
            {step.expiresIn ? ` (within ${Math.round(step.expiresIn / 60)} minutes)` : ""}.
          </p>
          <TotpEnrolmentFlow
            autoStart
            account={email}
            call={(method, path, body) => api.requestWith(step.token, method, path, body)}
            onDone={async (confirmed) => {
              if (confirmed.tokens) {
                await adopt(confirmed.tokens);
                done();
              } else {
                setStep({ kind: "password" });
                setNotice("Two-factor authentication is on. Log in with a code from your app.");
              }
            }}
          />
          <p>
            <button type="button" className="link-button" onClick={() => setStep({ kind: "password" })}>
              Back to log in
            </button>
          </p>
        </div>
      </div>
    );
  }

  return (
    <div className="auth-page">
      <form className="card auth-card" onSubmit={submit} noValidate>
        <h1>Log in to Kaizen Studio</h1>
        {notice && <div className="alert alert-ok" role="status">{notice}</div>}
        <FormError error={error} />
        {step.kind === "code" ? (
          <>
            <p>Enter the 6-digit code from your authenticator app for <strong>{email}</strong>.</p>
            <Field label="Authentication code" inputMode="numeric" autoComplete="one-time-code" value={code}
              error={fields.totp} hint="Lost your device? Enter one of your recovery codes instead."
              onChange={(e) => setCode(e.target.value)} autoFocus required maxLength={16} />
            <button type="submit" disabled={busy || !code.trim()}>{busy ? "Verifying…" : "Verify"}</button>
            <p>
              <button type="button" className="link-button" onClick={() => { setStep({ kind: "password" }); setError(null); }}>
                Use another account
              </button>
            </p>
          </>
        ) : (
          <>
            <Field label="Email" type="email" autoComplete="username" value={email} error={fields.email}
              onChange={(e) => setEmail(e.target.value)} required />
            {sso && (
              <div className="sso-route" role="status">
                <p>
                  <strong>{emailDomain(email)}</strong> signs in with {sso.name}.
                </p>
                <a className="button" href={sso.login_url}>Continue with {sso.name}</a>
                <p className="hint">Or use your Kaizen password below if your organisation allows it.</p>
              </div>
            )}
            <Field label="Password" type="password" autoComplete="current-password" value={password}
              error={fields.password} onChange={(e) => setPassword(e.target.value)} required />
            <button type="submit" disabled={busy}>{busy ? "Logging in…" : "Log in"}</button>
            <p>
              New here? <Link to="/signup">Create an organisation</Link>
            </p>
          </>
        )}
      </form>
    </div>
  );
}

// A single-use code can be traded once: StrictMode's second effect run must not spend it again.
const exchanges = new Map<string, Promise<void>>();

/** Where an SSO login lands (`/#/sso?code=…`): trade the code for a session, asking for the
 * authenticator code when the member has MFA. */
export function SsoCallbackPage({ code }: { code: string }) {
  const { exchangeSsoCode } = useAuth();
  const navigate = useNavigate();
  const [error, setError] = useState<Error | null>(null);
  const [retry, setRetry] = useState<string | null>(null);
  const [totp, setTotp] = useState("");
  const [busy, setBusy] = useState(false);
  const failed = (e: Error) => {
    setRetry(ssoRetryCode(e));
    setError(e);
  };
  useEffect(() => {
    let exchange = exchanges.get(code);
    if (!exchange) {
      exchange = exchangeSsoCode(code);
      exchanges.set(code, exchange);
    }
    let live = true;
    exchange
      .then(() => live && navigate(takeConsent() ?? "/", { replace: true }))
      .catch((e: Error) => live && failed(e));
    return () => {
      live = false;
    };
  }, [code, exchangeSsoCode, navigate]);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!retry) return;
    setBusy(true);
    try {
      await exchangeSsoCode(retry, normalizeCode(totp));
      navigate(takeConsent() ?? "/", { replace: true });
    } catch (e) {
      failed(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="auth-page">
      <div className="card auth-card">
        <h1>Single sign-on</h1>
        {retry ? (
          <form onSubmit={submit} noValidate>
            {error instanceof ApiError && error.code === "mfa_invalid" ? <FormError error={error} /> : null}
            <p className="hint">Your identity provider signed you in. This account also has MFA.</p>
            <Field label="Authenticator or recovery code" value={totp} autoComplete="one-time-code"
              inputMode="text" onChange={(e) => setTotp(e.target.value)} required autoFocus />
            <button type="submit" disabled={busy || !totp.trim()}>{busy ? "Checking…" : "Continue"}</button>
          </form>
        ) : error ? (
          <>
            <FormError error={error} />
            <p>
              <Link to="/login" replace>Back to log in</Link>
            </p>
          </>
        ) : (
          <Loading what="Finishing your sign-in" />
        )}
      </div>
    </div>
  );
}

export function SignupPage() {
  const { signup } = useAuth();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [organization, setOrganization] = useState("");
  const { submit, error, busy, fields } = useSignIn(() => signup(email, password, organization));
  return (
    <div className="auth-page">
      <form className="card auth-card" onSubmit={submit} noValidate>
        <h1>Create your organisation</h1>
        <p className="hint">You become its owner. You can invite members afterwards.</p>
        <FormError error={error} />
        <Field label="Organisation name" value={organization} error={fields.organization}
          onChange={(e) => setOrganization(e.target.value)} required autoComplete="organization" />
        <Field label="Email" type="email" autoComplete="username" value={email} error={fields.email}
          onChange={(e) => setEmail(e.target.value)} required />
        <Field label="Password" type="password" autoComplete="new-password" value={password}
          error={fields.password} hint="A long passphrase works best."
          onChange={(e) => setPassword(e.target.value)} required />
        <button type="submit" disabled={busy}>{busy ? "Creating…" : "Sign up"}</button>
        <p>
          Already have an account? <Link to="/login">Log in</Link>
        </p>
      </form>
    </div>
  );
}
