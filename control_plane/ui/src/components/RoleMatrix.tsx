import { useMemo } from "react";
import { roleMatrix } from "../lib/rolematrix";

/** Roles down, `resource action` across; ● direct, ○ inherited (with the role it comes from). */
export function RoleMatrixView({ source }: { source: string }) {
  const matrix = useMemo(() => roleMatrix(source), [source]);
  if (!matrix.roles.length) return <p>No roles in this policy.</p>;
  return (
    <div>
      {matrix.problems.length > 0 && (
        <ul className="problems">
          {matrix.problems.map((p) => (
            <li key={p} className="text-error">{p}</li>
          ))}
        </ul>
      )}
      <div className="table-wrap">
        <table className="matrix">
          <caption>Role / permission matrix (● granted directly, ○ inherited)</caption>
          <thead>
            <tr>
              <th scope="col">Role</th>
              {matrix.permissions.map((p) => (
                <th scope="col" key={p.key}>
                  <code>{p.resource}</code>
                  <br />
                  {p.action}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {matrix.roles.map((role) => (
              <tr key={role}>
                <th scope="row">{role}</th>
                {matrix.permissions.map((p) => {
                  const grant = matrix.grants[role][p.key];
                  const text = !grant ? "not granted" : grant.direct ? "granted" : `inherited from ${grant.via}`;
                  return (
                    <td key={p.key} className="cell" title={text}>
                      <span aria-hidden="true">{!grant ? "" : grant.direct ? "●" : "○"}</span>
                      <span className="sr-only">{text}</span>
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h3>Bindings</h3>
      {matrix.bindings.length ? (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Subject</th>
                <th scope="col">Role</th>
                <th scope="col">Workspace</th>
              </tr>
            </thead>
            <tbody>
              {matrix.bindings.map((b, i) => (
                <tr key={i}>
                  <td><code>{b.subject}</code></td>
                  <td>{b.role}</td>
                  <td>{b.workspace ?? "every workspace"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p>No bindings.</p>
      )}
    </div>
  );
}
