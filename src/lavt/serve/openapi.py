"""The OpenAPI description of the HTTP API, true to what the server accepts and returns.

``POST /v1/segment`` reads its body itself (multipart or JSON, checked while
streaming), so FastAPI cannot infer it: the request bodies, the query flag and
every error answer are declared here from the server's own limits
(:class:`ServeConfig`), and :func:`install_openapi` puts them into the
generated schema. ``tests/serve/test_serve_schema.py`` runs schemathesis
against the app with this schema (all checks).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from lavt.serve.auth import is_protected
from lavt.serve.config import ServeConfig
from lavt.serve.inputs import FLAG_WORDS, form_fields_limit

SCHEMES = "#/components/schemas/"
JSON = "application/json"
#: the image types named in the schema; the server reads whatever PIL reads
IMAGE_TYPES = "image/*"

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "type", "message"],
            "properties": {
                "status": {"type": "integer", "description": "the HTTP status again"},
                "type": {"type": "string", "description": "the status phrase, snake_case"},
                "message": {"type": "string", "description": "one line naming the field"},
            },
        }
    },
}

RESULT = {
    "type": "object",
    "required": ["text", "rle", "bbox", "area", "score", "found", "unknown_words"],
    "properties": {
        "text": {"type": "string"},
        "rle": {
            "type": "object",
            "description": "COCO compressed RLE of the (height, width) mask, column-major",
            "required": ["size", "counts"],
            "properties": {
                "size": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "counts": {"type": "string"},
            },
        },
        "bbox": {
            "type": "array",
            "items": {"type": "integer"},
            "minItems": 4,
            "maxItems": 4,
            "description": "[x, y, w, h]",
        },
        "area": {"type": "integer", "minimum": 0},
        "score": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "mean foreground probability over the mask (0 when empty)",
        },
        "found": {"type": "boolean", "description": "false: the text names no object"},
        "no_target_probability": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "from a no-target head, when the model has one",
        },
        "png": {
            "type": "string",
            "contentEncoding": "base64",
            "contentMediaType": "image/png",
            "description": "the mask as an 8-bit PNG, with return_png",
        },
        "unknown_words": {
            "type": "array",
            "items": {"type": "string"},
            "description": "words of the text outside the model's vocabulary (read as [UNK]); "
            "the mask then rests on the other words only",
        },
    },
}

SEGMENT_RESPONSE = {
    "type": "object",
    "required": ["width", "height", "model", "results"],
    "properties": {
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "model": {"type": "string"},
        "results": {"type": "array", "items": {"$ref": SCHEMES + "SegmentResult"}},
    },
}

MODEL_INFO = {
    "type": "object",
    "required": ["name", "checkpoint", "input_size", "vocabulary", "limits"],
    "properties": {
        "name": {"type": "string"},
        "checkpoint": {"type": "string"},
        "input_size": {"type": "array", "items": {"type": "integer"}},
        "vocabulary": {"type": "object"},
        "limits": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}

HEALTH = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "ok"}},
}


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


#: a yes/no field of a query string or a form, as :func:`lavt.serve.inputs.parse_flag` reads it
FLAG = {
    "type": "string",
    "pattern": "^(" + "|".join(_any_case(w) for w in FLAG_WORDS) + ")$",
    "description": "true, false, 1, 0, yes, no, on or off (any case)",
}


#: a character Python's ``str.strip`` keeps (what the server's emptiness check uses); an
#: ECMA ``\S`` would let through \x1c-\x1f and \x85, which Python counts as spaces
NOT_SPACE = (
    "[^\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
)


def _text(config: ServeConfig) -> dict:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": config.max_text_chars,
        "pattern": NOT_SPACE,
        "description": "a referring expression (not only spaces)",
    }


def _texts(config: ServeConfig) -> dict:
    return {
        "type": "array",
        "items": _text(config),
        "minItems": 1,
        "maxItems": config.max_expressions,
    }


def request_body(config: ServeConfig) -> dict:
    """``POST /v1/segment``'s two body forms, with the server's limits."""
    image_help = (
        f"the image file (any format PIL reads; at most {config.max_pixels} pixels, "
        f"the whole body at most {config.max_upload_mb:g} MB)"
    )
    multipart = {
        "type": "object",
        "required": ["image", "text"],
        "properties": {
            "image": {"type": "string", "format": "binary", "description": image_help},
            "text": {
                **_texts(config),
                "description": "one form field per expression (repeat the field); at most "
                f"{form_fields_limit(config)} form fields in all",
            },
            "return_png": FLAG,
        },
    }
    one_or_many = {"oneOf": [_text(config), _texts(config)]}
    json_form = {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {
                "type": "string",
                "format": "byte",
                "minLength": 1,
                "contentEncoding": "base64",
                "contentMediaType": "image/*",
                "description": image_help + ", in base64 (a data: URL too); never a URL",
            },
            "texts": {**one_or_many, "description": "the expressions (or one)"},
            "text": {**one_or_many, "description": "alias of texts"},
            "return_png": {"type": "boolean", "default": False},
        },
        "anyOf": [{"required": ["texts"]}, {"required": ["text"]}],
        "not": {"required": ["texts", "text"]},
    }
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": multipart,
                "encoding": {"image": {"contentType": IMAGE_TYPES}},
            },
            JSON: {"schema": json_form},
        },
    }


def _error(description: str, headers: dict | None = None) -> dict:
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": {"$ref": SCHEMES + "Error"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def segment_responses(config: ServeConfig) -> dict:
    return {
        "200": {
            "description": "one result per expression, in order",
            "content": {JSON: {"schema": {"$ref": SCHEMES + "SegmentResponse"}}},
        },
        "413": _error(f"the body is over {config.max_upload_mb:g} MB (max_upload_mb)"),
        "415": _error("the body is neither multipart nor JSON, or the file is not an image"),
        "422": _error(
            "a field is missing or of the wrong type, too many or too long expressions, "
            "an image too large (max_pixels), truncated or empty"
        ),
        "500": _error("the model failed on this request (the server log says why)"),
        "503": _error(
            f"{config.max_queue} requests wait already (max_queue); retry later",
            {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
        ),
        "504": _error(f"no answer within {config.request_timeout_s:g} s (request_timeout_s)"),
    }


def build_openapi(app: FastAPI, config: ServeConfig) -> dict:
    """FastAPI's schema of ``app``'s routes, completed with what it cannot infer."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description="Referring image segmentation: an image and expressions -> one mask each.",
        routes=app.routes,
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(
        Error=ERROR,
        SegmentResult=RESULT,
        SegmentResponse=SEGMENT_RESPONSE,
        ModelInfo=MODEL_INFO,
        Health=HEALTH,
    )
    paths = schema["paths"]
    segment = paths["/v1/segment"]["post"]
    segment["requestBody"] = request_body(config)
    segment["parameters"] = [
        {
            "name": "return_png",
            "in": "query",
            "required": False,
            "schema": FLAG,
            "description": "add each mask as a PNG (also a body field)",
        },
    ]
    segment["responses"] = segment_responses(config)
    for path, name in (("/healthz", "Health"), ("/v1/model", "ModelInfo")):
        ok = paths[path]["get"]["responses"]["200"]
        ok["content"] = {JSON: {"schema": {"$ref": SCHEMES + name}}}
    paths["/metrics"]["get"]["responses"]["200"] = {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    if config.api_key is not None:
        schema["components"]["securitySchemes"] = {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "lavt serve --api-key"}
        }
        unauthorized = _error(
            "no or a wrong API key",
            {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
        )
        for path, operations in paths.items():
            if is_protected(path, metrics_open=config.metrics_open):
                for operation in operations.values():
                    operation["security"] = [{"apiKey": []}]
                    operation["responses"]["401"] = unauthorized
    return schema


def install_openapi(app: FastAPI, config: ServeConfig) -> None:
    """Serve :func:`build_openapi`'s schema at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, config)
        return app.openapi_schema

    app.openapi = openapi
