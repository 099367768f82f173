"""Exact cosine DBSCAN: labels identical to scikit-learn on real and synthetic sets, boundary included;
representatives; the embedding cache; the `cluster` command in-process."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.cluster import DBSCAN

from engine.clustering import neighbors
from engine.clustering.boundary import (
    _threshold,
    normalize_like_sklearn,
    prepare,
    sklearn_decides,
    sklearn_similarities,
)
from engine.clustering.dbscan import cluster_texts, dbscan, labels_from_graph, representatives
from engine.errors import ConfigError, ModelError


def sklearn_labels(X, eps, min_samples):
    return DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(X).labels_


def assert_same(X, eps, min_samples, **kwargs):
    ours = dbscan(X, eps, min_samples, show_progress=False, **kwargs)
    ref = sklearn_labels(X, eps, min_samples)
    assert np.array_equal(ours.labels, ref), (
        f"eps={eps} min_samples={min_samples}: {int((ours.labels != ref).sum())} labels differ"
    )
    return ours


# ---- data ---------------------------------------------------------------------------------------------


def _instructions(shared_data):
    texts = []
    for name in ("self_instruct_seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        texts += [json.loads(line)["instruction"] for line in (shared_data / name).read_text().splitlines()]
    return texts


def _tag_phrases(texts, n):
    """Short n-grams of real instructions: tag-like, with many near-duplicates."""
    grams = {
        " ".join(w[i : i + k])
        for t in texts
        for w in [re.findall(r"[a-z]+", t.lower())]
        for k in (2, 3)
        for i in range(len(w) - k + 1)
    }
    ordered = sorted(grams)
    return [ordered[i] for i in np.random.default_rng(0).permutation(len(ordered))[:n]]


def _explore_instructions(shared_data, per_node=25):
    out = []
    for node in sorted((shared_data / "explore_instruct_demo_domain").glob("*.json")):
        out += [ex["instruction"] for ex in json.loads(node.read_text()).get("examples", [])[:per_node]]
    return list(dict.fromkeys(out))


@pytest.fixture(scope="session")
def embedder(tmp_path_factory):
    from engine.embeddings import Embedder

    return Embedder(cache_dir=tmp_path_factory.mktemp("cache"), show_progress=False)


@pytest.fixture(scope="session")
def real_sets(shared_data, embedder):
    instructions = _instructions(shared_data)
    sets = {
        "instructions": instructions,
        "tag_phrases": _tag_phrases(instructions, 300),
        "explore": _explore_instructions(shared_data),
    }
    return {name: embedder.embed(texts) for name, texts in sets.items()}


def sphere_clusters(n, d, centers, spread, rng, dtype=np.float32):
    C = rng.standard_normal((centers, d))
    X = C[rng.integers(0, centers, n)] / np.sqrt(d) + spread * rng.standard_normal((n, d)) / np.sqrt(d)
    return (X * rng.uniform(0.5, 3.0, (n, 1))).astype(dtype)  # unnormalized on purpose


def boundary_pairs(n_pairs, d, eps, spread, rng, dtype):
    """Pairs whose cosine is 1 - eps +- spread: decided by rounding, in a chain of interacting points."""
    U = rng.standard_normal((n_pairs, d))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    W = rng.standard_normal((n_pairs, d))
    W -= (W * U).sum(1, keepdims=True) * U
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    c = 1 - eps + rng.uniform(-spread, spread, n_pairs)
    X = np.empty((2 * n_pairs, d))
    X[0::2], X[1::2] = U, U * c[:, None] + W * np.sqrt(1 - c**2)[:, None]
    return (X * rng.uniform(0.5, 2.0, (2 * n_pairs, 1))).astype(dtype)


# ---- sklearn's arithmetic -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_and_threshold_are_sklearns(dtype):
    from sklearn.preprocessing import normalize

    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 40)).astype(dtype)
    X[3] = 0
    X[7] *= 1e-9  # below sklearn's "10 ulp" floor: left unnormalized
    assert np.array_equal(normalize_like_sklearn(X), normalize(X))
    for eps in (1e-7, 0.05, 0.1, 0.3, 0.999999, 1.0, 1.5):
        t = _threshold(eps, np.dtype(dtype))
        below = np.nextafter(np.array(t, dtype=dtype), dtype(-2))
        assert sklearn_decides(np.array([t], dtype=dtype), eps)[0]
        assert not sklearn_decides(np.array([below]), eps)[0]
    assert _threshold(2.0, np.dtype(dtype)) == -np.inf


def test_boundary_floats_are_sklearns():
    """Pairs inside the rounding window get sklearn's own float, in every chunk layout."""
    from sklearn.metrics.pairwise import cosine_distances

    rng = np.random.default_rng(2)
    X = boundary_pairs(300, 64, 0.05, 1e-6, rng, np.float32)
    rows, cols = rng.integers(0, len(X), 500), rng.integers(0, len(X), 500)
    for working_memory in (1024, 1, 0.005):  # one chunk (SYRK), chunks, one-row chunks (GEMV)
        with sklearn.config_context(working_memory=working_memory), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns that 0.005 MiB is less than one row
            Xn, rule = prepare(X, 0.05)
            D = np.vstack(
                [
                    cosine_distances(X[sl], X)
                    for sl in (slice(s, s + rule.chunk_rows) for s in range(0, len(X), rule.chunk_rows))
                ]
            )
            if rule.single_chunk:
                D = cosine_distances(X)
        ours = sklearn_similarities(Xn, rule, rows, cols)
        assert np.array_equal(sklearn_decides(ours, 0.05), D[rows, cols] <= 0.05)


# ---- labels identical to sklearn ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["instructions", "tag_phrases", "explore"])
def test_real_sets_match_sklearn(real_sets, name):
    X = real_sets[name]
    clustered = 0
    for eps in (0.05, 0.1, 0.2, 0.3):
        for min_samples in (1, 2, 3, 5):
            clustered += assert_same(X, eps, min_samples).n_clusters
    assert clustered > 0


def test_projection_bound_path_matches_sklearn(real_sets, monkeypatch):
    """The k-dim bound pass (used from 4096 rows) on real embeddings, forced on a small set."""
    monkeypatch.setattr(neighbors, "PLAN_MIN_ROWS", 0)
    X = np.vstack([real_sets["tag_phrases"], real_sets["instructions"], real_sets["explore"]])
    for eps in (0.05, 0.2):
        result = assert_same(X, eps, 2)
        assert result.stats["projection_dims"] is not None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_synthetic_sphere_clusters_and_duplicates(dtype):
    rng = np.random.default_rng(3)
    X = sphere_clusters(1500, 32, 25, 0.25, rng, dtype)
    X = np.vstack([X, X[:40], X[:5] * 3.0])  # exact duplicates and scaled copies (distance ~0)
    for eps, min_samples in ((0.01, 2), (0.03, 3), (0.05, 5), (0.1, 10), (0.3, 4)):
        assert_same(X, eps, min_samples)


@pytest.mark.parametrize(
    ("dtype", "spread"), [(np.float32, 1e-6), (np.float32, 2e-5), (np.float64, 1e-14), (np.float64, 1e-12)]
)
def test_points_at_eps_match_sklearn_in_every_chunk_layout(dtype, spread):
    rng = np.random.default_rng(4)
    X = boundary_pairs(800, 48, 0.05, spread, rng, dtype)
    X = np.vstack([X, X[1::2][:100] * 1.5])  # a second point at the same boundary: chains clusters
    for working_memory in (1024, 0.5, 0.002):
        with sklearn.config_context(working_memory=working_memory), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = assert_same(X, 0.05, 2)
    assert result.stats["ambiguous"] > 0  # the test really exercises the boundary


def test_edge_cases_match_sklearn():
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((300, 64)).astype(np.float32)
    assert assert_same(noise, 0.05, 2).n_clusters == 0  # all noise
    one = (np.ones((50, 8)) + 1e-4 * rng.standard_normal((50, 8))).astype(np.float32)
    assert assert_same(one, 0.05, 3).n_clusters == 1  # a single cluster
    assert assert_same(noise, 2.0, 5).n_clusters == 1  # eps = 2: everything is a neighbour
    assert assert_same(noise, 0.05, 1).n_clusters == 300  # min_samples = 1: every point is core
    with_zero = np.vstack([noise[:20], np.zeros((3, 64), dtype=np.float32)])
    for eps in (0.05, 0.999, 1.0, 1.2):
        assert_same(with_zero, eps, 2)  # zero rows: distance 1 to everything
    for eps in (0.3, 1e-9):  # a Fortran-ordered X is copied twice by sklearn: no forced self-distance 0
        assert_same(with_zero, eps, 1)
        assert_same(np.asfortranarray(with_zero), eps, 1)
    assert_same(noise[:1], 0.05, 1)
    assert dbscan(np.zeros((0, 4)), show_progress=False).labels.shape == (0,)
    assert_same(rng.integers(-3, 4, (80, 5)), 0.1, 2)  # integers become float64, as in sklearn


@pytest.mark.parametrize("min_samples", [1, 2, 3, 4])
def test_labels_from_graph_replays_sklearns_search(min_samples):
    """Symmetric and one-sided neighbourhood graphs against sklearn's own dbscan_inner."""
    import scipy.sparse as sp
    from sklearn.cluster._dbscan_inner import dbscan_inner

    rng = np.random.default_rng(6)
    for symmetric in (True, False):
        A = sp.random(400, 400, density=0.006, random_state=rng, format="csr").astype(bool)
        A = (A + A.T if symmetric else A) + sp.eye(400, dtype=bool, format="csr")
        A = sp.csr_array(A)
        A.sort_indices()
        hoods = np.empty(400, dtype=object)
        hoods[:] = [A.indices[A.indptr[i] : A.indptr[i + 1]].astype(np.intp) for i in range(400)]
        core = (np.diff(A.indptr) >= min_samples).astype(np.uint8)
        ref = np.full(400, -1, dtype=np.intp)
        dbscan_inner(core, hoods, ref)
        labels, _ = labels_from_graph(A, min_samples)
        assert np.array_equal(labels, ref)


def test_torch_backend_and_cuda_fallback_give_the_same_labels(real_sets, monkeypatch):
    X = real_sets["tag_phrases"]
    ref = sklearn_labels(X, 0.1, 2)
    if not neighbors._cuda_present():
        with pytest.warns(RuntimeWarning, match="no CUDA device"):
            assert np.array_equal(dbscan(X, 0.1, 2, device="cuda", show_progress=False).labels, ref)
    # The torch tile code itself (what runs on a GPU), here on the CPU.
    monkeypatch.setattr(
        neighbors._Tiles, "make", staticmethod(lambda F, device, threads: neighbors._TorchTiles(F, "cpu", 2))
    )
    result = dbscan(X, 0.1, 2, show_progress=False)
    assert np.array_equal(result.labels, ref) and result.stats["device"] == "cpu"


def test_bad_parameters_raise_config_errors():
    X = np.ones((3, 2))
    for kwargs, message in (
        ({"eps": 0}, "eps must be"),
        ({"eps": -1}, "eps must be"),
        ({"min_samples": 0}, "min_samples must be"),
        ({"min_samples": 2.5}, "min_samples must be"),
    ):
        with pytest.raises(ConfigError, match=message):
            dbscan(X, **kwargs, show_progress=False)
    with pytest.raises(ConfigError, match="NaN"):
        dbscan(np.array([[1.0, np.nan]]), show_progress=False)
    with pytest.raises(ConfigError, match="2-D"):
        dbscan(np.ones(3), show_progress=False)


# ---- representatives ----------------------------------------------------------------------------------


def test_representatives_most_frequent_ties_first_seen_noise_self():
    texts = ["b", "a", "a", "c", "d", "e", "f"]
    labels = [0, 0, 0, 1, 1, -1, 1]
    assert representatives(texts, labels) == {"b": "a", "a": "a", "c": "c", "d": "c", "e": "e", "f": "c"}
    counts = [5, 1, 1, 1, 2, 9, 2]  # b: 5 beats a: 2; d and f tie at 2, d seen first
    assert representatives(texts, labels, counts) == {
        "b": "b",
        "a": "b",
        "c": "d",
        "d": "d",
        "e": "e",
        "f": "d",
    }
    with pytest.raises(ConfigError, match="one entry per row"):
        representatives(["a"], [0, 1])


class GroupEmbedder:
    """Texts in one group share a direction; every other text is orthogonal to all."""

    def __init__(self, groups):
        self.axis = {t: i for i, g in enumerate(groups) for t in g}

    def embed(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, t in enumerate(texts):
            out[row, self.axis.setdefault(t, len(self.axis) + 8)] = 1
        return out


def test_cluster_texts_counts_rows_and_weights():
    texts = ["maths", "math", "math", "poem", "mathematics", "joke"]
    result = cluster_texts(
        texts, embedder=GroupEmbedder([["math", "maths", "mathematics"]]), show_progress=False
    )
    assert result.texts == ["maths", "math", "poem", "mathematics", "joke"]
    assert result.representative == {
        "maths": "math",
        "math": "math",
        "mathematics": "math",
        "poem": "poem",
        "joke": "joke",
    }
    weighted = cluster_texts(
        texts,
        counts=[10, 1, 1, 1, 1, 1],
        embedder=GroupEmbedder([["math", "maths", "mathematics"]]),
        show_progress=False,
    )
    assert weighted.representative["mathematics"] == "maths"
    assert weighted.largest(1)[0]["count"] == 13.0


# ---- embeddings ---------------------------------------------------------------------------------------


def test_embeddings_are_unit_float32_and_cached(tmp_path, monkeypatch):
    from engine.embeddings import Embedder
    from engine.models import packaged_embedding_model as default_model_path

    assert (default_model_path() / "modules.json").is_file()
    first = Embedder(cache_dir=tmp_path, show_progress=False)
    texts = ["grammar correction", "spelling check", "grammar correction"]
    vectors = first.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)
    assert np.array_equal(vectors[0], vectors[2]) and first.stats["embedded"] == 2
    assert list((tmp_path / "embeddings").glob("*.sqlite"))

    second = Embedder(cache_dir=tmp_path, show_progress=False)
    monkeypatch.setattr(second, "_load", lambda: pytest.fail("the model ran on a cached text"))
    assert np.array_equal(second.embed(texts), vectors)
    assert second.stats == {"texts": 3, "cache_hits": 3, "embedded": 0}
    monkeypatch.undo()
    partly = second.embed(["spelling check", "tone adjustment"])  # only the new text runs
    assert second.stats["embedded"] == 1 and np.array_equal(partly[0], vectors[1])


def test_embedder_rejects_unknown_models(tmp_path):
    from engine.embeddings import Embedder

    with pytest.raises(ModelError, match="neither `default`, a local folder"):
        Embedder(tmp_path / "no-such-model", cache_dir=tmp_path)


# ---- the `cluster` command ----------------------------------------------------------------------------


def test_cluster_command_writes_rows_and_summary(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("INSTRUCTFORGE_CACHE_DIR", str(tmp_path / "cache"))
    rows = [
        {"id": i, "tag": t}
        for i, t in enumerate(
            [
                "grammar correction",
                "grammar correction",
                "grammar corrections",
                "poem writing",
                "cooking recipe",
                "grammar correction",
                "poem writing",
                "poems writing",
            ]
        )
    ]
    src = tmp_path / "tags.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "clustered.jsonl"
    code, stdout, _ = run_cli(["cluster", "-i", str(src), "--field", "tag", "--eps", "0.1", "-o", str(out)])
    assert code == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == list(range(8))
    assert written[2]["representative"] == "grammar correction" and written[2]["cluster"] >= 0
    assert written[4]["cluster"] == -1 and written[4]["representative"] == "cooking recipe"
    summary = json.loads((tmp_path / "clustered.summary.json").read_text())
    assert summary["rows"] == 8 and summary["distinct_texts"] == 5 and summary["noise"] == 1
    assert summary["largest_clusters"][0]["representative"] == "grammar correction"
    assert stdout.strip().splitlines()[-1].startswith("cluster: 8 rows, 5 distinct texts")


def test_cluster_command_bad_input_is_one_line(tmp_path, run_cli):
    src = tmp_path / "tags.jsonl"
    src.write_text('{"tag": "a"}\n{"name": "b"}\n')
    code, _, err = run_cli(["cluster", "-i", str(src), "--field", "tag", "-o", str(tmp_path / "o.jsonl")])
    assert code == 2 and err.strip() == f"error: {src}:2: field `tag`: missing (record has: name)"
    code, _, err = run_cli(["cluster", "-i", str(src), "--eps", "0", "-o", str(tmp_path / "o.jsonl")])
    assert code == 2 and "eps must be a number > 0" in err and len(err.strip().splitlines()) == 1
    src.write_text('{"tag": "a"}\n{"tag": "b"}\n')
    code, _, err = run_cli(
        ["cluster", "-i", str(src), "--field", "tag", "--device", "tpu", "-o", str(tmp_path / "o")]
    )
    assert code == 2 and "unknown device 'tpu'" in err and len(err.strip().splitlines()) == 1
