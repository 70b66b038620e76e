"""From settings to a run: each key resolved once, aliases with a note, models a task cannot train refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from archlab.errors import ConfigError
from archlab.registry import model_info
from archlab.tasks.lm import LMConfig
from archlab.train import RunSpec, resolve
from archlab.train.config import TrainConfig, route_settings
from archlab.train.resolve import check_trainable, model_config_class

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 20


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return str(path)


def groups(model: str, task_config=LMConfig):
    return {"trainer": TrainConfig, "task": task_config, "model": model_config_class(model)}


def test_a_model_a_task_cannot_train_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^resnet18 cannot be trained for task lm \(resnet18 is trained by task "
                                          r"classify\); models that can: gpt, gru_lm, lstm_lm, rnn_lm$"):
        check_trainable("resnet18", "lm")
    check_trainable("bert", "mlm")
    check_trainable("bert", "textclass")  # one model, two capabilities
    assert model_info("rnn_classifier").tasks == ["textclass", "recall", "classify"]


def test_qualified_keys_name_their_owner_and_bare_keys_go_to_the_one_that_has_them():
    routed = route_settings({"lr": "3e-3", "model.dropout": "0.1", "task.block_size": 32, "n_layer": 2},
                            groups("gpt"))
    assert routed.groups == {"trainer": {"lr": 3e-3}, "task": {"block_size": 32},
                             "model": {"dropout": 0.1, "n_layer": 2}}
    with pytest.raises(ConfigError, match=r"model.widht: the model has no setting 'widht'"):
        route_settings({"model.widht": 3}, groups("gpt"))
    with pytest.raises(ConfigError, match=r"modle.n_layer: the part before the dot must be one of trainer, task, model"):
        route_settings({"modle.n_layer": 3}, groups("gpt"))


def test_another_familys_name_for_a_size_is_read_as_this_models_with_a_note():
    routed = route_settings({"d_model": 64, "n_layer": 3, "n_head": 4}, groups("bert"))
    assert routed.groups["model"] == {"hidden_size": 64, "num_layers": 3, "num_heads": 4}
    assert routed.notes[0] == "d_model read as hidden_size (the model width: this model's name for it)"
    with pytest.raises(ConfigError, match="hidden_size is given twice"):
        route_settings({"d_model": 64, "hidden_size": 32}, groups("bert"))


def test_a_key_both_the_task_and_the_model_have_is_the_tasks_when_the_data_ties_them(text_file):
    r = resolve(RunSpec(task="lm", model="gpt", data=text_file, out=Path("unused"),
                        settings={"block_size": 16, "n_layer": 1, "d_model": 16, "n_head": 2}))
    assert r.task.config.block_size == 16 and r.model.config.block_size == 16
    with pytest.raises(ConfigError, match=r"block_size is fixed by the data \(block_size=16\), got block_size=32"):
        resolve(RunSpec(task="lm", model="gpt", data=text_file, out=Path("unused"),
                        settings={"block_size": 16, "model.block_size": 32}))
