import { useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate } from "react-router";
import { ApiError } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { Field } from "../components/ui";

function useSubmit(action: () => Promise<void>) {
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from;
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await action();
      navigate(from && from !== "/login" && from !== "/signup" ? from : "/", { replace: true });
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  const fields = error instanceof ApiError ? error.fieldErrors : {};
  return { submit, error, busy, fields };
}

function FormError({ error }: { error: Error | null }) {
  if (!error) return null;
  return (
    <div className="alert alert-error" role="alert">
      {error.message}
    </div>
  );
}

export function LoginPage() {
  const { login } = useAuth();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const { submit, error, busy, fields } = useSubmit(() => login(email, password));
  return (
    <div className="auth-page">
      <form className="card auth-card" onSubmit={submit} noValidate>
        <h1>Log in to Kaizen Studio</h1>
        <FormError error={error} />
        <Field label="Email" type="email" autoComplete="username" value={email} error={fields.email}
          onChange={(e) => setEmail(e.target.value)} required />
        <Field label="Password" type="password" autoComplete="current-password" value={password}
          error={fields.password} onChange={(e) => setPassword(e.target.value)} required />
        <button type="submit" disabled={busy}>{busy ? "Logging in…" : "Log in"}</button>
        <p>
          New here? <Link to="/signup">Create an organisation</Link>
        </p>
      </form>
    </div>
  );
}

export function SignupPage() {
  const { signup } = useAuth();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [organization, setOrganization] = useState("");
  const { submit, error, busy, fields } = useSubmit(() => signup(email, password, organization));
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
