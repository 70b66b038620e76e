"""Real data for every task: loaders, caches, checksums, tokenizers and transforms.

    load_image_data(name_or_path)    "digits", "mnist5k" (offline), "mnist", "fashion_mnist", "cifar10"
                                     (downloaded), or a folder of class subfolders -> ImageData
    load_text(name_or_path)          "pythondocs" (offline), "tinyshakespeare" (downloaded) or a text file -> str
    load_sentence_pairs(path)        source<TAB>target lines -> SentencePairs (train / val / test)
    load_labelled_text(name_or_path) "cmudict-syllables" (offline) or text<TAB>label lines -> LabelledText
    load_cmudict()                   CMU Pronouncing Dictionary, spelling -> phonemes -> PronunciationData
    load_captioned_images(name_or_path)  "mnist5k", "digits" with captions made from the labels, or a folder
                                     of images with a captions.tsv -> CaptionedImages (for CLIP)
    load_series(name_or_path)        "co2", "sunspots" (offline) or a CSV column -> TimeSeries
    load_tabular(name_or_path)       "breast_cancer", "wine", "diabetes" (offline) or a CSV file -> TabularData;
                                     TabularEncoder fits imputation, scaling and category codes on training rows
    CharTokenizer, SymbolTokenizer,  text <-> ids, saved beside checkpoints (to_dict / from_dict,
    WordTokenizer, BPETokenizer      save / load_tokenizer; fit_tokenizer("char" | "word" | "bpe", texts))
    Normalize, RandomCrop,           image transforms on (N, C, H, W) batches, seeded by a generator
    RandomAffine, RandomElastic,
    Translate
    list_datasets(kind)              every named data set

Downloads are cached in ``$ARCHLAB_CACHE`` (default ``~/.cache/archlab``), verified by SHA-256, and
fetched from a mirror given by ``base_url=`` or ``$ARCHLAB_<NAME>_URL``.
"""

from archlab.data.captions import CaptionedImages, load_captioned_images
from archlab.data.catalog import DATASETS, dataset_info, list_datasets
from archlab.data.download import cache_dir, fetch
from archlab.data.images import ImageData, load_image_data
from archlab.data.labelled_text import LabelledText, load_labelled_text, read_labelled_tsv
from archlab.data.pronunciation import PronunciationData, count_syllables, g2p_error_rates, load_cmudict, strip_stress
from archlab.data.text import SentencePairs, load_sentence_pairs, load_text
from archlab.data.tabular import TabularData, TabularEncoder, load_tabular, read_table
from archlab.data.timeseries import TimeSeries, load_co2, load_csv_series, load_series, load_sunspots, make_windows
from archlab.data.transforms import (Compose, Normalize, RandomAffine, RandomCrop, RandomElastic, RandomHorizontalFlip,
                                     Resize, Translate)
from archlab.data.tokenizer import (
    BPETokenizer, CharTokenizer, SymbolTokenizer, Tokenizer, WordTokenizer, fit_tokenizer, load_tokenizer,
    tokenizer_from_dict,
)

__all__ = [
    "DATASETS", "list_datasets", "dataset_info",
    "ImageData", "load_image_data", "CaptionedImages", "load_captioned_images", "load_text", "SentencePairs", "load_sentence_pairs",
    "LabelledText", "load_labelled_text", "read_labelled_tsv",
    "TabularData", "TabularEncoder", "load_tabular", "read_table",
    "TimeSeries", "load_series", "load_co2", "load_sunspots", "load_csv_series", "make_windows",
    "PronunciationData", "load_cmudict", "strip_stress", "count_syllables", "g2p_error_rates", "cache_dir", "fetch",
    "Compose", "Normalize", "RandomAffine", "RandomCrop", "RandomElastic", "RandomHorizontalFlip", "Resize", "Translate",
    "Tokenizer", "CharTokenizer", "SymbolTokenizer", "WordTokenizer", "BPETokenizer",
    "tokenizer_from_dict", "load_tokenizer", "fit_tokenizer",
]
