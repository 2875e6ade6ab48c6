// Splits a unified diff into lines classed for display.
export type DiffLineKind = "add" | "remove" | "hunk" | "header" | "context";

export function classifyDiff(diff: string): { kind: DiffLineKind; text: string }[] {
  const lines = diff.split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  return lines.map((text) => {
    if (text.startsWith("+++") || text.startsWith("---")) return { kind: "header", text };
    if (text.startsWith("@@")) return { kind: "hunk", text };
    if (text.startsWith("+")) return { kind: "add", text };
    if (text.startsWith("-")) return { kind: "remove", text };
    return { kind: "context", text };
  });
}
