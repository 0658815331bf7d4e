"""Item 6: schemathesis generates requests from the API's own OpenAPI document and sends them to the
real API (uvicorn, Redis, local storage): no answer may be a 5xx, and every answer must match the
document (status code declared, content type, body schema)."""

import math
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.conftest import auth, full_or, record_figures  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_generated_requests_get_no_5xx_and_answers_match_the_schema(stack_factory):
    target = full_or(1000, 150)
    stack = stack_factory()
    stack.start_api()
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    per_operation: Counter[str] = Counter()
    failures: list[dict[str, str]] = []

    def exercise(operation, examples: int) -> None:  # type: ignore[no-untyped-def]
        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=stack.url, headers=auth(), timeout=15, allow_redirects=False)
            statuses[response.status_code] += 1
            per_operation[operation.label] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:
                failures.append(
                    {
                        "operation": operation.label,
                        "status": str(response.status_code),
                        "request": f"{case.method} {case.formatted_path} body={str(case.body)[:200]}",
                        "failure": str(exc)[:600],
                    }
                )

        run()

    rounds = 0
    while sum(statuses.values()) < target and rounds < 10:
        rounds += 1
        examples = math.ceil((target - sum(statuses.values())) / len(operations)) + 5
        for operation in operations:
            exercise(operation, examples)
    total = sum(statuses.values())
    record_figures(
        "fuzz",
        {
            "generated_requests": total,
            "operations": len(operations),
            "requests_per_operation": dict(per_operation),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "responses_5xx": sum(v for k, v in statuses.items() if k >= 500),
            "schema_violations": len(failures),
            "checks": [c.__name__ for c in CHECKS],
            "failures": failures[:20],
        },
    )
    assert total >= target
    assert not failures, failures[:5]
