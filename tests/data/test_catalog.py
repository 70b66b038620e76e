import pytest

from archlab.data import list_datasets, load_image_data, load_series
from archlab.data.catalog import DATASETS, dataset_info
from archlab.data.download import REMOTE
from archlab.data.images import IMAGE_SETS
from archlab.data.labelled_text import LABELLED_TEXT_SETS
from archlab.data.tabular import TABULAR_SETS
from archlab.data.text import OFFLINE_TEXTS, TEXT_SETS
from archlab.data.timeseries import SERIES
from archlab.errors import ConfigError


def test_catalog_matches_the_loaders():
    assert set(list_datasets("image")) == set(IMAGE_SETS)
    assert set(list_datasets("series")) == set(SERIES)
    assert set(list_datasets("text")) == {*TEXT_SETS, *OFFLINE_TEXTS}
    assert set(list_datasets("labelled_text")) == set(LABELLED_TEXT_SETS)
    assert set(list_datasets("tabular", offline=True)) == set(TABULAR_SETS)
    # exactly the sets that need the network have a download entry
    assert set(list_datasets(offline=False)) == set(REMOTE)
    assert list_datasets("image", offline=True) == ["digits", "mnist5k"]
    assert list_datasets("text", offline=True) == ["pythondocs", "cmudict-words"]
    with pytest.raises(ConfigError, match="kind must be one of image, text, labelled_text, pronunciation, series, tabular, got 'audio'"):
        list_datasets("audio")


def test_a_name_asked_of_the_wrong_loader_says_where_it_belongs():
    with pytest.raises(ConfigError, match=r"'co2' is a series data set: load it with archlab.data.load_series"):
        load_image_data("co2")
    with pytest.raises(ConfigError, match=r"'mnist' is an image data set: load it with archlab.data.load_image_data"):
        load_series("mnist")
    with pytest.raises(ConfigError, match=r"unknown data set 'cifar': .*did you mean 'cifar10'"):
        dataset_info("cifar")
    assert dataset_info("cmudict").loader == "load_cmudict" and "cmudict" in DATASETS
