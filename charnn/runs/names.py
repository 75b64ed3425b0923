"""The run folder's file names and format markers: one place for each.

A run folder holds the common files (config.json, the weights, the tokenizer's file, the
resume state, the log, the held-out text) and, by its kind, its data in the files named
below: a language model its tokens, a classifier its labelled texts, a tagger its sentences.
"""

from __future__ import annotations

FORMAT = "charnn-run"
FORMAT_VERSION = 2
"""2: config.json may name its task (a classifier, a tagger); a folder with none is a language model (as in 1)."""
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
VALIDATION_FILE = "validation.txt"
METRICS_FILE = "metrics.jsonl"
RESUME_FILE = "resume.safetensors"
TRAIN_TOKENS_FILE = "train.tokens"
VAL_TOKENS_FILE = "val.tokens"
TRAIN_RECORDS_FILE = "train.records"
"""A record run's offsets (int64) of each training record's boundary in train.tokens, and of the last."""
TRAIN_TEXTS_FILE = "train.tsv"
VAL_TEXTS_FILE = "validation.tsv"
"""A classifier run's labelled texts (label<TAB>text), kept so that resuming needs no data."""
VAL_NGRAMS_FILE = "validation.ngrams"
"""A classifier run's n-gram logits of each held-out text (a line each, tab-separated), from the n-gram model
fitted without them: validation reads these, as the saved table may have been refitted with them."""
TRAIN_TAGS_FILE = "train.tags"
VAL_TAGS_FILE = "validation.tags"
"""A tagger run's sentences (token<TAB>tag, an empty line after each sentence)."""
RUN_FILES = (
    *(CONFIG_FILE, MODEL_FILE, VALIDATION_FILE, METRICS_FILE, RESUME_FILE, TRAIN_TOKENS_FILE, VAL_TOKENS_FILE),
    TRAIN_RECORDS_FILE,
    *(TRAIN_TEXTS_FILE, VAL_TEXTS_FILE, VAL_NGRAMS_FILE, TRAIN_TAGS_FILE, VAL_TAGS_FILE),
)
"""Every file a run folder may hold besides the tokenizer's, which config.json names."""
RUNS_DIR = "runs"
MAX_CONFIG_BYTES = 1 << 20
MODEL_ENV = "CHARNN_MODEL"

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
"""The files charnn's tokenizers save (tests/test_checkpoint.py checks these against them)."""
RUN_FOLDER_FILES = (*RUN_FILES, *TOKENIZER_FILES)
