// CodeMirror 6 with YAML or JSON highlighting and diagnostics pushed in from outside.
import { useEffect, useRef } from "react";
import { basicSetup } from "codemirror";
import { EditorState, Compartment } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { indentWithTab } from "@codemirror/commands";
import { yaml } from "@codemirror/lang-yaml";
import { json } from "@codemirror/lang-json";
import { lintGutter, setDiagnostics, type Diagnostic } from "@codemirror/lint";
import type { TextRange } from "../lib/diagnostics";

export interface CodeEditorHandle {
  focusAt(offset: number): void;
}

export function CodeEditor({
  value,
  onChange,
  language,
  label,
  problems = [],
  minHeight = "18rem",
  readOnly = false,
  handle,
}: {
  value: string;
  onChange?(value: string): void;
  language: "yaml" | "json";
  label: string;
  problems?: TextRange[];
  minHeight?: string;
  readOnly?: boolean;
  handle?: React.MutableRefObject<CodeEditorHandle | null>;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;
  const readOnlyCompartment = useRef(new Compartment());

  useEffect(() => {
    const editor = new EditorView({
      parent: host.current!,
      state: EditorState.create({
        doc: value,
        extensions: [
          basicSetup,
          // Tab indents; Escape then Tab leaves the editor (CodeMirror's accessible default).
          keymap.of([indentWithTab]),
          language === "yaml" ? yaml() : json(),
          lintGutter(),
          readOnlyCompartment.current.of(EditorState.readOnly.of(readOnly)),
          EditorView.contentAttributes.of({ "aria-label": label }),
          EditorView.theme({ "&": { minHeight }, ".cm-scroller": { minHeight } }),
          EditorView.updateListener.of((update) => {
            if (update.docChanged) onChangeRef.current?.(update.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = editor;
    if (handle) {
      handle.current = {
        focusAt(offset) {
          editor.dispatch({ selection: { anchor: Math.min(offset, editor.state.doc.length) }, scrollIntoView: true });
          editor.focus();
        },
      };
    }
    return () => {
      editor.destroy();
      view.current = null;
    };
    // The editor is created once; value and problems are synced by the effects below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [language]);

  useEffect(() => {
    const editor = view.current;
    if (editor && editor.state.doc.toString() !== value) {
      editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: value } });
    }
  }, [value]);

  useEffect(() => {
    view.current?.dispatch({
      effects: readOnlyCompartment.current.reconfigure(EditorState.readOnly.of(readOnly)),
    });
  }, [readOnly]);

  useEffect(() => {
    const editor = view.current;
    if (!editor) return;
    const length = editor.state.doc.length;
    const diagnostics: Diagnostic[] = problems.map((p) => ({
      from: Math.min(p.from, length),
      to: Math.min(p.to, length),
      severity: "error",
      message: p.message,
    }));
    editor.dispatch(setDiagnostics(editor.state, diagnostics));
  }, [problems, value]);

  return <div className="code-editor" ref={host} />;
}
