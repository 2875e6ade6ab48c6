import { describe, expect, it } from "vitest";
import { ago, endpointsFor, gatewayHealth, instanceState, revisionLag, shellQuote, snippets } from "./fleet";

const now = Date.parse("2026-11-26T12:00:00Z");
const report = (revision: number | null, secondsAgo: number, stale = false) => ({
  instance: `i-${revision}-${secondsAgo}`,
  bundle_revision: revision,
  reported_at: new Date(now - secondsAgo * 1000).toISOString(),
  stale,
});

describe("fleet health", () => {
  it("tells a silent sidecar from one serving an older bundle", () => {
    expect(instanceState(report(3, 5), 3, now)).toBe("in_sync");
    expect(instanceState(report(2, 5), 3, now)).toBe("behind");
    expect(instanceState(report(3, 61), 3, now)).toBe("silent");
    expect(instanceState(report(null, 5), 1, now)).toBe("behind");
    // The server's flag is trusted when the client cannot see why.
    expect(instanceState(report(3, 5, true), null, now)).toBe("behind");
  });

  it("sums instances into the gateway's health", () => {
    expect(gatewayHealth([], 1, now)).toBe("unreported");
    expect(gatewayHealth([report(1, 1), report(1, 2)], 1, now)).toBe("healthy");
    expect(gatewayHealth([report(1, 1), report(0, 2)], 1, now)).toBe("degraded");
    expect(gatewayHealth([report(1, 100), report(1, 200)], 1, now)).toBe("down");
  });

  it("says how far behind a bundle is", () => {
    expect(revisionLag(4, 4)).toBe("current");
    expect(revisionLag(3, 4)).toBe("1 revision behind");
    expect(revisionLag(1, 4)).toBe("3 revisions behind");
    expect(revisionLag(null, 4)).toBe("no bundle loaded");
    expect(revisionLag(null, null)).toBe("nothing published");
  });

  it("formats ages", () => {
    expect(ago(new Date(now - 12_000).toISOString(), now)).toBe("12 s ago");
    expect(ago(new Date(now - 5 * 60_000).toISOString(), now)).toBe("5 min ago");
    expect(ago(new Date(now - 3 * 3600_000).toISOString(), now)).toBe("3 h ago");
    expect(ago(null, now)).toBe("never");
  });
});

describe("snippets", () => {
  it("calls an agent on every channel without embedding a secret", () => {
    const s = snippets(endpointsFor("https://gw.example.com/", "agent", "support-bot"));
    expect(s.api).toContain("curl -sS -X POST https://gw.example.com/v1/agents/support-bot/invoke");
    expect(s.api).toContain('"Authorization: Bearer $KAIZEN_API_KEY"');
    expect(s.cli).toContain("kaizen-studio call support-bot --gateway https://gw.example.com --input 'Hello'");
    expect(s.cli).not.toMatch(/ks_[A-Za-z0-9]/);
    const mcp = JSON.parse(s.mcp);
    expect(mcp.mcpServers["kaizen-gw.example.com"].url).toBe("https://gw.example.com/mcp");
    expect(JSON.stringify(mcp)).not.toContain("ks_");
  });

  it("runs a pipeline on its own route", () => {
    const s = snippets(endpointsFor("http://127.0.0.1:10000", "pipeline", "triage"));
    expect(s.api).toContain("http://127.0.0.1:10000/v1/pipelines/triage/run");
    expect(s.cli).toContain("run a pipeline over the HTTP API or MCP");
  });

  it("uses the endpoints the control plane reports", () => {
    const s = snippets({ api: "https://edge/v1/agents/a/invoke", cli: "kaizen-studio call a --gateway https://edge", mcp: "https://edge/mcp" });
    expect(s.api).toContain("https://edge/v1/agents/a/invoke");
    expect(s.cli).toContain("kaizen-studio call a --gateway https://edge");
    expect(JSON.parse(s.mcp).mcpServers["kaizen-edge"].url).toBe("https://edge/mcp");
  });

  it("quotes names a shell would split or expand", () => {
    expect(shellQuote("plain-name")).toBe("plain-name");
    expect(shellQuote("it's $HOME")).toBe(`'it'"'"'s $HOME'`);
  });
});
