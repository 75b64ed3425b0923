import io

import numpy as np
import pytest

from charnn.errors import CorpusError
from charnn.text.corpus import TBPTTStream, read_corpus, split_point, token_dtype


def test_reads_several_files_and_stdin(tmp_path):
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("first line", encoding="utf-8")
    b.write_text("second\n", encoding="utf-8")
    corpus = read_corpus([a, "-", b], stdin=io.BytesIO(b"from stdin\n"))
    assert corpus.text == "first line\nfrom stdin\nsecond\n"
    assert corpus.name == "a"
    assert read_corpus(["-"], stdin=io.BytesIO(b"x y")).name == "stdin"


def test_a_pipe_among_the_corpus_files_is_read_once_and_held(tmp_path):
    import os
    import threading

    fifo, plain = tmp_path / "fifo", tmp_path / "b.txt"
    os.mkfifo(fifo)
    plain.write_text("and a file\n")
    writer = threading.Thread(target=lambda: fifo.write_text("from a pipe"), daemon=True)  # until it is read
    writer.start()
    read = []
    reader = threading.Thread(target=lambda: read.append(read_corpus([fifo, plain])), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert read, "the corpus was not read in 30 s"  # before: opened three times, the second open waited forever
    writer.join(timeout=10)
    (corpus,) = read
    assert corpus.text == "from a pipe\nand a file\n" and "".join(corpus.chunks()) == corpus.text
    assert corpus.stats.chars == len(corpus.text)
    with pytest.raises(CorpusError, match="holds no text"):
        read_corpus(["/dev/null"])
    with pytest.raises(CorpusError, match="NUL byte at offset 0"):  # a device is read a chunk at a time, not held
        read_corpus(["/dev/zero"])


def test_invalid_utf8_names_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf" + b"\xe9 au lait")
    with pytest.raises(CorpusError, match=r"latin1.txt is not valid UTF-8: byte offset 3 \(e9"):
        read_corpus([path])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds no text"),
        (b" \n\t\n", "holds no text"),
        ("hi".encode("utf-16"), "looks like UTF-16"),
        (b"\x7fELF\x00\x01", "NUL byte at offset 4"),
    ],
)
def test_unusable_corpus_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        read_corpus([path])


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CorpusError, match="nope.txt: no such file"):
        read_corpus([tmp_path / "nope.txt"])
    with pytest.raises(CorpusError, match="is a folder"):
        read_corpus([tmp_path])


def test_bom_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello")
    assert "".join(read_corpus([path]).chunks()) == "hello"


def test_files_are_streamed_in_chunks_that_split_characters(tmp_path, monkeypatch):
    import charnn.text.corpus

    monkeypatch.setattr(charnn.text.corpus, "CHUNK_BYTES", 5)
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_bytes(b"\xef\xbb\xbf" + "héllo wörld 🌍 日本".encode())
    b.write_text("")
    c.write_text("next\n")
    corpus = read_corpus([a, b, c])
    assert corpus.text is None
    assert "".join(corpus.chunks()) == "héllo wörld 🌍 日本\nnext\n"
    stats = corpus.stats
    assert stats.chars == len("héllo wörld 🌍 日本\nnext\n")
    assert set(stats.alphabet) == set("héllo wörld 🌍 日本\nnext\n")


def test_in_memory_and_streamed_corpora_agree(tmp_path):
    from charnn.text.corpus import Corpus, corpus_stats

    text = "Once upon a time, ünïcode 🌍.\n" * 50
    path = tmp_path / "t.txt"
    path.write_text(text)
    streamed = read_corpus([path]).stats
    held = corpus_stats(Corpus(text=text, name="t", sources=("t",)))
    assert (streamed.chars, streamed.sha256, streamed.alphabet) == (held.chars, held.sha256, held.alphabet)


def test_invalid_utf8_offset_is_exact_across_chunks(tmp_path, monkeypatch):
    import charnn.text.corpus

    monkeypatch.setattr(charnn.text.corpus, "CHUNK_BYTES", 4)
    path = tmp_path / "bad.txt"
    path.write_bytes("aé日".encode() + b"xyz\xc3(" + b"tail")
    with pytest.raises(CorpusError, match=r"byte offset 9 \(c3 28"):
        read_corpus([path])


def test_split_keeps_the_end_for_validation():
    assert split_point(10, 0.2) == 8
    assert split_point(1_115_394, 0.1) == 1_003_855  # nanoGPT's tinyshakespeare split


def test_token_dtype_is_narrowest():
    assert token_dtype(256) == np.uint8
    assert token_dtype(257) == np.uint16
    assert token_dtype(70000) == np.int32


def test_rows_continue_across_windows():
    tokens = np.arange(100, dtype=np.uint8)
    stream = TBPTTStream(tokens, rows=3, seq_len=5)
    assert stream.rows.shape == (3, 33)
    x0, y0, first = stream.window(0)
    x1, _, _ = stream.window(1)
    assert first
    np.testing.assert_array_equal(y0, x0 + 1)  # targets are inputs shifted by one
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # each row continues where it stopped
    np.testing.assert_array_equal(x0[:, 0], [0, 33, 66])
    assert stream.windows_per_epoch == 6
    x6, _, first6 = stream.window(6)
    assert first6
    np.testing.assert_array_equal(x6, x0)


def test_stream_too_short_says_what_to_change():
    with pytest.raises(CorpusError, match="use a smaller --batch-size or --seq-len"):
        TBPTTStream(np.arange(50, dtype=np.uint8), rows=4, seq_len=20)
