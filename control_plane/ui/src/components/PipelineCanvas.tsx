// The pipeline's pattern drawn with React Flow: nodes can be moved and the view zoomed; the
// structure itself comes from the roles in the form (lib/workloads.ts pipelineGraph).
import { Background, Controls, MarkerType, ReactFlow, type Edge, type Node } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { useMemo } from "react";
import { pipelineGraph } from "../lib/workloads";

export function PipelineCanvas({ spec, name }: { spec: Record<string, unknown>; name: string }) {
  const graph = useMemo(() => pipelineGraph(spec), [spec]);
  const nodes: Node[] = graph.nodes.map((n) => ({
    id: n.id,
    position: { x: n.x, y: n.y },
    data: { label: n.role === n.label || n.role === "step" ? n.label : `${n.label} · ${n.role}` },
    className: `flow-node flow-${n.role}`,
    ariaLabel: `${n.role} ${n.label}`,
    type: n.id === "input" ? "input" : n.id === "output" ? "output" : "default",
  }));
  const edges: Edge[] = graph.edges.map((e) => ({
    id: e.id,
    source: e.source,
    target: e.target,
    label: e.label,
    animated: !e.dashed,
    style: e.dashed ? { strokeDasharray: "5 4" } : undefined,
    markerEnd: { type: MarkerType.ArrowClosed },
  }));
  const summary = graph.edges.map((e) => `${e.source.replace(/^\w+:/, "")} → ${e.target.replace(/^\w+:/, "")}${e.label ? ` (${e.label})` : ""}`);
  return (
    <figure className="pipeline-canvas" aria-label={`Pipeline ${name || "graph"}`}>
      <div className="flow" data-testid="pipeline-canvas">
        <ReactFlow key={graph.nodes.map((n) => n.id).join("|")} defaultNodes={nodes} defaultEdges={edges} fitView
          nodesConnectable={false} proOptions={{ hideAttribution: true }}>
          <Background />
          <Controls showInteractive={false} />
        </ReactFlow>
      </div>
      <figcaption>
        <details>
          <summary>Steps as text</summary>
          <ul>{summary.map((s, i) => <li key={i}>{s}</li>)}</ul>
        </details>
      </figcaption>
    </figure>
  );
}
