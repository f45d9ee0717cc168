"""The OpenAPI schema as the server answers: every operation lists the error responses it can give, not only
its success, so a client generated from it (or a schema fuzzer checking conformance) meets no undocumented
status code or body.

The rules follow DRF's own behaviour: a view with authenticators can answer 401 (no, a wrong or an expired
token) and, with session auth, 403 (a browser request without its CSRF token); a path with an id, or a page
past the last, 404; an unsafe method 400 (the services refuse input or a state, ``errors.py``), and 415 when it
reads a body (413 past the upload limit); a list with filters 400 for a value no filter takes; a throttled view
429. An operation's own ``@extend_schema(responses=...)`` wins over these defaults.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


class ErrorSerializer(serializers.Serializer):
    """What went wrong, in one sentence."""

    detail = serializers.CharField()


class FieldErrorsSerializer(serializers.Serializer):
    """Refused input: each offending field (``non_field_errors`` for the request as a whole, ``detail`` for a
    body that does not parse) with its messages."""


class FieldErrorsExtension(OpenApiSerializerExtension):
    """A map from field name to messages has no fixed fields, so it is written out as JSON Schema."""

    target_class = FieldErrorsSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "description": FieldErrorsSerializer.__doc__.replace("\n   ", ""),
            "additionalProperties": {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
        }


class AutoSchema(SpectacularAutoSchema):
    def _error_responses(self) -> dict[str, tuple[str, type[serializers.Serializer]]]:
        view, errors = self.view, {}
        authenticators = view.get_authenticators()
        if authenticators:
            errors["401"] = ("not authenticated: no token, or a wrong or expired one", ErrorSerializer)
        if any(isinstance(a, SessionAuthentication) for a in authenticators) and self.method in UNSAFE:
            errors["403"] = ("a session (browser) request without its CSRF token", ErrorSerializer)
        listed = self._is_list_view() and self._get_paginator() is not None
        if "{" in self.path or listed:
            errors["404"] = ("no such object of yours" if "{" in self.path else "no such page", ErrorSerializer)
        if self.method in UNSAFE:
            errors["400"] = ("refused: the request, or the object's state, does not allow it", FieldErrorsSerializer)
        elif listed and getattr(view, "filterset_class", None) is not None:
            errors["400"] = ("a filter value that is not one of its choices", FieldErrorsSerializer)
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            errors["413"] = ("a body over the upload limit, refused unread (automl_site/asgi.py)", ErrorSerializer)
            errors["415"] = ("a body in a media type the operation does not read", ErrorSerializer)
        if view.get_throttles():
            errors["429"] = ("too many requests: try again after Retry-After seconds", ErrorSerializer)
        return errors

    def _get_paginator(self) -> Any:
        # Only GET lists page; a POST that answers with several rows (an FPGA report import) answers an array.
        return super()._get_paginator() if self.method == "GET" else None

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code, (description, serializer) in self._error_responses().items():
            if code not in responses:
                response = self._get_response_for_code(serializer, code, ["application/json"], direction)
                responses[code] = {**response, "description": description}
        return responses
