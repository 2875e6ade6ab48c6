// Maps the API's policy problems (1-based line/column) onto character ranges of the text.
import type { PolicyProblem } from "../api/types";

export interface TextRange {
  from: number;
  to: number;
  message: string;
  line: number | null;
  column: number | null;
}

export function describeProblem(problem: PolicyProblem): string {
  const where: string[] = [];
  if (problem.line) where.push(`line ${problem.line}`);
  if (problem.line && problem.column) where.push(`column ${problem.column}`);
  const prefix = where.length ? `${where.join(", ")}: ` : "";
  const field = problem.field ? `${problem.field}: ` : "";
  return `${prefix}${field}${problem.message}`;
}

/** Character ranges for problems: the word at line/column, the whole line, or the first line. */
export function problemRanges(text: string, problems: PolicyProblem[]): TextRange[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") starts.push(i + 1);
  const lineEnd = (index: number) => (index + 1 < starts.length ? starts[index + 1] - 1 : text.length);
  return problems.map((problem) => {
    const line = problem.line && problem.line >= 1 ? Math.min(problem.line, starts.length) : null;
    const index = (line ?? 1) - 1;
    const start = starts[index];
    const end = lineEnd(index);
    const message = problem.field ? `${problem.field}: ${problem.message}` : problem.message;
    const column = line && problem.column && problem.column >= 1 ? problem.column : null;
    if (column === null) return { from: start, to: end, message, line, column };
    const from = Math.min(start + column - 1, end);
    let to = from;
    while (to < end && /[^\s]/.test(text[to])) to++;
    if (to === from) to = Math.min(from + 1, text.length);
    return { from, to: Math.max(to, from), message, line, column };
  });
}
