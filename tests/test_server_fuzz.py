"""The HTTP API fuzzed from its own OpenAPI spec (schemathesis): valid and invalid requests of every
operation, on a scripted backend. No request may get a 5xx or hang; every error is in OpenAI's shape; every
response conforms to the spec. Derandomized, so every run sends the same requests."""

from __future__ import annotations

import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from scripted_backend import ScriptedBackend

from cepo.methods import METHODS
from cepo.server.app import create_app

# Answers for what a fuzzed request may reach: a plan, an execution, a final answer, a rating.
BACKEND = ScriptedBackend([("(?i)rate it", "Rating: 7")], default="Answer: 3")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(BACKEND))
ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.mark.timeout(120)  # a request that hangs fails the test instead of stalling the suite
@schema.parametrize()
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_get_no_server_error_and_errors_in_the_openai_shape(case: schemathesis.Case) -> None:
    response = case.call()
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == ERROR_FIELDS and error["message"] and error["type"]
        assert not re.search('Traceback|File "', error["message"])


def test_the_spec_resolves_every_reference_and_lists_the_methods_as_models() -> None:
    spec = create_app(BACKEND).openapi()

    references = re.findall(r'"\$ref": "([^"]*)"', json.dumps(spec))
    assert "#/components/schemas/ChatCompletionRequest" in references
    defined = {f"#/components/schemas/{name}" for name in spec["components"]["schemas"]}
    assert set(references) <= defined
    request = spec["components"]["schemas"]["ChatCompletionRequest"]
    assert request["properties"]["model"]["enum"] == list(METHODS)
