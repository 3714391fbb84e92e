"""An ``--output`` folder that cannot be created is one line before any work, never a
traceback from the first write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from lavt.cli import main
from lavt.evaluation.outputs import check_output_dir

pytestmark = pytest.mark.skipif(
    not Path("/proc/self").is_dir(), reason="needs /proc (a folder where nothing can be created)"
)


@pytest.mark.parametrize("output", ["/proc/nope", "/proc/nope/deeper"])
def test_predict_output_that_cannot_be_created_is_one_line(output, tmp_path, capsys):
    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    code = main(["predict", "--image", str(image), "--text", "the red square", "--output", output])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--output {output}: cannot create a folder in /proc" in err


def test_the_check_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_output_dir(target) == target
    assert os.listdir(tmp_path) == []  # probed, not created
