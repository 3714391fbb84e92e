"""The published OpenAPI schema is true: schemathesis, every check, against the app itself.

The app runs in process (ASGI) with a tiny model and an API key, so that the
security scheme and its 401 are exercised too. Seeded and bounded
(``derandomize``, ``max_examples``), so a failure reproduces and the run stays
well under a minute. A schema cannot say "bytes PIL can decode": the image
fields get a strategy of real PNG/JPEG files (schemathesis' hooks for a
media type and a string format); every other value comes from the schema.
All phases (examples, coverage, fuzzing, stateful) run: about 400 cases.
"""

from __future__ import annotations

import base64
import io
import os

import pytest

if os.environ.get("CI") == "true":  # CI installs it (the dev extra): never skip there
    import schemathesis
else:
    schemathesis = pytest.importorskip("schemathesis")

import jsonschema_rs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)
from tiny_serve import tiny_adapter

from lavt.serve.app import create_app
from lavt.serve.config import ServeConfig

KEY = "test-key-0123456789"
CONFIG = ServeConfig(max_expressions=3, max_text_chars=40, max_upload_mb=1, api_key=KEY)


def encoded(size: tuple[int, int], colour: tuple[int, int, int], kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=kind)
    return buffer.getvalue()


IMAGES = st.builds(
    encoded,
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    st.tuples(*[st.integers(0, 255)] * 3),
    st.sampled_from(["PNG", "JPEG"]),
)
schemathesis.openapi.media_type("image/png", IMAGES)
schemathesis.openapi.format("byte", IMAGES.map(lambda data: base64.b64encode(data).decode()))

APP = create_app(tiny_adapter(), CONFIG)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
MULTIPART = jsonschema_rs.Draft202012Validator(
    APP.openapi()["paths"]["/v1/segment"]["post"]["requestBody"]["content"]["multipart/form-data"][
        "schema"
    ]
)


def generator_slip(case) -> bool:
    """A "positive" multipart body that its own schema refuses: schemathesis' coverage
    phase sends ``text=""`` where the schema asks for a list of non-empty strings."""
    if case.media_type != "multipart/form-data" or not case.meta.generation.mode.is_positive:
        return False
    body = {name: "file" if name == "image" else value for name, value in case.body.items()}
    return not MULTIPART.is_valid(body)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case):
    excluded = [positive_data_acceptance] if generator_slip(case) else []
    if case.media_type == "multipart/form-data" and case.meta.generation.mode.is_negative:
        # a form field has no type on the wire: a "wrong-typed" text ({} or 1) arrives as the
        # string "{}" or "1", a valid expression (the multipart refusals are tested by hand)
        excluded.append(negative_data_rejection)
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=excluded)
