"""`archlab explain`: a page from the command line, and one clear line (exit 2) for any input the model
cannot take."""

from __future__ import annotations

import pytest

from archlab.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


def _png(path, width, height, mode="L"):
    from PIL import Image

    Image.new(mode, (width, height), 128).save(path)
    return str(path)


def test_a_page_from_the_command_line(tiny_run, tmp_path, capsys):
    out = tmp_path / "lenet.html"
    image = _png(tmp_path / "digit.png", 8, 8)
    assert main(["explain", str(tiny_run("lenet")), "--input", image, "--input", "#3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (") and "sections: layers, prediction, filters" in printed
    text = out.read_text(encoding="utf-8")
    assert "your image digit.png" in text and "test image 3 (label" in text
    assert text.count("data:image/png;base64,") > 20


def test_a_registry_name_with_settings(tmp_path, capsys):
    out = tmp_path / "gpt.html"
    assert main(["explain", "gpt", "--set", "n_layer=1", "--set", "d_model=16", "--set", "n_head=2",
                 "--input", "Hello", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "Random weights" in text and "title='H'" in text  # bytes: one token per character


def test_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, capsys):
    lenet, gpt, g2p = str(tiny_run("lenet")), str(tiny_run("gpt")), str(tiny_run("g2p_rnn"))
    capsys.readouterr()  # what training printed
    big = _png(tmp_path / "big.png", 28, 28)
    out = ["--out", str(tmp_path / "x.html")]
    cases = [
        ([gpt, "--input", big], "--input '" + big + "' is an image; gpt reads text"),
        ([gpt, "--input", "naïve ✓"], "--input 'naïve ✓' has characters the model was not trained on: 'ï', '✓'"),
        ([g2p, "--input", "café"], "'café': the character 'é' is not in the model's source alphabet"),
        ([lenet, "--input", big], f"--input '{big}' is 28x28 pixels, the model reads 8x8 images; pass --resize"),
        ([lenet, "--input", "hello"], "--input 'hello' is not an image file nor an index of the test data; "
                                      "lenet5 reads images"),
        ([lenet, "--input", "100000"], "--input '100000': the test data has 359 examples (indices 0 to 358)"),
        ([lenet, "--input", str(tmp_path / "none.png")], "no such image file"),
        (["gpt", "--input", "17"], "is an index into the test data, but 'gpt' is not a run of `archlab train`"),
        ([str(tmp_path / "nope")], "does not exist (expected a run directory"),
        ([lenet, "--set", "activation=tanh"], "is a saved model, whose config is fixed by its weights"),
        ([lenet, "--out", str(tmp_path / "page.txt")], "--out must name an .html file"),
        ([lenet, "--examples", "0"], "--examples must be in [1, 16], got 0"),
    ]
    for args, message in cases:
        code = main(["explain", *args, *([] if "--out" in args else out)])
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "x.html").exists()
    # With --resize the same image is read (and resized to 8x8).
    assert main(["explain", lenet, "--input", big, "--resize", *out]) == 0
