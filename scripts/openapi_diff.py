"""What an OpenAPI document documents that another one no longer does.

    python scripts/openapi_diff.py BEFORE.json AFTER.json     # exit 1 if anything is lost

Used when the document's source moves (issue 10: from hand-written tables to the routes'
models and dependencies): every operation, status, media type, header, parameter,
security requirement, example (by name and value), problem code and schema property of
BEFORE must still be in AFTER. Added items are listed too, for the reviewer. Schemas are
compared by what they say (properties, required fields, types, patterns, enums), after
following `$ref`s, so a schema that moved to a model under another name still counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_SAYS = ("type", "pattern", "enum", "const", "format", "minimum", "maximum", "minLength",
         "maxLength", "minItems")


def _resolve(doc: dict[str, Any], node: Any, depth: int = 0) -> Any:
    while isinstance(node, dict) and "$ref" in node and depth < 50:
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node, depth = target, depth + 1
    return node


def _schema_facts(
    doc: dict[str, Any], node: Any, where: str, out: set[str], depth: int = 0
) -> None:
    node = _resolve(doc, node)
    if not isinstance(node, dict) or depth > 12:
        return
    for key in _SAYS:
        if key in node:
            value = node[key]
            if key == "type" and isinstance(value, list):  # ["object", "null"] = anyOf
                for v in value:
                    out.add(f"{where} type={json.dumps(v)}")
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # pydantic writes `ge=1` as 1.0
            out.add(f"{where} {key}={json.dumps(value, sort_keys=True)}")
    for alt in node.get("anyOf", []) + node.get("oneOf", []):
        _schema_facts(doc, alt, where, out, depth + 1)
    for name in node.get("required", []):
        out.add(f"{where} required:{name}")
    for name, prop in node.get("properties", {}).items():
        out.add(f"{where} property:{name}")
        _schema_facts(doc, prop, f"{where}.{name}", out, depth + 1)
    if "items" in node:
        _schema_facts(doc, node["items"], f"{where}[]", out, depth + 1)


def facts(doc: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for name, scheme in doc.get("components", {}).get("securitySchemes", {}).items():
        out.add(f"securityScheme {name} {scheme.get('in')}:{scheme.get('name')}")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            at = f"{method.upper()} {path}"
            out.add(at)
            for req in op.get("security", []):
                out.add(f"{at} security {sorted(req)}")
            for param in op.get("parameters", []):
                p = f"{at} param {param['in']}:{param['name']}"
                out.add(p + (" required" if param.get("required") else ""))
                if "example" in param or param.get("examples"):
                    out.add(p + " example")
                _schema_facts(doc, param.get("schema"), p, out)
            body = op.get("requestBody", {})
            for media_type, media in body.get("content", {}).items():
                b = f"{at} body {media_type}"
                out.add(b)
                if "example" in media:
                    out.add(f"{b} example={json.dumps(media['example'], sort_keys=True)}")
                for ex, example in media.get("examples", {}).items():
                    out.add(f"{b} example {ex}={json.dumps(example, sort_keys=True)}")
                _schema_facts(doc, media.get("schema"), b, out)
            for status, response in op.get("responses", {}).items():
                r = f"{at} {status}"
                out.add(r)
                for header in response.get("headers", {}):
                    out.add(f"{r} header {header}")
                for media_type, media in (response.get("content") or {}).items():
                    m = f"{r} {media_type}"
                    out.add(m)
                    if "example" in media:
                        out.add(f"{m} example={json.dumps(media['example'], sort_keys=True)}")
                    for ex, example in media.get("examples", {}).items():
                        out.add(f"{m} example {ex}={json.dumps(example, sort_keys=True)}")
                    _schema_facts(doc, media.get("schema"), m, out)
    return out


def main(argv: list[str]) -> int:
    before = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    after = json.loads(Path(argv[2]).read_text(encoding="utf-8"))
    old, new = facts(before), facts(after)
    lost, added = sorted(old - new), sorted(new - old)
    for line in added:
        print("+", line[:300])
    for line in lost:
        print("-", line[:300])
    print(f"{len(old)} facts before, {len(new)} after: {len(lost)} lost, {len(added)} added")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
