"""The published OpenAPI schema is true: schemathesis, every check, against the app itself.

The app runs in process (ASGI) with a tiny model and an API key, so that the
security scheme and its 401 are exercised too. Seeded and bounded
(``derandomize``, ``max_examples``), so a failure reproduces and the run stays
well under a minute. A schema cannot say "bytes PIL can decode": the image
fields get a strategy of real PNG/JPEG files (schemathesis' hooks for a
media type and a string format); every other value comes from the schema.
"""

from __future__ import annotations

import base64
import io

import pytest

pytest_plugins = ["serve_helpers"]
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402
from schemathesis.specs.openapi.checks import negative_data_rejection  # noqa: E402
from serve_helpers import tiny_adapter  # noqa: E402

from lavt.serve.app import create_app  # noqa: E402
from lavt.serve.config import ServeConfig  # noqa: E402

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
# The coverage phase draws its boundary values without the format strategies above
# (an image of b" ", text "" in a multipart body that the schema says is a non-empty
# list): examples, fuzzing and stateful phases, every check.
SETTINGS = schemathesis.config.SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"enabled": False}}}
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=SETTINGS)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case):
    excluded = []
    if case.media_type == "multipart/form-data" and case.meta.generation.mode.is_negative:
        # a form field has no type on the wire: a "wrong-typed" text ({} or 1) arrives as the
        # string "{}" or "1", a valid expression (the multipart refusals are tested by hand)
        excluded.append(negative_data_rejection)
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=excluded)
