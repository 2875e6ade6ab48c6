import { describe, expect, it } from "vitest";
import { describeProblem, problemRanges } from "./diagnostics";

const text = "kind: RegoPolicy\nspec:\n  rego: |\n    deny contains x if input.tool.name == \n";

describe("problemRanges", () => {
  it("points at the word at a 1-based line and column", () => {
    const [range] = problemRanges(text, [{ line: 4, column: 10, message: "bad" }]);
    expect(text.slice(range.from, range.to)).toBe("contains");
    expect(range.line).toBe(4);
  });

  it("marks the whole line when the column is unknown", () => {
    const [range] = problemRanges(text, [{ line: 2, column: null, message: "m", field: "spec" }]);
    expect(text.slice(range.from, range.to)).toBe("spec:");
    expect(range.message).toBe("spec: m");
  });

  it("marks the first line when nothing is known, and clamps past the end", () => {
    const [none, past] = problemRanges(text, [
      { message: "set-level" },
      { line: 99, column: 500, message: "beyond" },
    ]);
    expect(text.slice(none.from, none.to)).toBe("kind: RegoPolicy");
    expect(past.from).toBeLessThanOrEqual(text.length);
    expect(past.to).toBeLessThanOrEqual(text.length);
  });
});

describe("describeProblem", () => {
  it("says where and what", () => {
    expect(describeProblem({ line: 8, column: 42, field: "spec.rego", message: "Invalid boolean operator" })).toBe(
      "line 8, column 42: spec.rego: Invalid boolean operator",
    );
    expect(describeProblem({ message: "no policies" })).toBe("no policies");
  });
});
