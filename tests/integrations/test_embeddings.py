"""The offline embedder: shapes, unit rows, sane similarities, padding, pinned hashes."""

import os
import shutil
import threading

import numpy
import pytest

from integrations import embeddings
from integrations.embeddings import (
    DIMENSIONS,
    MODEL_NAME,
    TOKENIZER_PATH,
    EmbeddingModelError,
    LocalEmbedder,
    embed_in_processes,
    get_local_embedder,
)


def cosine(a, b):
    return float(numpy.dot(a, b))


def test_embed_returns_unit_float32_rows_of_384():
    # given
    embedder = get_local_embedder()
    texts = ["My card has not arrived yet", "How do I reset my PIN?", ""]
    # when
    vectors = embedder.embed(texts)
    # then
    assert vectors.shape == (3, DIMENSIONS) and vectors.dtype == numpy.float32
    assert numpy.allclose(numpy.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.name == MODEL_NAME and embedder.dimensions == DIMENSIONS


def test_empty_input_gives_an_empty_matrix():
    vectors = get_local_embedder().embed([])
    assert vectors.shape == (0, DIMENSIONS) and vectors.dtype == numpy.float32


def test_a_single_string_is_refused():
    with pytest.raises(TypeError):
        get_local_embedder().embed("not a list")


def test_paraphrases_are_close_and_unrelated_texts_are_far():
    # given
    anchor, paraphrase, unrelated = get_local_embedder().embed(
        [
            "My card still hasn't arrived in the post.",
            "I am still waiting for my card to be delivered.",
            "Recommend a good recipe for tomato soup.",
        ]
    )
    # then
    assert cosine(anchor, paraphrase) > 0.7
    assert cosine(anchor, unrelated) < 0.3
    assert cosine(anchor, paraphrase) > cosine(anchor, unrelated) + 0.4


def test_padding_and_batch_order_do_not_change_a_vector():
    # given: a short text embedded alone and inside a batch with a much longer one
    short = "Where is my refund?"
    long = "I ordered a new card three weeks ago, " * 10
    embedder = get_local_embedder()
    # when
    alone = embedder.embed([short])[0]
    batched = embedder.embed([long, short, "hi"], batch_size=2)
    # then: same vector, and rows come back in input order
    assert numpy.allclose(alone, batched[1], atol=1e-4)
    assert cosine(batched[0], alone) < 0.99


def padded_by_the_tokenizer(embedder, text):
    """`text`'s vector with the tokenizer's own padding and attention mask (the reference for `embed`, which
    pads each batch by hand)."""
    from tokenizers import Tokenizer

    embedder.load()
    tokenizer = Tokenizer.from_file(str(embedder._tokenizer_path))
    tokenizer.enable_truncation(max_length=embedder._max_tokens)
    tokenizer.enable_padding(pad_id=embedder._pad_id, pad_token="[PAD]")
    encoding = tokenizer.encode_batch([text], add_special_tokens=True)[0]
    ids = numpy.asarray([encoding.ids], dtype=numpy.int64)
    mask = numpy.asarray([encoding.attention_mask], dtype=numpy.int64)
    return embedder._embed_arrays(ids, mask)[0]


def test_a_vector_is_the_same_bit_for_bit_whatever_its_batch_thread_count_or_process():
    # given: texts of many lengths (the tokenizer's own padding path is the reference)
    texts = [f"card {i} " * (1 + i % 9) + "arrived?" for i in range(70)] + ["", "word " * 400]
    embedder = get_local_embedder()
    one_by_one = numpy.stack([padded_by_the_tokenizer(embedder, t) for t in texts])
    # when
    batched = embedder.embed(texts, batch_size=16)
    single_thread = LocalEmbedder(threads=1).embed(texts, batch_size=64)
    in_processes = embed_in_processes(texts, processes=2)
    # then: sorting by token count, padding by hand, threads and processes change nothing
    assert numpy.array_equal(batched, one_by_one)
    assert numpy.array_equal(single_thread, one_by_one)
    assert numpy.array_equal(in_processes, one_by_one)


def test_text_longer_than_the_model_limit_is_truncated_not_rejected():
    vectors = get_local_embedder().embed(["word " * 2000])
    assert vectors.shape == (1, DIMENSIONS)
    assert abs(float(numpy.linalg.norm(vectors[0])) - 1.0) < 1e-5


def test_get_local_embedder_is_one_instance_across_threads():
    # given
    seen = []
    # when
    threads = [threading.Thread(target=lambda: seen.append(get_local_embedder())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert len({id(e) for e in seen}) == 1 and seen[0] is get_local_embedder()


def test_an_altered_tokenizer_file_is_refused_naming_file_and_hashes(tmp_path):
    # given: a copy of the tokenizer with one byte added
    altered = tmp_path / "tokenizer.json"
    shutil.copyfile(TOKENIZER_PATH, altered)
    with altered.open("ab") as handle:
        handle.write(b" ")
    embedder = LocalEmbedder(tokenizer_path=altered)
    # when / then
    with pytest.raises(EmbeddingModelError) as caught:
        embedder.embed(["hello"])
    message = str(caught.value)
    assert str(altered) in message
    assert embeddings.TOKENIZER_SHA256 in message and "actual sha256" in message


def test_a_model_that_does_not_match_its_pin_is_refused():
    # given: the real model file but a different pinned hash
    embedder = LocalEmbedder(model_sha256="0" * 64)
    # when / then
    with pytest.raises(EmbeddingModelError) as caught:
        embedder.load()
    assert "0" * 64 in str(caught.value) and embeddings.MODEL_SHA256 in str(caught.value)


def test_a_missing_model_file_is_an_embedding_model_error(tmp_path):
    with pytest.raises(EmbeddingModelError):
        LocalEmbedder(model_path=tmp_path / "missing.onnx").load()


def test_each_file_is_hashed_once_per_process(tmp_path, monkeypatch):
    # given: a fresh copy of the tokenizer that no embedder has checked yet
    copy = tmp_path / "tokenizer.json"
    shutil.copyfile(TOKENIZER_PATH, copy)
    calls = []
    real = embeddings._sha256_of
    monkeypatch.setattr(embeddings, "_sha256_of", lambda path: calls.append(path) or real(path))
    # when: it is checked twice
    embeddings._verify_file(copy, embeddings.TOKENIZER_SHA256, "tokenizer")
    embeddings._verify_file(copy, embeddings.TOKENIZER_SHA256, "tokenizer")
    # then
    assert calls.count(copy) == 1


def _die(texts):
    os._exit(9)  # a child killed in the middle of its share (as the kernel's OOM killer would)


def test_an_embedding_process_that_dies_neither_hangs_the_caller_nor_loses_a_text(monkeypatch, caplog):
    # given: texts enough to share out, and children that die as soon as they get their share
    texts = [f"where is card {i}?" for i in range(100)]
    expected = get_local_embedder().embed(texts)
    monkeypatch.setattr(embeddings, "_child_embed", _die)
    outcome: dict = {}
    caller = threading.Thread(target=lambda: outcome.setdefault("vectors", embed_in_processes(texts, processes=2)))
    # when
    caller.start()
    caller.join(120)
    # then: the caller came back (multiprocessing.Pool's map waited forever) with every vector, as one process has them
    assert not caller.is_alive(), "embed_in_processes hung on a dead child"
    assert numpy.array_equal(outcome["vectors"], expected)
    assert "an embedding process died" in caplog.text
