"""Looking inside a model: its layers, shapes, parameters and FLOPs.

    from archlab.inspect import summarize
    print(summarize(model, torch.zeros(1, 1, 32, 32)).to_text(depth=2))

``summary`` holds ``summarize`` and its ``Summary`` table; ``examples`` builds a sensible example
input for any registered model from its config.
"""

from archlab.inspect.examples import Example, example_inputs
from archlab.inspect.summary import LayerInfo, Summary, summarize

__all__ = ["summarize", "Summary", "LayerInfo", "example_inputs", "Example"]
