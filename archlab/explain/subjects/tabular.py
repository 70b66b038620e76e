"""Tabular models: a table row in, class probabilities or one value out.

An example is a row of the task's test rows, as the model reads it: the standardised numeric
features ``x_num`` and the codes ``x_cat`` of the categorical columns (``TabularEncoder``). The
page shows the row, the prediction (the class probabilities softmax(z), or the value
``mu_y + sigma_y * t^`` in the target's units) beside the truth, and, for the FT-Transformer, the
attention between its tokens: [CLS] first, then one token per column. Gradient-boosted trees have
no layers or gradients to look inside: they are refused with a one-line error.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from archlab.errors import ConfigError, check
from archlab.explain import html as H
from archlab.explain.subjects.base import Example, Subject


class TabularSubject(Subject):
    kind = "tabular"
    what = "tabular model"
    loss_text = "the cross-entropy of each row's true class (the mean squared error of the value, in regression)"

    def __init__(self, target, *, resize: bool = False):
        if getattr(target.model, "fitted", False) or not isinstance(target.model, torch.nn.Module):
            raise ConfigError(f"{target.name} is {type(target.model).__name__}: gradient-boosted trees have no "
                              f"layers, activations or gradients to show; explain a network (tabular_mlp, "
                              f"ft_transformer)")
        super().__init__(target, resize=resize)
        c = self.model.config
        self.classification = self.task.classification if self.task is not None else c.num_outputs > 1
        if self.task is not None:
            e = self.task.encoder
            self.columns = list(e.numeric_features) + list(e.categorical_features)
            self.classes = [str(k) for k in self.task.table.classes]
        else:
            self.columns = [f"x{i}" for i in range(c.num_numeric)] + \
                           [f"c{j}" for j in range(len(c.cat_cardinalities))]
            self.classes = [str(k) for k in range(c.num_outputs)]

    # -- examples ---------------------------------------------------------------------------------
    def default_examples(self, count: int) -> list[Example]:
        if self.task is None:
            x_num, x_cat = self.model.example_input(1)
            return [Example("a random row (no data: a registry model)", (x_num, x_cat), tokens=self._tokens())]
        return [self.test_example(i) for i in range(min(count, self.test_size()))]

    def _tokens(self) -> list[str]:
        return ["[CLS]", *self.columns]

    def test_size(self) -> int:
        return len(self.task.split.test)

    def test_example(self, index: int) -> Example:
        x_num, x_cat, y = self.task.arrays("test")
        row = (torch.from_numpy(x_num[index:index + 1]), torch.from_numpy(x_cat[index:index + 1]))
        target = int(y[index]) if self.classification else float(y[index])
        return Example(f"test row {index}", row, target=target, tokens=self._tokens())

    # -- the model on an example ------------------------------------------------------------------
    def loss(self, ex: Example) -> torch.Tensor:
        out = self.model(*ex.args).float()
        if self.classification:
            label = ex.target if ex.target is not None else int(out.argmax(-1))
            return F.cross_entropy(out, torch.tensor([label]))
        truth = torch.tensor([[ex.target if ex.target is not None else 0.0]])
        return (out - truth).pow(2).mean()

    def _value(self, t: float) -> float:
        """A standardised regression output in the target's units."""
        if self.task is None:
            return t
        e = self.task.encoder
        return e.target_mean + e.target_std * t

    def prediction(self, page, examples: list[Example]) -> None:
        s = page.section("prediction", "Prediction", "Each row as the model reads it (numeric columns "
                         "standardised with the training rows' statistics, categories as codes), and its "
                         + ("class probabilities softmax(z); the true class is marked red." if self.classification
                            else "predicted value beside the true one, in the target's units."))
        cells = []
        for ex in examples:
            x_num, x_cat = ex.args
            values = [H.fmt(float(v)) for v in x_num[0]] + [str(int(v)) for v in x_cat[0]]
            check(len(values) == len(self.columns), f"a row of {len(values)} values for {len(self.columns)} columns")
            row = H.table(["column", "value"], list(zip(self.columns, values)), numeric=[1])
            with torch.no_grad():
                out = self.model(x_num, x_cat).float()[0]
            if self.classification:
                p = torch.softmax(out, -1).numpy()
                top = np.argsort(-p)[:5]
                items = [(self.classes[k], float(p[k]), f"{100 * p[k]:.1f}%") for k in top]
                marks = ["hi" if ex.target is not None and k == ex.target else "" for k in top]
                verdict = ""
                if ex.target is not None:
                    ok = int(top[0]) == ex.target
                    verdict = f"<p>{'correct' if ok else 'wrong'}: predicted {H.e(self.classes[int(top[0])])}</p>"
                shown = H.bars(items, highest=1.0, classes=marks) + verdict
            else:
                shown = f"<p>predicted {H.fmt(self._value(float(out[0])))}" + (
                    f", true {H.fmt(self._value(ex.target))}</p>" if ex.target is not None else "</p>")
            cells.append(f"<div><h4>{H.e(ex.title)}</h4>{shown}{row}</div>")
        s.add(f"<div class='flex'>{''.join(cells)}</div>")
