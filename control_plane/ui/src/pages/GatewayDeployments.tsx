import { useState } from "react";
import type { Deployment, Gateway } from "../api/types";
import { Snippets } from "../components/Snippets";
import { Field, formatTime } from "../components/ui";
import { endpointsFor } from "../lib/fleet";

/** What runs on a gateway and how to call it; without deployments, snippets for any agent name. */
export function GatewayDeployments({ gateway, deployments }: { gateway: Gateway; deployments?: Deployment[] }) {
  const [chosen, setChosen] = useState<string | null>(null);
  const [target, setTarget] = useState("support-bot");
  const selected = deployments?.find((d) => d.id === chosen) ?? deployments?.[0];
  if (deployments && deployments.length > 0 && selected) {
    return (
      <section aria-label={`Deployments on ${gateway.name}`}>
        <div className="table-wrap">
          <table>
            <caption>Deployments</caption>
            <thead>
              <tr>
                <th scope="col">Workload</th>
                <th scope="col">Version</th>
                <th scope="col">Deployed</th>
                <th scope="col">API endpoint</th>
                <th scope="col"><span className="sr-only">Snippets</span></th>
              </tr>
            </thead>
            <tbody>
              {deployments.map((d) => (
                <tr key={d.id} aria-selected={d.id === selected.id}>
                  <td>{d.kind} <strong>{d.name}</strong></td>
                  <td>v{d.version}</td>
                  <td>{formatTime(d.updated_at)}{d.created_by ? ` by ${d.created_by}` : ""}</td>
                  <td><code>{d.endpoints.api}</code></td>
                  <td>
                    <button type="button" className="row-button" aria-pressed={d.id === selected.id}
                      onClick={() => setChosen(d.id)}>
                      How to call {d.name}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <h3>Call {selected.name}</h3>
        <Snippets endpoints={selected.endpoints} name={selected.name} />
      </section>
    );
  }
  return (
    <details>
      <summary>Call an agent through this gateway</summary>
      {deployments && <p className="hint">Nothing is deployed here yet; deploy from the Agents or Pipelines page.</p>}
      <Field label="Agent name" value={target} onChange={(e) => setTarget(e.target.value)} />
      {target.trim() && <Snippets endpoints={endpointsFor(gateway.url, "agent", target.trim())} name={target.trim()} />}
    </details>
  );
}
