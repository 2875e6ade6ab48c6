import { useId, useState } from "react";
import { snippets, type Channel, type Endpoints } from "../lib/fleet";
import { CopyButton } from "./ui";

const LABELS: Record<Channel, string> = { api: "HTTP API", cli: "CLI", mcp: "MCP client" };

/** Copyable ways to call one agent or pipeline through a gateway, one tab per channel. */
export function Snippets({ endpoints, name }: { endpoints: Endpoints; name: string }) {
  const [channel, setChannel] = useState<Channel>("api");
  const base = useId();
  const texts = snippets(endpoints);
  const channels = Object.keys(LABELS) as Channel[];
  return (
    <div className="snippets">
      <div role="tablist" aria-label={`How to call ${name}`} className="tabs"
        onKeyDown={(e) => {
          const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
          if (!step) return;
          const next = channels[(channels.indexOf(channel) + step + channels.length) % channels.length];
          setChannel(next);
          document.getElementById(`${base}-${next}-tab`)?.focus();
        }}>
        {channels.map((c) => (
          <button key={c} id={`${base}-${c}-tab`} type="button" role="tab" aria-selected={c === channel}
            aria-controls={`${base}-${c}-panel`} tabIndex={c === channel ? 0 : -1} onClick={() => setChannel(c)}>
            {LABELS[c]}
          </button>
        ))}
      </div>
      <div id={`${base}-${channel}-panel`} role="tabpanel" aria-labelledby={`${base}-${channel}-tab`}>
        <pre className="snippet" data-testid={`snippet-${channel}`}>{texts[channel]}</pre>
        <CopyButton text={texts[channel]} label={`Copy ${LABELS[channel]} snippet`} />
        <p className="hint">
          {channel === "mcp"
            ? "Add to your MCP client's configuration; tools/list shows only the tools your key may invoke."
            : "Set KAIZEN_API_KEY to an API key (Admin → API keys)."}
        </p>
      </div>
    </div>
  );
}
