#!/usr/bin/env python3
"""Writes each Terraform module's input and output tables into its README, from its variables.tf
and outputs.tf: the same job as terraform-docs, small enough to need no download.

    scripts/terraform_docs.py          rewrite the tables
    scripts/terraform_docs.py --check  exit 1 if a README is out of date

Needs python-hcl2 (in the test venv: ~/.cache/bucket-relay/venv/bin/python). The tables sit
between `<!-- BEGIN terraform_docs -->` and `<!-- END terraform_docs -->`; tests/test_terraform.py
checks they match.
"""

import json
import sys
from pathlib import Path

import hcl2
from hcl2 import SerializationOptions

MODULES = Path(__file__).resolve().parent.parent / "terraform" / "modules"
BEGIN = "<!-- BEGIN terraform_docs -->"
END = "<!-- END terraform_docs -->"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


def blocks(module, kind):
    """The module's `kind` blocks (variable / output) by name, in file order."""
    found = {}
    for path in sorted(module.glob("*.tf")):
        for block in hcl2.loads(path.read_text(), serialization_options=OPTIONS).get(kind, []):
            found.update(block)
    return found


def hcl_type(text):
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text


def default(variable):
    if "default" not in variable:
        return "required"
    value = variable["default"]
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def tables(module):
    """The markdown between the markers."""
    lines = ["## Inputs", "", "| name | description | type | default |", "|---|---|---|---|"]
    for name, variable in blocks(module, "variable").items():
        lines.append(f"| `{name}` | {cell(variable.get('description', ''))} | "
                     f"`{hcl_type(variable.get('type', 'any'))}` | {default(variable)} |")
    lines += ["", "## Outputs", "", "| name | description |", "|---|---|"]
    for name, output in blocks(module, "output").items():
        lines.append(f"| `{name}` | {cell(output.get('description', ''))} |")
    return "\n".join(lines) + "\n"


def rewritten(readme_text, module):
    """The README with its tables replaced; ValueError if it has no markers."""
    start, end = readme_text.index(BEGIN) + len(BEGIN), readme_text.index(END)
    return readme_text[:start] + "\n" + tables(module) + readme_text[end:]


def main(check):
    stale = []
    for module in sorted(p for p in MODULES.iterdir() if p.is_dir()):
        readme = module / "README.md"
        text = readme.read_text()
        new = rewritten(text, module)
        if new != text:
            stale.append(readme)
            if not check:
                readme.write_text(new)
    for readme in stale:
        print(f"{'out of date' if check else 'rewrote'}: {readme}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
