"""Cut the part of Opik's OpenAPI document that the loopback test server validates against.

Not run by the tests: its output, `openapi-subset.json` beside it, is committed. Run it again
(with the path of a copy of Opik's `openapi.yaml`) when the server validates a new endpoint or
when moving to a newer spec:

    python tests/data/opik/extract_subset.py PATH/TO/openapi.yaml

It keeps the operations listed in ENDPOINTS, every component schema they reach through `$ref`,
and the document's info (title, version, license); it drops the annotations that do not
validate anything (`description`, `summary`, `example`, `examples`). Anything else is copied as
published: the quirks of the spec are handled where it is loaded (tests/fixtures/opik_server.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUTPUT = Path(__file__).resolve().parent / "openapi-subset.json"

# (method, path) of every operation the connector's opik SDK calls reach, plus the ping.
ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("get", "/is-alive/ping"),
    ("post", "/v1/private/spans/batch"),
    ("post", "/v1/private/traces/batch"),
    ("put", "/v1/private/spans/feedback-scores"),
    ("put", "/v1/private/traces/feedback-scores"),
)
ANNOTATIONS = frozenset({"description", "summary", "example", "examples"})
REF_PREFIX = "#/components/schemas/"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Reads the spec's bare `=` enum value (YAML 1.1 `value` tag) as the string "="."""


_Loader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


def strip_annotations(node: Any, *, in_properties: bool = False) -> Any:
    """Drop annotation keys, but never a property that happens to be called `description`."""
    if isinstance(node, dict):
        return {
            key: strip_annotations(value, in_properties=key == "properties" and not in_properties)
            for key, value in node.items()
            if in_properties or key not in ANNOTATIONS
        }
    if isinstance(node, list):
        return [strip_annotations(value) for value in node]
    return node


def referenced_schemas(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix(REF_PREFIX)} if "$ref" in node else set()
        return found.union(*(referenced_schemas(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(referenced_schemas(v) for v in node))
    return set()


def extract(document: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in ENDPOINTS:
        paths.setdefault(path, {})[method] = strip_annotations(document["paths"][path][method])
    schemas = document["components"]["schemas"]
    keep: set[str] = set()
    pending = referenced_schemas(paths)
    while pending:
        name = pending.pop()
        if name not in keep:
            keep.add(name)
            pending |= referenced_schemas(schemas[name])
    info = document["info"]
    return {
        "openapi": document["openapi"],
        "info": {"title": info["title"], "version": info["version"], "license": info["license"]},
        "paths": paths,
        "components": {"schemas": {n: strip_annotations(schemas[n]) for n in sorted(keep)}},
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        document = yaml.load(fh, Loader=_Loader)
    OUTPUT.write_text(json.dumps(extract(document), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
