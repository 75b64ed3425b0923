import warnings

import numpy as np
import pytest

from charnn.errors import TokenizerError
from charnn.tokenizers import UnknownTextWarning, build_tokenizer, load_tokenizer
from charnn.tokenizers.char import UNKNOWN_ID, CharTokenizer
from tests.conftest import StreamDecoder

UNICODE = "Hello, wörld! 你好 🌍 e\u0301\tCRLF\r\n  trailing  \n"


def test_round_trip_any_unicode():
    tok = CharTokenizer.build(UNICODE)
    ids = tok.encode(UNICODE)
    assert tok.decode(ids) == UNICODE
    assert len(ids) == len(UNICODE)
    assert UNKNOWN_ID not in ids


def test_vocabulary_is_sorted_distinct_and_reserves_unknown():
    tok = CharTokenizer.build("banana")
    assert tok.chars == ["a", "b", "n"]
    assert tok.vocab_size == 4
    assert tok.encode("abn").tolist() == [1, 2, 3]


def test_unseen_characters_map_to_unknown_and_warn_once():
    tok = CharTokenizer.build("abc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = tok.encode("abz")
        second = tok.encode("zzz")
    assert first.tolist() == [1, 2, UNKNOWN_ID]
    assert second.tolist() == [UNKNOWN_ID] * 3
    messages = [w for w in caught if issubclass(w.category, UnknownTextWarning)]
    assert len(messages) == 1
    assert "'z'" in str(messages[0].message)


def test_unknown_is_never_sampled_and_start_is_newline():
    tok = CharTokenizer.build("ab\ncd")
    assert tok.never_sample() == [UNKNOWN_ID]
    assert tok.decode(tok.start_ids()) == "\n"


def test_encoding_uses_narrow_dtype():
    tok = CharTokenizer.build("abc")
    assert tok.encode("abc").dtype == np.uint8


def test_save_load_round_trip(tmp_path):
    tok = CharTokenizer.build(UNICODE)
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path, {"kind": "char"})
    assert loaded.chars == tok.chars
    assert loaded.encode(UNICODE).tolist() == tok.encode(UNICODE).tolist()


def test_stream_decoder_joins_to_decode():
    tok = CharTokenizer.build(UNICODE)
    decoder = StreamDecoder(tok)
    text = "".join(decoder.push(int(i)) for i in tok.encode(UNICODE)) + decoder.flush()
    assert text == UNICODE


def test_unknown_kind_lists_choices():
    with pytest.raises(TokenizerError, match="unknown --tokenizer .wordpiece.; choose one of: bpe, char, unigram"):
        build_tokenizer("wordpiece", "text")


def test_corrupt_vocabulary_file_is_an_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot read the character vocabulary"):
        load_tokenizer(tmp_path, {"kind": "char"})
    for damaged in ('{"x": 1}', "[1]", '{"chars": 5}'):
        (tmp_path / "tokenizer.json").write_text(damaged)
        with pytest.raises(TokenizerError, match='it has no "chars" string; the run is damaged'):
            load_tokenizer(tmp_path, {"kind": "char"})


def test_encoding_many_texts_gives_each_its_own_ids():
    tok = CharTokenizer.build(UNICODE)
    texts = [UNICODE, "", "Hello", UNICODE[::-1]]
    together = tok.encode_many(texts)
    assert [tok.decode(ids) for ids in together] == texts
    assert all(np.array_equal(a, tok.encode(t)) for a, t in zip(together, texts, strict=True))
