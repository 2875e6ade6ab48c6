import { useAuth } from "../auth/AuthContext";

export function AccountPage() {
  const { me } = useAuth();
  if (!me) return null;
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
