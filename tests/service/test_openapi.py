"""The checked-in OpenAPI document is the one the code generates."""

import json
from pathlib import Path

from service.openapi import render

CHECKED_IN = Path(__file__).resolve().parents[2] / "api_schemas" / "openapi.json"


def test_checked_in_openapi_matches_the_code() -> None:
    generated = render()
    assert CHECKED_IN.exists(), (
        "api_schemas/openapi.json is missing: run `python -m service.openapi > api_schemas/openapi.json`"
    )
    assert json.loads(CHECKED_IN.read_text()) == json.loads(generated), (
        "api_schemas/openapi.json is out of date: run `python -m service.openapi > api_schemas/openapi.json`"
    )
    assert CHECKED_IN.read_text() == generated


def test_document_names_the_contract() -> None:
    doc = json.loads(render())
    paths = doc["paths"]
    for path in ["/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/events",
                 "/v1/assets", "/v1/models", "/healthz", "/readyz", "/metrics"]:  # fmt: skip
        assert path in paths, path
    schemas = doc["components"]["schemas"]
    for name in ["JobRequest", "JobResource", "JobList", "Problem", "Asset", "ModelInfo"]:
        assert name in schemas, name
    assert set(schemas["JobStatus"]["enum"]) == {"queued", "running", "succeeded", "failed", "canceled"}
    submit = paths["/v1/jobs"]["post"]
    assert {"202", "200", "422", "413"} <= set(submit["responses"])
    assert "HTTPValidationError" not in schemas


def test_every_reference_in_the_document_resolves() -> None:
    """A schema written inline in a route (`openapi_extra`) cites its nested models from the components;
    a `$ref` to its own `$defs` would not resolve for clients and fuzzers."""
    document = json.loads(render())
    refs: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    components = set(document["components"]["schemas"])
    assert refs, "the document cites no components at all"
    unresolved = sorted(r for r in refs if not (r.startswith("#/components/schemas/") and r[21:] in components))
    assert unresolved == []
