"""The learned intent classifier: which category a ticket belongs to, how sure, and whether any fits.

Method (chosen by measurement on BANKING77-style data; see the report in the PR):

* **Scores.** One linear SVM (``LinearSVC``) over the concatenation of TF-IDF word 1-2-grams,
  TF-IDF character 2-5-grams (``char_wb``) and the sentence embedding (scaled by
  :data:`EMBEDDING_SCALE`). Words and characters catch the exact phrasing and typos; the
  embedding catches paraphrases. Together they beat either alone and beat averaging separate
  models.
* **Probabilities.** A softmax over the SVM scores with one temperature fitted by
  cross-validation on the examples (``alternatives`` are these probabilities).
* **Confidence.** A small logistic "is the top label right?" model over out-of-fold features:
  the top probability, its margin over the runner-up, whether the nearest training example
  agrees, the similarity to the nearest example of the predicted label and to any example.
  Fitted on 5-fold out-of-fold predictions of the examples, so ``confidence`` is a calibrated
  probability that the label is right. (With fewer than five held-out mistakes to learn from,
  e.g. a tiny example set, the temperature-scaled top probability is used instead.)
* **Out of scope.** A ticket is out of scope when its cosine similarity to the nearest
  training example is below the 1st percentile of the same measure for held-out examples (and
  always below :data:`MIN_NEAREST_SIMILARITY`): text unlike anything the team has labelled.
* **Calibration, not a threshold.** The classifier no longer picks its own threshold from a fixed
  precision. It hands out :attr:`IntentClassifier.calibration`: the out-of-fold confidence, predicted
  category and correctness of every in-scope example, which :mod:`triage.risk` turns into
  auto-handle thresholds for the admin's target error with a stated guarantee (Learn then Test).
  ``suggested_threshold`` is that chooser's pooled threshold at the default target
  (:data:`triage.risk.DEFAULT_TARGET` at :data:`triage.risk.DEFAULT_CONFIDENCE`), kept for reports
  and for code that has no calibration to choose from. Only examples are used; tickets are never
  seen when fitting.
* **Out of scope in the calibration data.** The guarantee holds for tickets like the calibration data,
  and real traffic carries requests no category covers; the out-of-fold examples all have a category, so
  on their own they say nothing about what such a request costs (on banking77-oos at a 1% target the
  one out-of-scope ticket that slipped past the similarity filter, with a confident label, pushed the
  measured rate to 1.1%). So the calibration data also holds *unseen-category* examples: the categories
  are split into :data:`CV_FOLDS` groups, and each group's examples are scored by a model trained
  without that group (what a request no category covers looks like to the classifier: close to the
  domain, unlike any category it knows). Those the similarity filter lets through count as wrong answers
  in the category they would be put in (an auto-handled out-of-scope ticket is mishandled). They are
  mixed in at :data:`OUT_OF_SCOPE_SHARE` of the calibration data: the product assumes up to that share
  of its in-domain-looking traffic asks for something no category covers, and the guarantee covers it.

Storage: :meth:`IntentClassifier.to_bytes` writes a NumPy ``.npz`` archive of plain arrays
plus a JSON header (no pickle), so loading a blob from the database cannot execute code.
The TF-IDF vectorisers are rebuilt from their stored vocabularies and IDF weights.

No Django imports: this module is used by services, workers and offline evaluation alike.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy
from scipy import sparse
from scipy.special import expit, log_softmax, softmax

from integrations.processes import ForkPool
from triage.risk import DEFAULT_CONFIDENCE, DEFAULT_MIN_PER_CATEGORY, DEFAULT_TARGET, thresholds_choose

__all__ = [
    "FORMAT_VERSION",
    "ClassifierFormatError",
    "IntentClassifier",
    "Prediction",
]

#: Bumped whenever the stored layout changes; older blobs are refused, not misread.
FORMAT_VERSION = 1
_MAGIC = "triage-intent-classifier"

#: Percentile of held-out examples' nearest-example similarity below which text is out of scope.
OOS_PERCENTILE = 1.0
#: Text less similar than this to every example is always out of scope.
MIN_NEAREST_SIMILARITY = 0.3
#: Weight of the embedding block next to the TF-IDF blocks (each row of each block has unit norm).
EMBEDDING_SCALE = 2.0
#: LinearSVC regularisation and stopping tolerance.
SVM_C = 0.5
SVM_TOL = 1e-4
#: Cross-validation folds on the examples (fewer when a category has fewer examples).
CV_FOLDS = 5
#: With too few held-out mistakes to learn a confidence model from (small or very easy example
#: sets), the softmax temperature is kept at least this high so that confidence does not saturate
#: at 1.0 for everything. 0.25 is about what cross-validation picks on BANKING77-sized sets.
FALLBACK_MIN_TEMPERATURE = 0.25
#: Held-out mistakes (and correct answers) needed to fit the confidence model.
MIN_META_EXAMPLES = 5
#: Share of the calibration data that is unseen-category examples (out of scope inside the domain; see
#: the module docstring): 5 in 100 tickets ask for something no category covers. What every fit samples
#: for, and the gate policy's default; the thresholds are calibrated for the policy's share
#: (`triage.autonomy.calibration_set` thins the sample or the in-scope examples to it).
OUT_OF_SCOPE_SHARE = 0.05

_WORD_PARAMS: dict[str, Any] = {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "min_df": 1}
_CHAR_PARAMS: dict[str, Any] = {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "min_df": 2}


class ClassifierFormatError(ValueError):
    """A stored classifier blob is not one this code can read."""


@dataclass(frozen=True)
class Prediction:
    label: str | None
    """The best category, or None when the ticket is out of scope."""
    confidence: float
    """Calibrated probability that the best category is right (0..1).

    Reported for the best category even when the ticket is out of scope; gates check
    ``out_of_scope`` first."""
    alternatives: tuple[tuple[str, float], ...]
    """The top three categories with their probabilities, best first."""
    out_of_scope: bool
    """True when the text is unlike every training example."""
    nearest_similarity: float
    """Cosine similarity to the nearest training example."""
    probabilities: tuple[float, ...] = ()
    """The probability of every category, in the order of ``IntentClassifier.labels``."""


# ---------------------------------------------------------------------------------------------
# Feature extraction
# ---------------------------------------------------------------------------------------------


def _vectorizer(params: dict[str, Any], vocabulary: list[str] | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer  # lazily: scikit-learn takes about a second to import

    kwargs = dict(params, dtype=numpy.float32, lowercase=True)
    if vocabulary is not None:
        kwargs.pop("min_df", None)
        kwargs["vocabulary"] = vocabulary
    return TfidfVectorizer(**kwargs)


class _Features:
    """TF-IDF words + TF-IDF characters + scaled embedding, as one sparse matrix.

    The vectorisers are fitted with scikit-learn; transforming uses their analysers, vocabularies
    and IDF weights directly (same numbers as ``TfidfVectorizer.transform``, a fraction of the
    per-call overhead, which matters when one ticket is classified at a time).
    """

    def __init__(
        self, word, char, analyses: _Analyses | None = None, columns: list[numpy.ndarray] | None = None
    ) -> None:
        self.word = word
        self.char = char
        # With `columns` (each block's column of every n-gram of `analyses`' tables, -1: not in the
        # vocabulary), analysed texts are transformed from the tables, without a Python loop per n-gram.
        self._tables = (
            [(analyses.table("word"), columns[0]), (analyses.table("char"), columns[1])]
            if analyses is not None and columns is not None
            else None
        )
        analyzers = (analyses.word.__getitem__, analyses.char.__getitem__) if analyses else (None, None)
        self._blocks = [
            (
                analyze or v.build_analyzer(),
                v.vocabulary_,
                numpy.asarray(v.idf_, dtype=numpy.float64),
                bool(v.sublinear_tf),
            )
            for v, analyze in zip((word, char), analyzers, strict=True)
        ]

    def own_analyzers(self) -> _Features:
        """The same features analysing text themselves (after fitting with `_Analyses`, to predict new text)."""
        return _Features(self.word, self.char)

    @classmethod
    def fit(cls, texts: Sequence[str], analyses: _Analyses | None = None) -> _Features:
        """Fit both vectorisers on `texts`. With `analyses` (every text of `texts` analysed already), the
        result is the same, and the returned features transform only analysed texts."""
        if analyses is not None and analyses.usable:
            word_fit = analyses.fitted_from_table(texts, "word", _WORD_PARAMS)
            char_fit = analyses.fitted_from_table(texts, "char", _CHAR_PARAMS)
            if word_fit is not None and char_fit is not None:
                return cls(word_fit[0], char_fit[0], analyses, [word_fit[1], char_fit[1]])
        word = _vectorizer(_WORD_PARAMS)
        char = _vectorizer(_CHAR_PARAMS)
        try:
            word.fit(texts)
        except ValueError:  # no word of two characters or more anywhere
            word = _vectorizer({**_WORD_PARAMS, "token_pattern": r"(?u)\b\w+\b"}).fit(list(texts) + ["_"])
        try:
            char.fit(texts)
        except ValueError:  # too few texts for min_df
            char = _vectorizer({**_CHAR_PARAMS, "min_df": 1}).fit(texts)
        return cls(word, char)

    @staticmethod
    def _tfidf(texts: Sequence[str], analyze, vocabulary, idf, sublinear: bool) -> sparse.csr_matrix:
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        for text in texts:
            counts: dict[int, int] = {}
            for token in analyze(text):
                j = vocabulary.get(token)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            indices.extend(counts)
            values.extend(counts.values())
            indptr.append(len(indices))
        bounds = numpy.asarray(indptr, dtype=numpy.int64)
        row_of = numpy.repeat(numpy.arange(len(texts)), numpy.diff(bounds))
        counts_of = numpy.asarray(values, dtype=numpy.float64)
        return _tfidf_rows(counts_of, numpy.asarray(indices, dtype=numpy.int64), bounds, row_of, idf, sublinear)

    @staticmethod
    def _tfidf_from_table(texts: Sequence[str], table: _NgramTable, columns, idf, sublinear: bool):
        """`_tfidf` of analysed texts, from the n-gram table: the same entries in the same order (each text's
        n-grams in the vocabulary, in order of first occurrence), so the same arithmetic and the same floats."""
        take, lengths = table.entries(texts)
        cols = columns[table.ids[take]]
        kept = cols >= 0
        row_of = numpy.repeat(numpy.arange(len(texts)), lengths)[kept]
        bounds = numpy.zeros(len(texts) + 1, dtype=numpy.int64)
        numpy.cumsum(numpy.bincount(row_of, minlength=len(texts)), out=bounds[1:])
        return _tfidf_rows(table.counts[take][kept].astype(numpy.float64), cols[kept], bounds, row_of, idf, sublinear)

    def transform(self, texts: Sequence[str], embeddings: numpy.ndarray) -> sparse.csr_matrix:
        if self._tables is not None:
            blocks = [
                self._tfidf_from_table(texts, table, columns, block[2], block[3])
                for (table, columns), block in zip(self._tables, self._blocks, strict=True)
            ]
        else:
            blocks = [self._tfidf(texts, *block) for block in self._blocks]
        blocks.append(
            sparse.csr_matrix(numpy.asarray(embeddings, dtype=numpy.float32) * numpy.float32(EMBEDDING_SCALE))
        )
        return sparse.hstack(blocks, format="csr", dtype=numpy.float32)

    @property
    def size(self) -> int:
        return len(self.word.vocabulary_) + len(self.char.vocabulary_)


class _Analyses:
    """Every training text's word and character n-grams, computed once for all the fits of one `fit`.

    Why: fitting runs the final model and five cross-validation folds, and each fitted and transformed
    every text again; scikit-learn's analysers are pure Python and that repetition was most of the
    fitting time. Vectorisers fitted here from the stored n-grams get the vocabulary and IDF weights
    scikit-learn itself computes (it is scikit-learn's own fit, given the n-grams instead of the text).
    """

    def __init__(self, texts: Sequence[str]) -> None:
        word = _vectorizer(_WORD_PARAMS).build_analyzer()
        char = _vectorizer(_CHAR_PARAMS).build_analyzer()
        distinct = list(dict.fromkeys(texts))
        self.word: dict[str, list[str]] = {t: word(t) for t in distinct}
        self.char: dict[str, list[str]] = {t: char(t) for t in distinct}
        # With no word of two characters anywhere the slow path's fallback token pattern is needed.
        self.usable = any(self.word.values())
        self._tables: dict[str, _NgramTable] = {}

    def table(self, block: str) -> _NgramTable:
        """The n-gram table of `block` ("word" or "char"), built on first use."""
        if block not in self._tables:
            self._tables[block] = _NgramTable(self.word if block == "word" else self.char)
        return self._tables[block]

    def fitted_from_table(self, texts: Sequence[str], block: str, params: dict[str, Any]):
        """A vectoriser with `params` fitted on `texts` (analysed already) and each n-gram's column in it (-1:
        left out), from the n-gram table; None when too few texts remain for `min_df` (the caller falls back).

        Why not scikit-learn's own fit on the stored n-grams: it counted every n-gram of every text in Python
        for each of the eleven fits of one `fit` (the final model, five folds, five unseen-category models);
        the table counts them once and a fit's document frequencies are one `bincount`. The vocabulary and
        the IDF weights are scikit-learn's (`CountVectorizer`'s min_df pruning and alphabetical order,
        `TfidfTransformer.fit`'s smoothed IDF in the matrix's float32), checked against its TfidfVectorizer
        in the tests."""
        table = self.table(block)
        n_docs = len(texts)
        min_df = int(params["min_df"])
        if n_docs == 0 or n_docs < min_df:  # scikit-learn: "max_df corresponds to < documents than min_df"
            return None
        # A document frequency counts a text once per time it is among `texts` (as scikit-learn does).
        df = numpy.bincount(table.ids[table.entries(texts)[0]], minlength=len(table.terms))
        keep = table.alphabetical[df[table.alphabetical] >= max(min_df, 1)]
        if len(keep) == 0:  # scikit-learn: empty vocabulary, or none left after pruning
            return None
        vectorizer = _vectorizer(params, [table.terms[int(g)] for g in keep])
        smoothed = df[keep].astype(numpy.float32)
        smoothed += 1.0
        idf = numpy.full_like(smoothed, fill_value=n_docs + 1, dtype=numpy.float32)
        idf /= smoothed
        numpy.log(idf, out=idf)
        idf += 1.0
        vectorizer.idf_ = idf
        columns = numpy.full(len(table.terms), -1, dtype=numpy.int64)
        columns[keep] = numpy.arange(len(keep))
        return vectorizer, columns


def _tfidf_rows(counts, cols, bounds, row_of, idf, sublinear: bool) -> sparse.csr_matrix:
    """The TF-IDF rows (float32 CSR, each row L2-normalised) of n-gram `counts` (float64) at columns `cols`,
    row `r` being `bounds[r]:bounds[r + 1]` (`row_of`: each entry's row): `_Features`' two ways of counting
    share this, so both give the same floats."""
    n_rows = len(bounds) - 1
    data = numpy.log(counts) + 1.0 if sublinear else counts
    data = data * idf[cols]
    norms = numpy.sqrt(numpy.bincount(row_of, weights=data * data, minlength=n_rows))
    data = data / numpy.where(norms > 0, norms, 1.0)[row_of]
    return sparse.csr_matrix((data.astype(numpy.float32), cols, bounds), shape=(n_rows, len(idf)), dtype=numpy.float32)


def _vocabulary_list(vectorizer) -> list[str]:
    terms = [""] * len(vectorizer.vocabulary_)
    for term, index in vectorizer.vocabulary_.items():
        terms[index] = term
    return terms


def _normalize_rows(embeddings: numpy.ndarray) -> numpy.ndarray:
    embeddings = numpy.asarray(embeddings, dtype=numpy.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array, got shape {embeddings.shape}")
    norms = numpy.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / numpy.clip(norms, 1e-12, None)


# ---------------------------------------------------------------------------------------------
# Pieces shared by fitting and predicting
# ---------------------------------------------------------------------------------------------


def _fit_svm(features: sparse.csr_matrix, y: numpy.ndarray, random_state: int):
    """One LinearSVC fit. `random_state` seeds liblinear's shuffling of the examples: without it the seed is
    drawn from NumPy's global generator, so two fits of the same data differed (by about 1e-5 in the
    weights) and no refit, sequential or in another process, could reproduce a model."""
    from sklearn.svm import LinearSVC  # lazily, as in _vectorizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LinearSVC(C=SVM_C, tol=SVM_TOL, max_iter=5000, random_state=random_state)
        model.fit(features, y)
    weights = numpy.asarray(model.coef_, dtype=numpy.float32)
    bias = numpy.asarray(model.intercept_, dtype=numpy.float32)
    classes = numpy.asarray(model.classes_)
    if weights.shape[0] == 1:  # binary LinearSVC: one row scoring class 1 against class 0
        weights = numpy.vstack([-weights, weights])
        bias = numpy.concatenate([-bias, bias])
    return weights, bias, classes


class _NgramTable:
    """Every analysed text's n-grams as ids into one table of the distinct n-grams, with their counts.

    Per text (`row`), its entries (`bounds[r]:bounds[r + 1]` of `ids`, `counts`) are its distinct n-grams
    in order of first occurrence: the order `_Features._tfidf` puts them in."""

    def __init__(self, ngrams: dict[str, list[str]]) -> None:
        index: dict[str, int] = {}
        ids: list[int] = []
        counts: list[int] = []
        bounds = [0]
        self.row: dict[str, int] = {}
        for r, (text, grams) in enumerate(ngrams.items()):
            self.row[text] = r
            seen: dict[int, int] = {}
            for gram in grams:
                j = index.setdefault(gram, len(index))
                seen[j] = seen.get(j, 0) + 1
            ids.extend(seen)
            counts.extend(seen.values())
            bounds.append(len(ids))
        self.terms = list(index)
        self.ids = numpy.asarray(ids, dtype=numpy.int64)
        self.counts = numpy.asarray(counts, dtype=numpy.int64)
        self.bounds = numpy.asarray(bounds, dtype=numpy.int64)
        #: Term ids in scikit-learn's vocabulary order (sorted terms).
        self.alphabetical = numpy.asarray(sorted(range(len(self.terms)), key=self.terms.__getitem__), dtype=numpy.int64)

    def entries(self, texts: Sequence[str]) -> tuple[numpy.ndarray, numpy.ndarray]:
        """The positions in `ids`/`counts` of the entries of `texts`, one text after the other, and how many
        entries each text has."""
        rows = numpy.asarray([self.row[t] for t in texts], dtype=numpy.int64)
        starts = self.bounds[rows]
        lengths = self.bounds[rows + 1] - starts
        offsets = numpy.cumsum(lengths) - lengths
        return numpy.repeat(starts - offsets, lengths) + numpy.arange(int(lengths.sum())), lengths


class _Neighbours:
    """Training embeddings grouped by class, for per-class nearest-example similarity."""

    def __init__(self, embeddings: numpy.ndarray, y: numpy.ndarray, n_classes: int) -> None:
        order = numpy.argsort(y, kind="stable")
        self.embeddings = numpy.ascontiguousarray(embeddings[order], dtype=numpy.float32)
        self.y = numpy.asarray(y, dtype=numpy.int64)[order]
        self.present, self.starts = numpy.unique(self.y, return_index=True)
        self.n_classes = n_classes

    def class_similarity(self, query: numpy.ndarray) -> numpy.ndarray:
        """Per-class maximum cosine similarity, shape (n_query, n_classes); -1 where a class has no example."""
        out = numpy.full((query.shape[0], self.n_classes), -1.0, dtype=numpy.float32)
        if len(self.embeddings):
            query = numpy.asarray(query, dtype=numpy.float32)
            if query.shape[0] <= 16:
                # A threaded BLAS matrix-vector product is slower here than a plain loop (and
                # competes with the web or worker process for the cores); einsum avoids BLAS.
                sims = numpy.einsum("ij,kj->ik", query, self.embeddings, optimize=False)
            else:
                sims = query @ self.embeddings.T
            out[:, self.present] = numpy.maximum.reduceat(sims, self.starts, axis=1)
        return out


def _class_similarity(query: numpy.ndarray, train: numpy.ndarray, train_y: numpy.ndarray, n_classes: int):
    return _Neighbours(train, train_y, n_classes).class_similarity(query)


def _meta_features(probabilities: numpy.ndarray, class_sims: numpy.ndarray) -> numpy.ndarray:
    rows = numpy.arange(probabilities.shape[0])
    top = probabilities.argmax(axis=1)
    ordered = numpy.sort(probabilities, axis=1)
    p1 = numpy.log(ordered[:, -1] + 1e-9)
    p2 = numpy.log(ordered[:, -2] + 1e-9) if probabilities.shape[1] > 1 else numpy.full_like(p1, -20.0)
    nearest = class_sims.max(axis=1)
    return numpy.column_stack(
        [
            p1,
            p1 - p2,
            (class_sims.argmax(axis=1) == top).astype(numpy.float32),
            class_sims[rows, top],
            nearest,
        ]
    ).astype(numpy.float64)


def _fit_temperature(scores: numpy.ndarray, y: numpy.ndarray) -> float:
    # Imported here, as scikit-learn in `fit`: only fitting needs it, and it costs most of a second of every
    # process's start (workers and web processes load this module to predict).
    from scipy.optimize import minimize_scalar

    rows = numpy.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(scores / numpy.exp(log_t), axis=1)[rows, y].mean())

    result = minimize_scalar(nll, bounds=(numpy.log(0.01), numpy.log(100.0)), method="bounded")
    return float(numpy.exp(result.x))


@dataclass(frozen=True)
class _FitData:
    """What every fit of one `IntentClassifier.fit` reads. A forked child has it in its memory as it is."""

    texts: list[str]
    embeddings: numpy.ndarray
    y: numpy.ndarray
    n_classes: int
    analyses: _Analyses
    random_state: int


def _fold_job(data: _FitData, train_idx: numpy.ndarray, test_idx: numpy.ndarray):
    """Fit on `train_idx`, return SVM scores and per-class similarities for `test_idx`."""
    texts, embeddings, y, n_classes = data.texts, data.embeddings, data.y, data.n_classes
    sims = _class_similarity(embeddings[test_idx], embeddings[train_idx], y[train_idx], n_classes)
    if len(numpy.unique(y[train_idx])) < 2:  # nothing to learn from: every category equally likely
        return numpy.zeros((len(test_idx), n_classes)), sims
    train_texts = [texts[i] for i in train_idx]
    features = _Features.fit(train_texts, data.analyses)
    weights, bias, classes = _fit_svm(
        features.transform(train_texts, embeddings[train_idx]), y[train_idx], data.random_state
    )
    test_texts = [texts[i] for i in test_idx]
    raw = numpy.asarray(features.transform(test_texts, embeddings[test_idx]) @ weights.T) + bias
    # Categories missing from this fold's training part can never win.
    scores = numpy.full((len(test_idx), n_classes), raw.min() - 10.0 if raw.size else -10.0, dtype=numpy.float64)
    scores[:, classes] = raw
    return scores, sims


def _final_job(data: _FitData):
    """The final model on every example: its vectorisers (rebuilt by the caller into `_Features` that analyse
    text themselves, which is all a child needs to send back), weights, bias and classes."""
    features = _Features.fit(data.texts, data.analyses)
    weights, bias, classes = _fit_svm(features.transform(data.texts, data.embeddings), data.y, data.random_state)
    return features.word, features.char, weights, bias, classes


#: With fewer examples than this, `fit` fits in its own process whatever `processes` says: the whole fit then
#: takes a second or so, and processes saved nothing measurable (300 and 1,000 of banking77's examples on the
#: shared 2-core machine: within the noise either way).
PARALLEL_MIN_EXAMPLES = 1000


class _Fits:
    """Runs the fits of one `IntentClassifier.fit` (the final model, the cross-validation folds, the
    unseen-category groups; independent of one another) in this process, or side by side in `processes`
    forked processes. The results are the same to the bit: each fit is deterministic (`_fit_svm`'s seed),
    and a child runs the same code on the same arrays.

    Why processes and not threads (the joblib threading backend this replaces): liblinear draws its
    shuffles from one random generator per process (scikit-learn's ``newrand.h``), so two fits in threads
    interleave their draws in whatever order the scheduler gives and the models change from run to run;
    and the feature work around each fit is Python, which holds the GIL. Why forked processes on
    `concurrent.futures` and not joblib's process backends or scikit-learn's ``n_jobs``: LinearSVC has no
    ``n_jobs`` (a ``OneVsRestClassifier`` would split the classes into separate liblinear runs, a different
    model); joblib's loky backend starts fresh interpreters, and both of its process backends pickle every
    call's arguments, here the analysed texts (on banking77's examples 34 MB, half a second to pickle and
    unpickle, eleven times), where a forked child has them in memory (handed over as the initializer's
    arguments, which a fork does not pickle); and a job submitted on its own (the final model) runs while
    the caller works out what to fit next.
    The children touch no database and exit without running the parent's finalisers (as in
    `integrations.embeddings.embed_in_processes`).
    """

    def __init__(self, data: _FitData, *, processes: int) -> None:
        import multiprocessing

        self.data = data
        self._executor: Any = None
        if processes > 1 and len(data.texts) >= PARALLEL_MIN_EXAMPLES and not multiprocessing.current_process().daemon:
            # The n-gram tables are built on first use: here, once, not in every child.
            if data.analyses.usable:
                data.analyses.table("word")
                data.analyses.table("char")
            self._executor = ForkPool(
                min(processes, CV_FOLDS + 1),  # at most the folds and the final model at once
                initializer=_fits_child_start,
                initargs=(data,),
            )

    def submit(self, job, *args):
        """`job(data, *args)`, as a future (run at once, here, without processes)."""
        from concurrent.futures import Future

        if self._executor is not None:
            return self._executor.submit(_fits_child_run, job, *args)
        done: Future = Future()
        done.set_result(job(self.data, *args))
        return done

    def __enter__(self) -> _Fits:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


_fits_child_data: _FitData | None = None


def _fits_child_start(data: _FitData) -> None:
    global _fits_child_data
    _fits_child_data = data


def _fits_child_run(job, *args):
    assert _fits_child_data is not None
    return job(_fits_child_data, *args)


def _unseen_category_scores(
    *,
    fits: _Fits,
    temperature: float,
    confidence_of: Any,
    oos_similarity: float,
    in_scope_count: int,
    random_state: int,
) -> tuple[numpy.ndarray, numpy.ndarray, int]:
    """Confidence and predicted class of unseen-category examples the similarity filter lets through,
    and how many were scored (`_unseen_category_sample`). `confidence_of`: the fitted confidence model over
    meta features (None: the top softmax probability, as `predict` does without one)."""
    scores, sims, sampled = _unseen_category_sample(fits=fits, in_scope_count=in_scope_count, random_state=random_state)
    if not sampled:
        return numpy.zeros(0), numpy.zeros(0, dtype=numpy.int64), 0
    probs = softmax(scores / temperature, axis=1)
    confidence = confidence_of(_meta_features(probs, sims)) if confidence_of is not None else probs.max(axis=1)
    passes = sims.max(axis=1) >= oos_similarity
    return confidence[passes], probs.argmax(axis=1)[passes], sampled


def _unseen_category_sample(
    *, fits: _Fits, in_scope_count: int, random_state: int
) -> tuple[numpy.ndarray, numpy.ndarray, int]:
    """SVM scores and per-category similarities of a sample of unseen-category examples (see the module
    docstring), and how many were scored (0: none, and the arrays are empty).

    A sample sized so that it makes :data:`OUT_OF_SCOPE_SHARE` of the calibration data is drawn; the
    categories are split into groups, and each group's sampled examples are scored by a model fitted on
    every other category's examples (with `_fold_job`, which gives categories missing from training no
    chance to win)."""
    y, n_classes = fits.data.y, fits.data.n_classes
    empty = numpy.zeros((0, n_classes)), numpy.zeros((0, n_classes), dtype=numpy.float32), 0
    if n_classes < 3 or OUT_OF_SCOPE_SHARE <= 0.0:  # a model needs two categories after one is left out
        return empty
    rng = numpy.random.default_rng(random_state)
    want = min(len(y), round(in_scope_count * OUT_OF_SCOPE_SHARE / (1.0 - OUT_OF_SCOPE_SHARE)))
    if want == 0:
        return empty
    sampled = numpy.sort(rng.choice(len(y), size=want, replace=False))
    groups = numpy.arange(n_classes)
    rng.shuffle(groups)
    group_of_class = numpy.empty(n_classes, dtype=numpy.int64)
    n_groups = min(CV_FOLDS, n_classes)
    group_of_class[groups] = numpy.arange(n_classes) % n_groups
    jobs, tests = [], []
    for g in range(n_groups):
        train_idx = numpy.flatnonzero(group_of_class[y] != g)
        test_idx = sampled[group_of_class[y[sampled]] == g]
        if len(test_idx) and len(numpy.unique(y[train_idx])) >= 2:
            jobs.append(fits.submit(_fold_job, train_idx, test_idx))
            tests.append(test_idx)
    if not jobs:
        return empty
    results = [job.result() for job in jobs]
    scores = numpy.concatenate([r[0] for r in results])
    sims = numpy.concatenate([r[1] for r in results])
    return scores, sims, int(sum(len(t) for t in tests))


def _confidence_fit(
    x: numpy.ndarray, correct: numpy.ndarray, *, folds: int, random_state: int
) -> tuple[numpy.ndarray, numpy.ndarray, float]:
    """The confidence model, P(top label right | `x`): a logistic regression's out-of-fold predictions over
    `folds` inner folds, then its coefficients and intercept fitted on every row."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    meta = LogisticRegression(C=1.0, max_iter=5000)
    out_of_fold = numpy.zeros(len(correct))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=random_state).split(x, correct):
        meta.fit(x[tr], correct[tr])
        out_of_fold[te] = meta.predict_proba(x[te])[:, 1]
    meta.fit(x, correct)
    return out_of_fold, meta.coef_[0].copy(), float(meta.intercept_[0])


def _default_processes() -> int:
    """Processes for the fits when the caller names none: ``CLASSIFIER_JOBS``, else one per core up to four
    (the most a fit's phases can use well: five folds with the final model, then five groups)."""
    raw = os.environ.get("CLASSIFIER_JOBS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, min(4, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------------------------


class IntentClassifier:
    """See the module docstring. Build with :meth:`fit` or :meth:`from_bytes`."""

    labels: tuple[str, ...]
    suggested_threshold: float

    def __init__(
        self,
        *,
        labels: tuple[str, ...],
        features: _Features,
        weights: numpy.ndarray,
        bias: numpy.ndarray,
        temperature: float,
        train_embeddings: numpy.ndarray,
        train_y: numpy.ndarray,
        meta_coef: numpy.ndarray | None,
        meta_intercept: float,
        oos_similarity: float,
        suggested_threshold: float,
        stats: dict[str, Any] | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self._features = features
        self._weights = numpy.asarray(weights, dtype=numpy.float32)
        self._bias = numpy.asarray(bias, dtype=numpy.float32)
        self._temperature = float(temperature)
        self._weights_t = numpy.ascontiguousarray(self._weights.T)
        self._neighbours = _Neighbours(numpy.asarray(train_embeddings, dtype=numpy.float32), train_y, len(self.labels))
        self._meta_coef = None if meta_coef is None else numpy.asarray(meta_coef, dtype=numpy.float64)
        self._meta_intercept = float(meta_intercept)
        self.oos_similarity = float(oos_similarity)
        self.suggested_threshold = float(suggested_threshold)
        #: Cross-validation figures on the examples (for reports; not used to predict).
        self.stats: dict[str, Any] = dict(stats or {})
        #: Out-of-fold `scores`, `correct` and predicted `categories` of the in-scope examples, as lists
        #: (set by :meth:`fit`; empty on a classifier read back from bytes: the row keeps its own copy).
        self.calibration: dict[str, Any] = {}

    # -- fitting ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        *,
        texts: Sequence[str],
        embeddings: numpy.ndarray,
        labels: Sequence[str],
        random_state: int = 0,
        processes: int | None = None,
    ) -> IntentClassifier:
        """Fit on the examples (module docstring). `random_state` seeds the folds, the unseen-category
        sample and every SVM fit: the same inputs give the same model. `processes`: the independent fits
        run side by side in up to that many forked processes (default: `_default_processes`), with the
        same result as one after the other (`_Fits`)."""
        # Lazily, as in _vectorizer: only fitting needs these.
        from sklearn.model_selection import KFold, StratifiedKFold

        texts = ["" if t is None else str(t) for t in texts]
        labels = [str(label) for label in labels]
        embeddings = _normalize_rows(embeddings)
        if not (len(texts) == len(labels) == embeddings.shape[0]):
            raise ValueError(
                f"texts ({len(texts)}), embeddings ({embeddings.shape[0]}) and labels ({len(labels)}) differ in length"
            )
        label_names = tuple(sorted(set(labels)))
        if len(label_names) < 2:
            raise ValueError("the classifier needs examples of at least two categories")
        index = {name: i for i, name in enumerate(label_names)}
        y = numpy.asarray([index[label] for label in labels], dtype=numpy.int64)
        n_classes = len(label_names)
        counts = numpy.bincount(y, minlength=n_classes)

        # Out-of-fold scores on the examples (the folds' fits run side by side with the final model's).
        if counts.max() >= 2:
            n_splits = min(CV_FOLDS, int(counts.max()), max(2, int(counts.min())))
            splitter = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
        else:  # one example per category: plain folds
            n_splits = int(min(CV_FOLDS, len(texts)))
            splitter = KFold(n_splits, shuffle=True, random_state=random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "least populated class has only 1 member"
            folds = list(splitter.split(texts, y))
        data = _FitData(
            texts=texts,
            embeddings=embeddings,
            y=y,
            n_classes=n_classes,
            analyses=_Analyses(texts),
            random_state=random_state,
        )
        with _Fits(data, processes=_default_processes() if processes is None else processes) as fits:
            model = cls._fit(fits=fits, folds=folds, label_names=label_names, random_state=random_state)
        return model

    @classmethod
    def _fit(
        cls,
        *,
        fits: _Fits,
        folds: list[tuple[numpy.ndarray, numpy.ndarray]],
        label_names: tuple[str, ...],
        random_state: int,
    ) -> IntentClassifier:
        """`fit` once the folds are drawn, its fits run by `fits`."""

        texts, embeddings, y, n_classes = fits.data.texts, fits.data.embeddings, fits.data.y, fits.data.n_classes
        n_splits = len(folds)
        fold_jobs = [fits.submit(_fold_job, tr, te) for tr, te in folds]
        # Submitted after the folds: it runs while this process works out the unseen-category groups.
        final_job = fits.submit(_final_job)
        oof_scores = numpy.zeros((len(texts), n_classes))
        oof_sims = numpy.zeros((len(texts), n_classes), dtype=numpy.float32)
        for (_, test_idx), job in zip(folds, fold_jobs, strict=True):
            oof_scores[test_idx], oof_sims[test_idx] = job.result()

        temperature = _fit_temperature(oof_scores, y)
        oof_top = oof_scores.argmax(axis=1)
        correct = oof_top == y
        nearest = oof_sims.max(axis=1)
        n_wrong = int((~correct).sum())
        use_meta = n_wrong >= MIN_META_EXAMPLES and int(correct.sum()) >= MIN_META_EXAMPLES
        if not use_meta:
            temperature = max(temperature, FALLBACK_MIN_TEMPERATURE)
        oof_probs = softmax(oof_scores / temperature, axis=1)

        # Calibrated confidence: P(top label right | features), fitted out of fold.
        meta_coef, meta_intercept = None, 0.0
        if use_meta:
            oof_conf, meta_coef, meta_intercept = _confidence_fit(
                _meta_features(oof_probs, oof_sims), correct, folds=int(min(5, n_wrong)), random_state=random_state
            )
        else:  # too few mistakes to learn from: the temperature-scaled top probability
            oof_conf = oof_probs.max(axis=1)

        oos_similarity = max(MIN_NEAREST_SIMILARITY, float(numpy.percentile(nearest, OOS_PERCENTILE)))
        in_scope = nearest >= oos_similarity
        # What the risk chooser calibrates on: examples the final model's confidence would be judged by,
        # each scored by models that never saw it (the meta model's scores are themselves out of fold),
        # then the unseen-category examples the similarity filter lets through, always wrong.
        unseen_conf, unseen_top, unseen_sampled = _unseen_category_scores(
            fits=fits,
            temperature=temperature,
            confidence_of=None if meta_coef is None else (lambda x: expit(x @ meta_coef + meta_intercept)),
            oos_similarity=oos_similarity,
            in_scope_count=int(in_scope.sum()),
            random_state=random_state,
        )
        scores_all = numpy.concatenate([oof_conf[in_scope], unseen_conf])
        correct_all = numpy.concatenate([correct[in_scope], numpy.zeros(len(unseen_conf), dtype=bool)])
        predicted = [label_names[int(i)] for i in oof_top[in_scope]] + [label_names[int(i)] for i in unseen_top]
        calibration: dict[str, Any] = {
            "scores": [round(float(c), 6) for c in scores_all],
            "correct": [bool(c) for c in correct_all],
            "categories": predicted,
            # Provenance: how many unseen-category examples were scored, and how many passed the filter
            # (those are the last entries of the lists above).
            "out_of_scope_sampled": unseen_sampled,
            "out_of_scope_in_calibration": len(unseen_conf),
        }
        choice = thresholds_choose(
            scores=scores_all,
            correct=correct_all,
            categories=predicted,
            target=DEFAULT_TARGET,
            confidence=DEFAULT_CONFIDENCE,
            min_per_category=DEFAULT_MIN_PER_CATEGORY,
        )
        threshold = 1.0 if choice.threshold is None else choice.threshold
        covered = in_scope & (oof_conf >= threshold)  # cv figures: the in-scope examples only
        stats = {
            "examples": len(texts),
            "cv_folds": n_splits,
            "cv_accuracy": float(correct.mean()),
            "cv_coverage_at_threshold": float(covered.mean()),
            "cv_precision_at_threshold": float(correct[covered].mean()) if covered.any() else None,
            "target_mishandled_rate": DEFAULT_TARGET,
            "guarantee_confidence": DEFAULT_CONFIDENCE,
            "temperature": temperature,
            "confidence_model": "logistic" if use_meta else "softmax",
        }
        word, char, weights, bias, classes = final_job.result()
        full_weights = numpy.zeros((n_classes, weights.shape[1]), dtype=numpy.float32)
        full_bias = numpy.full(n_classes, -1e3, dtype=numpy.float32)
        full_weights[classes] = weights
        full_bias[classes] = bias
        model = cls(
            labels=label_names,
            features=_Features(word, char),
            weights=full_weights,
            bias=full_bias,
            temperature=temperature,
            train_embeddings=embeddings,
            train_y=y,
            meta_coef=meta_coef,
            meta_intercept=meta_intercept,
            oos_similarity=oos_similarity,
            suggested_threshold=threshold,
            stats=stats,
        )
        model.calibration = calibration
        return model

    # -- predicting ------------------------------------------------------------------------

    def predict(self, *, texts: Sequence[str], embeddings: numpy.ndarray) -> list[Prediction]:
        texts = ["" if t is None else str(t) for t in texts]
        if len(texts) == 0:
            return []
        embeddings = _normalize_rows(numpy.asarray(embeddings).reshape(len(texts), -1))
        if embeddings.shape[1] != self._neighbours.embeddings.shape[1]:
            raise ValueError(
                f"embeddings have {embeddings.shape[1]} dimensions; the classifier was trained on "
                f"{self._neighbours.embeddings.shape[1]}"
            )
        scores = numpy.asarray(self._features.transform(texts, embeddings) @ self._weights_t) + self._bias
        probs = softmax(scores.astype(numpy.float64) / self._temperature, axis=1)
        sims = self._neighbours.class_similarity(embeddings)
        if self._meta_coef is not None:
            confidence = expit(_meta_features(probs, sims) @ self._meta_coef + self._meta_intercept)
        else:
            confidence = probs.max(axis=1)
        nearest = sims.max(axis=1)

        k = min(3, len(self.labels))
        top_k = numpy.argsort(-probs, axis=1, kind="stable")[:, :k]
        out = []
        for i in range(len(texts)):
            out_of_scope = bool(nearest[i] < self.oos_similarity)
            best = int(top_k[i, 0])
            out.append(
                Prediction(
                    label=None if out_of_scope else self.labels[best],
                    confidence=float(numpy.clip(confidence[i], 0.0, 1.0)),
                    alternatives=tuple((self.labels[j], float(probs[i, j])) for j in top_k[i]),
                    out_of_scope=out_of_scope,
                    nearest_similarity=float(nearest[i]),
                    probabilities=tuple(float(p) for p in probs[i]),
                )
            )
        return out

    # -- storage ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        header = {
            "magic": _MAGIC,
            "format_version": FORMAT_VERSION,
            "labels": list(self.labels),
            "temperature": self._temperature,
            "meta_intercept": self._meta_intercept,
            "has_meta": self._meta_coef is not None,
            "oos_similarity": self.oos_similarity,
            "suggested_threshold": self.suggested_threshold,
            "word_params": _jsonable(self._features.word.get_params()),
            "char_params": _jsonable(self._features.char.get_params()),
            "word_vocabulary": _vocabulary_list(self._features.word),
            "char_vocabulary": _vocabulary_list(self._features.char),
            "stats": self.stats,
        }
        arrays = {
            "header": numpy.frombuffer(json.dumps(header).encode("utf-8"), dtype=numpy.uint8),
            "weights": self._weights,
            "bias": self._bias,
            "word_idf": numpy.asarray(self._features.word.idf_, dtype=numpy.float64),
            "char_idf": numpy.asarray(self._features.char.idf_, dtype=numpy.float64),
            # Half precision is plenty for cosine similarities and halves the blob.
            "train_embeddings": self._neighbours.embeddings.astype(numpy.float16),
            "train_y": self._neighbours.y.astype(numpy.int32),
            "meta_coef": numpy.zeros(5) if self._meta_coef is None else self._meta_coef,
        }
        buffer = io.BytesIO()
        numpy.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> IntentClassifier:
        try:
            with numpy.load(io.BytesIO(bytes(raw)), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            header = json.loads(arrays["header"].tobytes().decode("utf-8"))
        except Exception as exc:
            raise ClassifierFormatError(f"not a stored intent classifier: {exc}") from exc
        if header.get("magic") != _MAGIC:
            raise ClassifierFormatError("not a stored intent classifier")
        if header.get("format_version") != FORMAT_VERSION:
            raise ClassifierFormatError(
                f"stored classifier format {header.get('format_version')} is not the supported "
                f"format {FORMAT_VERSION}; retrain the classifier"
            )
        word = _vectorizer(_params_from_json(header["word_params"]), header["word_vocabulary"])
        word.idf_ = arrays["word_idf"]
        char = _vectorizer(_params_from_json(header["char_params"]), header["char_vocabulary"])
        char.idf_ = arrays["char_idf"]
        return cls(
            labels=tuple(header["labels"]),
            features=_Features(word, char),
            weights=arrays["weights"],
            bias=arrays["bias"],
            temperature=header["temperature"],
            train_embeddings=arrays["train_embeddings"].astype(numpy.float32),
            train_y=arrays["train_y"].astype(numpy.int64),
            meta_coef=arrays["meta_coef"] if header["has_meta"] else None,
            meta_intercept=header["meta_intercept"],
            oos_similarity=header["oos_similarity"],
            suggested_threshold=header["suggested_threshold"],
            stats=header.get("stats"),
        )


_PARAM_KEYS = ("analyzer", "ngram_range", "sublinear_tf", "token_pattern", "lowercase", "norm", "use_idf", "smooth_idf")


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in _PARAM_KEYS:
        value = params.get(key)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if k in _PARAM_KEYS and v is not None}
    if "analyzer" in out and out["analyzer"] not in ("word", "char", "char_wb"):
        raise ClassifierFormatError(f"unsupported analyzer {out['analyzer']!r}")
    if "ngram_range" in out:
        out["ngram_range"] = tuple(int(n) for n in out["ngram_range"])
    return out
