import { useAuth } from "../auth/AuthContext";
import { MfaSection, PasswordSection, SessionsSection } from "../components/AccountSecurity";

export function AccountPage() {
  const { me } = useAuth();
  if (!me) return null;
  const person = me.kind === "user";
  return (
    <section>
      <h1>Your account</h1>
      <dl className="facts">
        <dt>Signed in as</dt>
        <dd>{me.label}</dd>
        <dt>Organisation</dt>
        <dd>{me.organization_name}</dd>
        <dt>Role</dt>
        <dd>{me.role}</dd>
      </dl>
      {person ? (
        <>
          <MfaSection account={me.label} />
          <SessionsSection />
          <PasswordSection />
        </>
      ) : (
        <p className="hint">This is an API key: it has no second factor, sessions or password.</p>
      )}
      <h2>What your role allows</h2>
      {me.permissions.length ? (
        <ul className="permission-list">
          {me.permissions.map((p) => (
            <li key={p}>
              <code>{p}</code>
            </li>
          ))}
        </ul>
      ) : (
        <p>No permissions.</p>
      )}
    </section>
  );
}
