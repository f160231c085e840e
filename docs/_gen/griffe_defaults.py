"""Griffe extension: estimator parameters show the defaults of their signature.

The estimators' numpydoc entries sometimes document several parameters at once
(``d_model, n_heads, d_ff, e_layers : int, default=64, 4, 64, 1``). Rendered as
they are, every one of them would show "64, 4, 64, 1" as its default. This
extension splits such entries into one per name and drops the ``default=`` text
from every entry of a "Parameters" section, so the table takes each default from
the signature, which is the truth.
"""
from __future__ import annotations

import re

import griffe

ENTRY = re.compile(r"^(?P<indent>\s*)(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*:\s*(?P<type>.*?)\s*$")
DEFAULT = re.compile(r",?\s*default\s*[=:]?\s*.*$")


def rewrite(doc: str) -> str:
    lines, out, in_params, entry_indent = doc.splitlines(), [], False, None
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if set(nxt.strip()) == {"-"} and line.strip():              # a section header
            in_params = line.strip() == "Parameters"
            entry_indent = None
            out.append(line)
            continue
        m = ENTRY.match(line) if in_params and line.strip() and not set(line.strip()) == {"-"} else None
        indent = len(line) - len(line.lstrip())
        if m and (entry_indent is None or indent == entry_indent):
            entry_indent = indent
            kind = DEFAULT.sub("", m["type"]).strip().rstrip(",")
            names = [n.strip() for n in m["names"].split(",")]
            body = []
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                if not lines[j].strip() and j + 1 < len(lines) and \
                        len(lines[j + 1]) - len(lines[j + 1].lstrip()) <= indent:
                    break
                body.append(lines[j])
                j += 1
            for k, name in enumerate(names):
                out.append(f"{m['indent']}{name} : {kind}" if kind else f"{m['indent']}{name}")
                if k < len(names) - 1:
                    out.extend(body)
            continue
        out.append(line)
    return "\n".join(out)


class SignatureDefaults(griffe.Extension):
    def on_class_instance(self, *, cls: griffe.Class, **kwargs) -> None:
        if cls.docstring and cls.path.startswith("tsformers") and "Parameters" in cls.docstring.value:
            cls.docstring.value = rewrite(cls.docstring.value)

    def on_function_instance(self, *, func: griffe.Function, **kwargs) -> None:
        if func.docstring and func.path.startswith("tsformers") and "Parameters" in func.docstring.value:
            func.docstring.value = rewrite(func.docstring.value)
