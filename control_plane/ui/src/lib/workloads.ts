// Agents and pipelines as the designer edits them: a form over the YAML document (fields the
// form does not know are kept), and each pipeline pattern's roles drawn as a graph.
import { parseDocument, stringify } from "yaml";

export const PROVIDERS = ["openai", "anthropic", "vllm", "ollama", "lmstudio", "demo"] as const;

export interface AgentForm {
  name: string;
  description: string;
  provider: string;
  model: string;
  temperature: string;
  systemPrompt: string;
  toolAgents: string; // comma-separated names of agents called as tools
  costEstimate: string;
}

export const newAgent: AgentForm = {
  name: "",
  description: "",
  provider: "demo",
  model: "demo",
  temperature: "",
  systemPrompt: "You are a helpful agent.",
  toolAgents: "",
  costEstimate: "",
};

type Doc = Record<string, unknown>;
const obj = (value: unknown): Doc => (value && typeof value === "object" && !Array.isArray(value) ? (value as Doc) : {});
const text = (value: unknown): string => (value === undefined || value === null ? "" : String(value));
export const names = (csv: string): string[] => csv.split(",").map((s) => s.trim()).filter(Boolean);

/** Parses one YAML document into an object, or says why it cannot. */
export function parseYaml(source: string): { doc: Doc | null; error: string | null } {
  const parsed = parseDocument(source);
  if (parsed.errors.length) {
    const first = parsed.errors[0];
    const where = first.linePos?.[0] ? `line ${first.linePos[0].line}, column ${first.linePos[0].col}: ` : "";
    return { doc: null, error: `${where}${first.message.split("\n")[0]}` };
  }
  const value = parsed.toJS();
  if (!value || typeof value !== "object" || Array.isArray(value)) return { doc: null, error: "The document must be a mapping." };
  return { doc: value as Doc, error: null };
}

export function agentFormOf(doc: Doc): AgentForm {
  const metadata = obj(doc.metadata);
  const spec = obj(doc.spec);
  const model = obj(spec.model);
  const tools = Array.isArray(spec.tools) ? spec.tools : [];
  return {
    name: text(metadata.name),
    description: text(metadata.description),
    provider: text(model.provider),
    model: text(model.name),
    temperature: text(obj(model.parameters).temperature),
    systemPrompt: text(spec.system_prompt),
    toolAgents: tools.map((t) => obj(t).agent).filter((a): a is string => typeof a === "string").join(", "),
    costEstimate: text(spec.cost_estimate_usd),
  };
}

function setOrDelete(target: Doc, key: string, value: unknown) {
  if (value === "" || value === undefined || (Array.isArray(value) && value.length === 0)) delete target[key];
  else target[key] = value;
}

const numberOr = (value: string): number | string => {
  const n = Number(value);
  return value.trim() !== "" && Number.isFinite(n) ? n : value;
};

/** The document with the form applied; keys the form does not show (http/mcp tools, limits…) stay. */
export function applyAgentForm(doc: Doc, form: AgentForm): Doc {
  const spec = { ...obj(doc.spec) };
  const model: Doc = { ...obj(spec.model), provider: form.provider, name: form.model };
  const parameters = { ...obj(model.parameters) };
  setOrDelete(parameters, "temperature", form.temperature.trim() === "" ? "" : numberOr(form.temperature));
  setOrDelete(model, "parameters", Object.keys(parameters).length ? parameters : "");
  spec.model = model;
  setOrDelete(spec, "system_prompt", form.systemPrompt);
  const otherTools = (Array.isArray(spec.tools) ? spec.tools : []).filter((t) => typeof obj(t).agent !== "string");
  setOrDelete(spec, "tools", [...names(form.toolAgents).map((agent) => ({ agent })), ...otherTools]);
  setOrDelete(spec, "cost_estimate_usd", form.costEstimate.trim() === "" ? "" : numberOr(form.costEstimate));
  const metadata = { ...obj(doc.metadata), name: form.name };
  setOrDelete(metadata, "description", form.description);
  return { apiVersion: "kaizen.studio/v1", ...doc, kind: "Agent", metadata, spec };
}

export const toYaml = (doc: Doc): string => stringify(doc, { lineWidth: 0 });

// -- pipelines ------------------------------------------------------------------------------

export type RoleShape = "list" | "one" | "routes" | "number" | "choice";

export interface RoleSpec {
  key: string;
  label: string;
  shape: RoleShape;
  required: boolean;
  options?: readonly string[];
}

const list = (key: string, label: string, required = true): RoleSpec => ({ key, label, shape: "list", required });
const one = (key: string, label: string, required = true): RoleSpec => ({ key, label, shape: "one", required });
const num = (key: string, label: string): RoleSpec => ({ key, label, shape: "number", required: false });

/** The nine patterns and their roles (policy/workloads/config.py PATTERNS). */
export const PATTERN_ROLES: Record<string, RoleSpec[]> = {
  sequential: [list("agents", "Agents, in order")],
  parallel: [list("agents", "Agents (run at once)"), one("aggregator", "Aggregator", false)],
  router: [one("router", "Router agent"), { key: "routes", label: "Routes (label: agent, one per line)", shape: "routes", required: true }, one("default", "Default agent", false)],
  ensemble: [
    list("agents", "Agents"),
    { key: "strategy", label: "Strategy", shape: "choice", required: false, options: ["majority", "aggregator"] },
    one("aggregator", "Aggregator", false),
  ],
  blackboard: [list("agents", "Agents"), one("controller", "Controller")],
  supervisor_worker: [one("supervisor", "Supervisor"), list("workers", "Workers")],
  consensus: [list("agents", "Agents"), num("threshold", "Threshold (0–1)"), num("max_rounds", "Max rounds")],
  debate: [list("debaters", "Debaters"), one("judge", "Judge"), num("rounds", "Rounds")],
  handoff: [list("agents", "Agents"), one("entry", "Entry agent")],
};
export const PATTERNS = Object.keys(PATTERN_ROLES);

/** Form text of each role: lists comma-separated, routes as "label: agent" lines. */
export type RoleValues = Record<string, string>;

export function roleValuesOf(spec: Doc): RoleValues {
  const values: RoleValues = {};
  for (const role of PATTERN_ROLES[text(spec.pattern)] ?? []) {
    const value = spec[role.key];
    if (role.shape === "list") values[role.key] = Array.isArray(value) ? value.map(text).join(", ") : "";
    else if (role.shape === "routes")
      values[role.key] = Object.entries(obj(value)).map(([label, agent]) => `${label}: ${text(agent)}`).join("\n");
    else values[role.key] = text(value);
  }
  return values;
}

export function parseRoutes(textValue: string): Record<string, string> {
  const routes: Record<string, string> = {};
  for (const line of textValue.split("\n")) {
    const at = line.indexOf(":");
    if (at <= 0) continue;
    const label = line.slice(0, at).trim();
    const agent = line.slice(at + 1).trim();
    if (label && agent) routes[label] = agent;
  }
  return routes;
}

/** The pipeline document for a pattern and its role values; other spec keys (limits…) stay. */
export function applyPipelineForm(doc: Doc, name: string, description: string, pattern: string, values: RoleValues): Doc {
  const spec: Doc = {};
  const old = obj(doc.spec);
  const roleKeys = new Set(Object.values(PATTERN_ROLES).flat().map((r) => r.key));
  for (const [key, value] of Object.entries(old)) if (!roleKeys.has(key) && key !== "pattern") spec[key] = value;
  spec.pattern = pattern;
  for (const role of PATTERN_ROLES[pattern] ?? []) {
    const raw = values[role.key] ?? "";
    if (role.shape === "list") setOrDelete(spec, role.key, names(raw));
    else if (role.shape === "routes") setOrDelete(spec, role.key, Object.keys(parseRoutes(raw)).length ? parseRoutes(raw) : "");
    else if (role.shape === "number") setOrDelete(spec, role.key, raw.trim() === "" ? "" : numberOr(raw));
    else setOrDelete(spec, role.key, raw.trim());
  }
  const metadata = { ...obj(doc.metadata), name };
  setOrDelete(metadata, "description", description);
  return { apiVersion: "kaizen.studio/v1", ...doc, kind: "Pipeline", metadata, spec };
}

export interface GraphNode {
  id: string;
  label: string;
  role: string;
  x: number;
  y: number;
}
export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  label?: string;
  dashed?: boolean;
}

const COL = 220;
const ROW = 90;

/** The pattern's shape as nodes and edges: input on the left, output on the right. */
export function pipelineGraph(spec: Doc): { nodes: GraphNode[]; edges: GraphEdge[] } {
  const pattern = text(spec.pattern);
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const strings = (key: string) => (Array.isArray(spec[key]) ? (spec[key] as unknown[]).map(text).filter(Boolean) : []);
  const single = (key: string) => (typeof spec[key] === "string" && spec[key] ? (spec[key] as string) : null);
  const node = (id: string, label: string, role: string, col: number, row: number) => {
    if (!nodes.some((n) => n.id === id)) nodes.push({ id, label, role, x: col * COL, y: row * ROW });
    return id;
  };
  const edge = (source: string, target: string, label?: string, dashed?: boolean) =>
    edges.push({ id: `${source}->${target}${label ? `:${label}` : ""}`, source, target, label, dashed });
  const column = (ids: string[], role: string, col: number) => {
    const top = -(ids.length - 1) / 2;
    return ids.map((a, i) => node(`agent:${a}`, a, role, col, top + i));
  };

  node("input", "input", "input", 0, 0);
  let last: string[] = ["input"];
  let outputCol = 2;
  const fanIn = (targets: string[], col: number, label?: string) => {
    for (const s of last) for (const t of targets) edge(s, t, label);
    last = targets;
    outputCol = col + 1;
  };

  switch (pattern) {
    case "sequential": {
      strings("agents").forEach((a, i) => {
        const id = node(`agent:${a}#${i}`, a, "step", i + 1, 0);
        fanIn([id], i + 1);
      });
      break;
    }
    case "parallel":
    case "ensemble":
    case "consensus": {
      fanIn(column(strings("agents"), "agent", 1), 1, pattern === "consensus" ? "round" : undefined);
      const aggregator = single("aggregator");
      if (aggregator && pattern !== "consensus") fanIn([node(`aggregator:${aggregator}`, aggregator, "aggregator", 2, 0)], 2);
      break;
    }
    case "router": {
      const router = single("router");
      if (router) fanIn([node(`router:${router}`, router, "router", 1, 0)], 1);
      const routes = Object.entries(obj(spec.routes)).map(([label, agent]) => [label, text(agent)] as const);
      const fallback = single("default");
      const all = [...routes, ...(fallback ? [["default", fallback] as const] : [])];
      const top = -(all.length - 1) / 2;
      const targets = all.map(([label, agent], i) => {
        const id = node(`agent:${agent}`, agent, "route", 2, top + i);
        for (const s of last) edge(s, id, label, label === "default");
        return id;
      });
      if (targets.length) {
        last = [...new Set(targets)];
        outputCol = 3;
      }
      break;
    }
    case "blackboard":
    case "supervisor_worker": {
      const lead = single(pattern === "blackboard" ? "controller" : "supervisor");
      const team = strings(pattern === "blackboard" ? "agents" : "workers");
      if (lead) {
        const id = node(`lead:${lead}`, lead, pattern === "blackboard" ? "controller" : "supervisor", 1, 0);
        fanIn([id], 1);
        const ids = column(team, pattern === "blackboard" ? "agent" : "worker", 2);
        for (const w of ids) {
          edge(id, w, pattern === "blackboard" ? "picks" : "task");
          edge(w, id, pattern === "blackboard" ? "writes" : "result", true);
        }
        outputCol = 3;
      } else fanIn(column(team, "agent", 1), 1);
      break;
    }
    case "debate": {
      const debaters = column(strings("debaters"), "debater", 1);
      fanIn(debaters, 1);
      for (let i = 0; i + 1 < debaters.length; i++) edge(debaters[i], debaters[i + 1], "rebuts", true);
      const judge = single("judge");
      if (judge) fanIn([node(`judge:${judge}`, judge, "judge", 2, 0)], 2);
      break;
    }
    case "handoff": {
      const entry = single("entry");
      const agents = strings("agents");
      const ids = column(agents, "agent", 2);
      if (entry) {
        const entryId = `agent:${entry}`;
        if (!nodes.some((n) => n.id === entryId)) node(entryId, entry, "entry", 2, (agents.length + 1) / 2);
        edge("input", entryId, "entry");
        for (const id of ids) if (id !== entryId) edge(entryId, id, "hands off", true);
      }
      last = ids.length ? ids : last;
      outputCol = 3;
      break;
    }
  }
  node("output", "output", "output", outputCol, 0);
  for (const s of last) if (s !== "input" || pattern === "") edge(s, "output");
  return { nodes, edges };
}
