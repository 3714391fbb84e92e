"""Fast unit tests of the serve helpers and the command's options (no server)."""

from __future__ import annotations

import argparse
import base64

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from lavt.errors import InputError
from lavt.predict import Prediction
from lavt.predict.encode import encode_prediction
from lavt.serve.config import ServeConfig
from lavt.serve.errors import ApiError
from lavt.serve.inputs import check_texts, decode_base64, decode_image


def test_encode_prediction_rle_bbox_area_score():
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:4, 2:6] = True  # 3 rows x 4 columns
    result = encode_prediction(Prediction("a", mask, 0.8), return_png=True)
    assert result["rle"]["size"] == [5, 7]
    decoded = mask_utils.decode({"size": [5, 7], "counts": result["rle"]["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    assert result["bbox"] == [2, 1, 4, 3]
    assert result["area"] == 12
    assert result["score"] == pytest.approx(0.8)
    assert base64.b64decode(result["png"]).startswith(b"\x89PNG")
    empty = encode_prediction(Prediction("b", np.zeros((5, 7), bool), 0.0))
    assert (empty["area"], empty["score"], empty["bbox"]) == (0, 0.0, [0, 0, 0, 0])


def test_decode_base64_refuses_urls_and_garbage():
    assert decode_base64(base64.b64encode(b"abc").decode()) == b"abc"
    assert decode_base64("data:image/png;base64," + base64.b64encode(b"xy").decode()) == b"xy"
    for bad, words in (("http://x/y.png", "not fetched"), ("file:///etc/passwd", "not fetched"),
                       ("@@@", "base64")):  # fmt: skip
        with pytest.raises(ApiError, match=words) as info:
            decode_base64(bad)
        assert info.value.status == 422


def test_check_texts_limits():
    config = ServeConfig(max_expressions=2, max_text_chars=5)
    check_texts(["ab", "cde"], config)
    for texts, words in (([], "no expression"), (["a", "b", "c"], "at most 2"),
                         (["abcdef"], "at most 5"), ([" "], "empty")):  # fmt: skip
        with pytest.raises(ApiError, match=words):
            check_texts(texts, config)


def test_decode_image_names_the_upload_not_a_temp_path():
    with pytest.raises(ApiError) as info:
        decode_image(b"not an image", "../../secret name.png")
    assert info.value.status == 415
    assert info.value.message.startswith("secret_name.png: not an image")
    assert "/tmp" not in info.value.message


def test_config_rejects_bad_limits():
    with pytest.raises(InputError, match="max_batch"):
        ServeConfig(max_batch=0)
    with pytest.raises(InputError, match="request_timeout_s"):
        ServeConfig(request_timeout_s=0)
    assert ServeConfig(max_upload_mb=1).max_upload_bytes == 1024 * 1024


def test_command_defaults_bind_loopback_without_cors():
    from lavt.commands import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args([])
    assert args.host == "127.0.0.1"
    assert args.cors_origin == []
    assert args.checkpoint is None
    args = parser.parse_args(["--cors-origin", "http://a", "--cors-origin", "http://b"])
    assert args.cors_origin == ["http://a", "http://b"]


def test_command_names_missing_packages(monkeypatch):
    from lavt.commands import serve

    real = serve.importlib.util.find_spec
    monkeypatch.setattr(
        serve.importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name)
    )
    with pytest.raises(InputError, match=r"uvicorn: pip install 'lavt\[serve\]'"):
        serve._check_installed()


def test_cli_rejects_bad_limit_with_flag_name(capsys):
    from lavt.cli import main

    assert main(["serve", "--max-batch", "0"]) != 0
    assert "--max-batch 0: must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--request-timeout", "0"]) != 0
    assert "--request-timeout 0.0: must be positive" in capsys.readouterr().err


def test_cli_port_in_use_is_one_line_before_loading_the_model(capsys):
    import socket

    from lavt.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) != 0
    err = capsys.readouterr().err
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_short_api_key_is_one_line_without_the_key(capsys, monkeypatch):
    from lavt.cli import main

    monkeypatch.delenv("LAVT_API_KEY", raising=False)
    assert main(["serve", "--port", "0", "--api-key", "hunter2"]) != 0
    err = capsys.readouterr().err
    assert "--api-key: 7 characters" in err and "hunter2" not in err
    assert len(err.strip().splitlines()) == 1
