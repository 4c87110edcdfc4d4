"""The OpenAPI 3.1 document of the gateway's surface, served at /openapi.json.

It names this deployment's models and data classes (from the configuration)
so a client, and the fuzzer in the tests, sees what the gateway accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_ERROR_STATUSES = {
    "400": "The request is malformed or over a limit (the message names it).",
    "401": "No valid identity: missing, expired or forged bearer token.",
    "403": "The routing policy or the tool allowlist does not admit the request.",
    "404": "Unknown model.",
    "413": "The request body is over the size limit.",
    "429": "A quota is spent; Retry-After says when to come back.",
    "502": "The model backend failed.",
    "503": "The audit log or the quota store is unavailable; nothing was served.",
    "504": "The model backend did not answer in time.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: str) -> dict[str, Any]:
    return {
        code: {
            "description": _ERROR_STATUSES[code],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        for code in codes
    }


def _schemas(models: Sequence[str]) -> dict[str, Any]:
    model: dict[str, object] = {"type": "string", "description": "A model from GET /v1/models."}
    if models:
        model["enum"] = list(models)
    usage = {
        "type": "object",
        "properties": {
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
        },
    }
    content_part = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
    }
    tokens_limit = {"type": "integer", "minimum": 1}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "ChatMessage": {
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": {
                    "type": "string",
                    "enum": ["system", "developer", "user", "assistant", "tool"],
                },
                "content": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": content_part},
                        {"type": "null"},
                    ]
                },
                "name": {"type": "string"},
                "tool_call_id": {"type": "string"},
                "tool_calls": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Tool": {
            "type": "object",
            "required": ["type", "function"],
            "properties": {
                "type": {"type": "string", "enum": ["function"]},
                "function": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "parameters": {"type": "object"},
                    },
                },
            },
        },
        "StreamOptions": {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean"}},
        },
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": {
                "model": model,
                "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
                "max_tokens": tokens_limit,
                "max_completion_tokens": tokens_limit,
                "n": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "stop": {
                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                },
                "stream": {"type": "boolean"},
                "stream_options": _ref("StreamOptions"),
                "tools": {"type": "array", "items": _ref("Tool")},
                "tool_choice": {"anyOf": [{"type": "string"}, {"type": "object"}]},
                "user": {"type": "string"},
            },
        },
        "CompletionRequest": {
            "type": "object",
            "required": ["model", "prompt"],
            "properties": {
                "model": model,
                "prompt": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "string"}},
                        {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    ]
                },
                "max_tokens": tokens_limit,
                "n": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "stream": {"type": "boolean"},
                "stream_options": _ref("StreamOptions"),
                "user": {"type": "string"},
            },
        },
        "EmbeddingRequest": {
            "type": "object",
            "required": ["model", "input"],
            "properties": {
                "model": model,
                "input": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "string"}},
                    ]
                },
                "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                "user": {"type": "string"},
            },
        },
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"type": "string"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object"}},
                "usage": usage,
            },
        },
        "Completion": {
            "type": "object",
            "required": ["id", "object", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object"}},
                "usage": usage,
            },
        },
        "EmbeddingList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"type": "string"},
                "data": {"type": "array", "items": {"type": "object"}},
                "model": {"type": "string"},
                "usage": usage,
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "object"],
                        "properties": {
                            "id": {"type": "string"},
                            "object": {"type": "string"},
                            "owned_by": {"type": "string"},
                        },
                    },
                },
            },
        },
    }


def _inference(summary: str, request: str, response: str, stream: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(response)}}
    if stream:
        content["text/event-stream"] = {
            "schema": {
                "type": "string",
                "description": "Server-sent events, as the backend sends them.",
            }
        }
    return {
        "post": {
            "summary": summary,
            "parameters": [{"$ref": "#/components/parameters/DataClass"}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(request)}},
            },
            "responses": {
                "200": {"description": "The backend's answer.", "content": content},
                **_errors("400", "401", "403", "404", "413", "429", "502", "503", "504"),
            },
        }
    }


def build_openapi(models: Sequence[str], data_classes: Sequence[str]) -> dict[str, Any]:
    data_class: dict[str, Any] = {"type": "string"}
    if data_classes:
        data_class["enum"] = list(data_classes)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sovereign inference gateway",
            "version": "1",
            "description": "OpenAI-compatible inference: identity, quotas, routing, audit.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/chat/completions": _inference(
                "Chat completion", "ChatCompletionRequest", "ChatCompletion", True
            ),
            "/v1/completions": _inference("Completion", "CompletionRequest", "Completion", True),
            "/v1/embeddings": _inference("Embeddings", "EmbeddingRequest", "EmbeddingList", False),
            "/v1/models": {
                "get": {
                    "summary": "Models the caller may use",
                    "responses": {
                        "200": {
                            "description": "The models.",
                            "content": {"application/json": {"schema": _ref("ModelList")}},
                        },
                        **_errors("401", "503"),
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(models),
            "parameters": {
                "DataClass": {
                    "name": "X-Sovereign-Data-Class",
                    "in": "header",
                    "required": False,
                    "description": (
                        "The data class of the request's content; members of the restricted "
                        "groups must send it. Absent: 'unclassified'."
                    ),
                    "schema": data_class,
                }
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An OIDC access token from the organisation's IdP.",
                }
            },
        },
    }
