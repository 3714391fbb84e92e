"""The API contract in process (tiny model): field types, expression counts, unknown
words, the API key, and the schema's description of the endpoint and /metrics."""

from __future__ import annotations

import base64
import io
import logging
import re

import pytest
from PIL import Image
from tiny_serve import tiny_client

pytestmark = pytest.mark.slow

KEY = "a-long-enough-key-42"
AUTH = {"Authorization": f"Bearer {KEY}"}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png()
B64 = base64.b64encode(PNG).decode()


@pytest.fixture(scope="module")
def client():
    with tiny_client() as client:
        yield client


@pytest.fixture(scope="module")
def locked():
    with tiny_client(api_key=KEY) as client:
        yield client


def error(reply, status: int) -> str:
    assert reply.status_code == status, reply.text
    body = reply.json()["error"]
    assert body["status"] == status
    return body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image": B64, "texts": ["a"], "return_png": "yes"}, "return_png"),
        ({"image": B64, "texts": ["a"], "return_png": 1}, "return_png"),
        ({"image": B64, "texts": "a", "text": "b"}, "texts"),
        ({"image": B64, "text": [["a"]]}, "text"),
        ({"image": B64, "texts": {"a": 1}}, "texts"),
        ({"image": 5, "texts": ["a"]}, "image"),
    ],
)
def test_json_field_of_the_wrong_type_is_a_422_naming_it(client, body, field):
    assert error(client.post("/v1/segment", json=body), 422).startswith(f"{field}:")


def test_flags_in_query_and_form_are_checked(client):
    files = {"image": ("a.png", PNG)}
    message = error(
        client.post("/v1/segment?return_png=maybe", files=files, data={"text": "a"}), 422
    )
    assert message.startswith("return_png: 'maybe'")
    reply = client.post("/v1/segment", files=files, data={"text": "a", "return_png": "nope"})
    assert error(reply, 422).startswith("return_png:")
    reply = client.post("/v1/segment", files=files, data={"text": "a", "return_png": "ON"})
    assert "png" in reply.json()["results"][0]


def test_unknown_query_parameter_is_a_422_naming_it(client):
    """A mistyped flag (?retun_png=true) is refused, not ignored: the schema lists the
    query parameters, and schemathesis' negative cases send others."""
    files = {"image": ("a.png", PNG)}
    reply = client.post("/v1/segment?retun_png=true", files=files, data={"text": "a"})
    assert error(reply, 422) == "query parameter 'retun_png': unknown (accepted: return_png)"
    reply = client.post("/v1/segment?return_png=true", files=files, data={"text": "a"})
    assert reply.status_code == 200 and "png" in reply.json()["results"][0]


@pytest.mark.parametrize("count", [17, 40])
def test_too_many_multipart_texts_same_message_as_json(client, count):
    texts = [f"t{k}" for k in range(count)]
    multipart = client.post("/v1/segment", files={"image": ("a.png", PNG)}, data={"text": texts})
    as_json = client.post("/v1/segment", json={"image": B64, "texts": texts})
    assert (
        error(multipart, 422)
        == error(as_json, 422)
        == f"text: {count} expressions, at most 8 per request"
    )


def test_multipart_field_bound_still_holds(client):
    reply = client.post("/v1/segment", files={"image": ("a.png", PNG)}, data={"x": ["1"] * 1100})
    assert error(reply, 422) == "text: over 1024 expressions, at most 8 per request"


def test_expression_limit_comes_from_max_expressions():
    texts = [f"circle {k}" for k in range(20)]
    with tiny_client(max_expressions=20) as client:
        reply = client.post("/v1/segment", files={"image": ("a.png", PNG)}, data={"text": texts})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["results"]) == 20


def test_unknown_words_per_result(client):
    texts = ["the big red circle", "the zebra-like blorp, left"]
    reply = client.post("/v1/segment", json={"image": B64, "texts": texts})
    results = reply.json()["results"]
    assert results[0]["unknown_words"] == []
    assert results[1]["unknown_words"] == ["zebra", "-", "like", "blorp", ","]


def test_api_key_guards_v1_and_metrics_not_healthz(locked):
    assert locked.get("/healthz").status_code == 200
    assert locked.get("/").status_code == 200
    assert locked.get("/static/app.js").status_code == 200
    for method, path in (("GET", "/v1/model"), ("GET", "/metrics"), ("POST", "/v1/segment"),
                         ("GET", "/v1/nosuch")):  # fmt: skip
        for headers in (
            {},
            {"Authorization": "Bearer wrong-key-000000000"},
            {"Authorization": KEY},
        ):
            reply = locked.request(method, path, headers=headers)
            assert error(reply, 401), (method, path, headers)
            assert reply.headers["www-authenticate"].startswith('Bearer realm="lavt"')
    assert locked.get("/v1/model", headers=AUTH).status_code == 200
    assert locked.get("/metrics", headers={"authorization": f"bearer {KEY}"}).status_code == 200
    reply = locked.post(
        "/v1/segment", headers=AUTH, files={"image": ("a.png", PNG)}, data={"text": "a"}
    )
    assert reply.status_code == 200
    assert KEY not in locked.get("/v1/model", headers=AUTH).text
    assert KEY not in locked.get("/openapi.json").text


def test_metrics_open_flag():
    with tiny_client(api_key=KEY, metrics_open=True) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/v1/model").status_code == 401
        schema = client.get("/openapi.json").json()
    assert "security" not in schema["paths"]["/metrics"]["get"]
    assert schema["paths"]["/v1/model"]["get"]["security"] == [{"apiKey": []}]


def test_key_checks_do_not_echo_the_key():
    from lavt.errors import InputError
    from lavt.serve.config import ServeConfig

    with pytest.raises(InputError) as info:
        ServeConfig(api_key="short key")
    assert "short key" not in str(info.value)
    assert KEY not in repr(ServeConfig(api_key=KEY))


def test_exposed_address_without_key_warns(caplog):
    from lavt.serve.auth import warn_if_exposed

    with caplog.at_level(logging.WARNING, logger="lavt"):
        assert warn_if_exposed("0.0.0.0", None)
        assert not warn_if_exposed("0.0.0.0", KEY)
        assert not warn_if_exposed("127.0.0.1", None)
        assert not warn_if_exposed("localhost", None)
    assert len(caplog.records) == 1 and "without an API key" in caplog.records[0].message


def test_api_key_from_environment(monkeypatch):
    from lavt.commands.serve import api_key

    monkeypatch.setenv("LAVT_API_KEY", KEY)
    assert api_key(None) == KEY
    assert api_key("flag-key-0123456789") == "flag-key-0123456789"
    monkeypatch.setenv("LAVT_API_KEY", "")
    assert api_key(None) is None


def test_schema_describes_the_segment_body_and_metrics(client):
    schema = client.get("/openapi.json").json()
    segment = schema["paths"]["/v1/segment"]["post"]
    content = segment["requestBody"]["content"]
    multipart = content["multipart/form-data"]["schema"]
    assert multipart["required"] == ["image", "text"]
    assert multipart["properties"]["text"]["maxItems"] == 8
    assert multipart["properties"]["text"]["items"]["maxLength"] == 200
    assert content["application/json"]["schema"]["properties"]["return_png"]["type"] == "boolean"
    for status in ("413", "415", "422", "503", "504"):
        ref = segment["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/Error")
    assert "401" not in segment["responses"]  # no key, no 401
    assert "Retry-After" in segment["responses"]["503"]["headers"]
    metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_text_pattern_agrees_with_python_strip():
    from lavt.serve.openapi import NOT_SPACE

    pattern = re.compile(NOT_SPACE)
    for code in range(0x3001):
        assert (pattern.search(chr(code)) is None) == chr(code).isspace(), hex(code)
