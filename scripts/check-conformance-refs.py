#!/usr/bin/env python3
"""Checks that every file and test named in docs/CONFORMANCE.md exists.

A backticked `path/to/file.rs::name` must name a file holding `fn name`; a backticked path
must exist; a backticked identifier right after a path in the same cell must be defined in
that file (fn, struct, enum, trait, type or const). Other cells are not checked (the older
rows name tests as `crate module::tests::name`). Pure python3, no arguments, exit 1 on error.
"""
import functools
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "CONFORMANCE.md")
PATH = re.compile(r"^[\w.-]+(/[\w.-]+)+/?$")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)?$")


@functools.lru_cache(maxsize=None)
def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def defines(text, name):
    name = name.split("::")[-1]
    return re.search(
        r"\b(fn|struct|enum|trait|type|const|mod)\s+" + re.escape(name) + r"\b", text
    )


def main():
    errors = []
    for n, line in enumerate(open(DOC, encoding="utf-8"), 1):
        if not line.startswith("|"):
            continue
        for cell in line.split("|"):
            current = None
            for tok in re.findall(r"`([^`]+)`", cell):
                if "::" in tok and PATH.match(tok.split("::")[0]):
                    path, test = tok.split("::", 1)
                    if not os.path.exists(os.path.join(ROOT, path)):
                        errors.append(f"{n}: no file {path}")
                    elif not re.search(r"\bfn\s+" + re.escape(test) + r"\b", read(path)):
                        errors.append(f"{n}: no fn {test} in {path}")
                    current = None
                elif PATH.match(tok):
                    if not os.path.exists(os.path.join(ROOT, tok)):
                        errors.append(f"{n}: no file {tok}")
                        current = None
                    else:
                        current = tok if os.path.isfile(os.path.join(ROOT, tok)) else None
                elif current and IDENT.match(tok):
                    if not defines(read(current), tok):
                        errors.append(f"{n}: {tok} is not defined in {current}")
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
