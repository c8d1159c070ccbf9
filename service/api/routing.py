"""`DocumentedRoute`: the route class of every router, so each operation's error answers in
the OpenAPI document come from service/api/answers.py, declared on the route itself.

    router = APIRouter(route_class=DocumentedRoute)     # (SignedRoute is one too)

After FastAPI builds the route, its `responses` get one entry per error status the route
can answer (`answers.problem_responses`): the route's own entry for that status keeps its
headers and other media types, the description and the `application/problem+json` body
are the table's. Declaring 422 also keeps FastAPI from adding its generic validation body.
What the route validates (parameters, a body, or a body it reads itself and describes in
`openapi_extra`) decides whether `validation_error` and the JSON-body codes apply.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import params
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute

from service.api import answers

JSON = "application/json"


class DocumentedRoute(APIRoute):
    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if not self.include_in_schema:
            return
        self.responses = copy.deepcopy(self.responses)  # entries may be shared by routes
        extra_body = (self.openapi_extra or {}).get("requestBody", {}).get("content", {})
        body_field = self.body_field
        form = body_field is not None and isinstance(body_field.field_info, params.Form)
        validated = bool(get_flat_params(self.dependant)) or body_field is not None
        json_body = (body_field is not None and not form) or JSON in extra_body
        for method in sorted(self.methods or ()):
            declared = answers.problem_responses(
                method, self.path_format, validated=validated or bool(extra_body),
                json_body=json_body,
            )
            _merge(self.responses, declared)


def _merge(responses: dict[int | str, Any], declared: dict[str, dict[str, Any]]) -> None:
    by_text = {str(status): status for status in responses}
    for status, entry in declared.items():
        key = by_text.get(status, status)  # keep the route's own key: FastAPI finds its
        own = responses.setdefault(key, {})  # `model` by that key
        own["description"] = entry["description"]
        own.setdefault("content", {}).update(copy.deepcopy(entry["content"]))
        if "headers" in entry:
            own.setdefault("headers", {}).update(copy.deepcopy(entry["headers"]))
