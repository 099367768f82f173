"""ROUGE-L filter (SELF-INSTRUCT §2.2): parity with rouge_score on the real instructions in ../shared/data.

Scores must equal rouge_score's, and every greedy keep/drop decision must equal a plain greedy loop's.
"""

from __future__ import annotations

import glob
import json
import random

import numpy as np
import pytest
from rouge_score import rouge_scorer, tokenizers

from engine.errors import ConfigError
from engine.rouge.filter import RougeFilter, best_rouge_l, rouge_l, tokenize


# -- data ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(shared_data) -> list[str]:
    """Every real instruction: seed tasks, user-oriented, Explore-Instruct examples (duplicates included)."""
    out = []
    for name in ("self_instruct_seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        out += [
            json.loads(line)["instruction"]
            for line in (shared_data / name).read_text().splitlines()
            if line.strip()
        ]
    for path in sorted(glob.glob(str(shared_data / "explore_instruct_demo_domain" / "*.json"))):
        with open(path, encoding="utf-8") as f:
            out += [ex["instruction"] for ex in json.load(f).get("examples", [])]
    assert len(out) > 4000
    return out


def perturb(text: str, rng: random.Random, words: list[str]) -> str:
    """A seeded near-duplicate: 1-3 word swaps, insertions, deletions, replacements or case/punct noise."""
    ws = text.split() or [""]
    for _ in range(rng.randint(1, 3)):
        op, i = rng.randrange(6), rng.randrange(len(ws))
        if op == 0 and len(ws) > 1:
            j = min(i + 1, len(ws) - 1)
            ws[i], ws[j] = ws[j], ws[i]
        elif op == 1:
            ws.insert(i, rng.choice(words))
        elif op == 2 and len(ws) > 2:
            del ws[i]
        elif op == 3:
            ws[i] = rng.choice(words)
        elif op == 4:
            ws[i] = ws[i].upper() + rng.choice(["!", "...", ",", "'s", "-"])
        else:
            ws[i] = rng.choice(
                ["café", "naïve", "İstanbul", "\u212aelvin", "ＦＵＬＬ", "x2", "3.5", "e-mail"]
            )
    return " ".join(ws)


EDGE_CASES = [
    "",
    "   ",
    "?!...",
    "中文指令",
    "a",
    "A a",
    "the the the the",
    "a b c d e f g h i j",
    "a b c d e f g x y z",
    "a b c d",
    "a b x y",
    "Write a poem.",
    "write   a POEM!!",
    "İstanbul Kelvin \u212a",
    "don't stop-me now_ok",
]


@pytest.fixture(scope="module")
def corpus(real) -> list[str]:
    """Real instructions, seeded near-duplicates of them, long concatenations (> 64 tokens) and edge cases."""
    rng = random.Random(0)
    words = sorted({w for s in real for w in s.split()})
    variants = [perturb(rng.choice(real), rng, words) for _ in range(2500)]
    long = [" ".join(rng.sample(real, rng.randint(6, 14))) for _ in range(40)]
    long += [perturb(s, rng, words) for s in long[:20]]
    out = real + variants + long + EDGE_CASES
    rng.shuffle(out)
    return out


def reference_greedy(texts: list[str], threshold: float, tokenize_fn, top_k: int = 10):
    """Plain greedy loop: every pool score, drop iff max > threshold. LCS by rapidfuzz (checked against
    rouge_score in test_scores_equal_rouge_score), F1 by rouge_score's formula in numpy (same float ops).
    Returns (keep, best score, best index, most_similar, mean) per text."""
    from rapidfuzz import process
    from rapidfuzz.distance import LCSseq

    pool: list[str] = []
    pool_texts: list[str] = []
    out = []
    vocab: dict[str, str] = {}  # token -> one private-use character: rapidfuzz's fast path for strings
    for text in texts:
        x = "".join(vocab.setdefault(w, chr(0xF0000 + len(vocab))) for w in tokenize_fn(text))
        lengths = np.array([len(p) for p in pool], dtype=np.int64)
        if pool and x:
            lcs = process.cdist([x], pool, scorer=LCSseq.similarity, dtype=np.int64, workers=1)[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                p, r = lcs / lengths, lcs / len(x)
                f = np.where(lcs > 0, 2 * p * r / (p + r), 0.0)
        else:
            f = np.zeros(len(pool))
        if len(pool) and f.max() > threshold:
            out.append((False, float(f.max()), int(np.argmax(f)), None, None))
            continue
        top = np.argsort(-f, kind="stable")[:top_k]  # ties in pool order, as RougeFilter documents
        similar = {pool_texts[j]: float(f[j]) for j in top}
        out.append(
            (True, similar and max(similar.values()), None, similar, float(np.mean(f)) if len(pool) else None)
        )
        pool.append(x)
        pool_texts.append(text)
    return out


def assert_same(decisions, reference):
    assert len(decisions) == len(reference)
    for i, (d, (keep, score, match, similar, mean)) in enumerate(zip(decisions, reference)):
        assert d.keep == keep, f"candidate {i}: keep={d.keep}, reference {keep}"
        assert d.score == (score if score != {} else None), f"candidate {i}: score {d.score} vs {score}"
        assert d.match_index == match, f"candidate {i}: best match differs"
        if keep:
            assert list(d.most_similar.items()) == list(similar.items()), f"candidate {i}: top-k differs"
            assert (d.avg_similarity is None) == (mean is None)
            assert mean is None or abs(d.avg_similarity - mean) <= 1e-12, f"candidate {i}: mean differs"


# -- tokenizer and scores ------------------------------------------------------------------------------------
def test_tokenizer_equals_rouge_score(corpus):
    plain, stemmed = tokenizers.DefaultTokenizer(False), tokenizers.DefaultTokenizer(True)
    for text in corpus:
        assert tokenize(text) == plain.tokenize(text), text
    for text in corpus[:3000]:
        assert tokenize(text, "stem") == stemmed.tokenize(text), text


def test_scores_equal_rouge_score(corpus):
    """Kernel scores (most_similar over a whole pool) and rouge_l() vs rouge_score, ~36K pairs."""
    rng = random.Random(1)
    texts = list(dict.fromkeys(rng.sample(corpus, 330) + EDGE_CASES))  # unique: most_similar is keyed by text
    flt = RougeFilter(1.0, top_k=10**6)  # threshold 1.0 keeps everything: every earlier text is in the pool
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    compared = 0
    for i, d in enumerate(flt.check(texts)):
        assert d.keep and len(d.most_similar or {}) == i
        for old, score in (d.most_similar or {}).items():
            assert score == scorer.score(texts[i], old)["rougeL"].fmeasure, (texts[i], old)
            compared += 1
    assert compared > 30_000
    for a, b in zip(texts, texts[1:] + texts[:1]):
        assert rouge_l(a, b) == scorer.score(a, b)["rougeL"].fmeasure


def test_best_rouge_l_equals_rouge_score_max_to_the_last_bit(corpus):
    """The report's ROUGE-to-seed scores (best F1 of each text against the references) vs rouge_score."""
    rng = random.Random(2)
    texts, references = rng.sample(corpus, 120) + EDGE_CASES, rng.sample(corpus, 60) + ["", "the"]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = [max(scorer.score(r, t)["rougeL"].fmeasure for r in references) for t in texts]
    assert best_rouge_l(texts, references) == expected
    assert best_rouge_l([], references) == [] and best_rouge_l(texts[:2], []) == [0.0, 0.0]


def test_long_texts_multiword_lcs(corpus):
    """Candidates over 64 tokens take the multi-word LCS path."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    long = list(dict.fromkeys(s for s in corpus if len(tokenize(s)) > 64))[:30]
    assert len(long) >= 20 and max(len(tokenize(s)) for s in long) > 128
    flt = RougeFilter(1.0, top_k=10**6)
    for i, d in enumerate(flt.check(long)):
        for old, score in d.most_similar.items():
            assert score == scorer.score(long[i], old)["rougeL"].fmeasure


# -- greedy decisions ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0.7, 0.5])
def test_greedy_equals_reference_on_all_real_data(corpus, threshold):
    ours = RougeFilter(threshold, chunk_size=1000).check(corpus)
    assert_same(ours, reference_greedy(corpus, threshold, tokenize))
    dropped = sum(not d.keep for d in ours)
    assert 0.2 * len(corpus) < dropped < 0.8 * len(corpus)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.9, 1.0])
def test_greedy_other_thresholds(corpus, threshold):
    """Bounds stay exact at the extremes: 0 drops any overlap, 1 drops nothing."""
    texts = corpus[:700] + EDGE_CASES
    ours = RougeFilter(threshold, chunk_size=128).check(texts)
    assert_same(ours, reference_greedy(texts, threshold, tokenize))
    assert threshold < 1.0 or all(d.keep for d in ours)


@pytest.mark.parametrize("threshold", [0.7, 0.5])
def test_greedy_equals_plain_rouge_score_loop(corpus, threshold):
    """The upstream loop itself (rouge_score per pair) on a slice, for a reference with no shared code."""
    texts = corpus[:260]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool: list[str] = []
    for text, d in zip(texts, RougeFilter(threshold).check(texts)):
        scores = [scorer.score(text, old)["rougeL"].fmeasure for old in pool]
        keep = not scores or max(scores) <= threshold
        assert d.keep == keep
        if keep:
            pool.append(text)
        else:
            assert d.score == max(scores) and d.match == pool[scores.index(max(scores))]


def test_stem_mode_equals_rouge_score_stemmer(corpus):
    texts = corpus[:1500] + [
        "The cats are running quickly",
        "the cat runs quick",
        "Generalizations generalize",
    ]
    stemmer_tok = tokenizers.DefaultTokenizer(True).tokenize
    ours = RougeFilter(0.7, mode="stem").check(texts)
    assert_same(ours, reference_greedy(texts, 0.7, stemmer_tok))
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert (
        rouge_l(texts[-3], texts[-2], "stem")
        == scorer.score(texts[-3], texts[-2])["rougeL"].fmeasure
        > rouge_l(texts[-3], texts[-2])
    )


def test_incremental_batches_equal_one_call(corpus):
    """Pool growth across add/check batches, chunk sizes and thread counts never changes a decision."""
    texts = corpus[:3000]
    ref = RougeFilter(0.7)
    ref.add(texts[:50])
    whole = ref.check(texts[50:])
    rng = random.Random(2)
    flt = RougeFilter(0.7, chunk_size=97, workers=1)
    flt.add(texts[:20])
    flt.add(texts[20:50])
    pieces, i = [], 50
    while i < len(texts):
        step = rng.randint(1, 400)
        pieces += flt.check(texts[i : i + step])
        i += step
    assert pieces == whole
    assert flt.pool == ref.pool and len(flt) == 50 + sum(d.keep for d in pieces)
    fast = RougeFilter(0.7, details=False).check(texts)
    assert [d.keep for d in fast] == [d.keep for d in RougeFilter(0.7).check(texts)]
    assert all(d.most_similar is None and d.avg_similarity is None for d in fast)


def test_decision_fields_and_stats():
    flt = RougeFilter(0.7, top_k=2)
    flt.add(["Write a poem about the sea.", "Summarize the article below."])
    keep, drop = flt.check(["Translate this sentence into French.", "Write a poem about the sea!"])
    assert keep.keep and keep.match is None and len(keep.most_similar) == 2 and keep.avg_similarity == 0.0
    assert not drop.keep and drop.match == "Write a poem about the sea." and drop.match_index == 0
    assert drop.score == 1.0 and drop.most_similar is None
    assert flt.pool[-1] == "Translate this sentence into French."
    s = flt.stats
    assert (s.candidates, s.kept, s.dropped, s.pairs) == (2, 1, 1, 2 + 3)
    first = RougeFilter().check(["Only one."])[0]
    assert first.keep and first.most_similar == {} and first.avg_similarity is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "threshold must be in \\[0, 1\\], got 1.5"),
        ({"mode": "porter"}, "mode must be one of default, stem, unicode, got 'porter'"),
        ({"top_k": -1}, "top_k must be >= 0, got -1"),
        ({"chunk_size": 0}, "chunk_size must be >= 1, got 0"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RougeFilter(**kwargs)


# -- unicode mode --------------------------------------------------------------------------------------------
NON_LATIN = [  # (instruction, near-duplicate rewording)
    ("请把下面这段话翻译成英文。", "请将下面这段话翻译成英文。"),
    ("写一首关于秋天的短诗。", "写一首关于秋天的诗。"),
    ("次の文章を三行で要約してください。", "次の文章を三行で要約して下さい。"),
    ("日本の首都について簡単に説明してください。", "日本の首都について簡単に説明して。"),
    ("다음 문장을 영어로 번역해 주세요.", "다음 문장을 영어로 번역해 주십시오."),
    ("이 이메일에 대한 정중한 답장을 작성하세요.", "이 이메일에 대한 정중한 답장을 써 주세요."),
    ("กรุณาแปลประโยคต่อไปนี้เป็นภาษาอังกฤษ", "โปรดแปลประโยคต่อไปนี้เป็นภาษาอังกฤษ"),
    ("Напишите короткое стихотворение о зиме.", "Напишите, пожалуйста, короткое стихотворение о зиме."),
    ("Перепишите этот абзац более простым языком.", "Перепишите этот абзац простым языком."),
    ("اكتب ملخصا قصيرا للمقال التالي.", "اكتب ملخصا قصيرا جدا للمقال التالي."),
]


def test_unicode_mode_deduplicates_non_latin_scripts():
    originals = [a for a, _ in NON_LATIN]
    near = [b for _, b in NON_LATIN]
    for a, b in NON_LATIN:
        assert tokenize(a) == [] or rouge_l(a, b) == 0.0  # upstream: no tokens, score 0, never a duplicate
        assert rouge_l(a, b, "unicode") > 0.7, (a, b, rouge_l(a, b, "unicode"))
    assert all(d.keep for d in RougeFilter(0.7).check(originals + near))
    decisions = RougeFilter(0.7, mode="unicode").check(originals + near)
    assert all(d.keep for d in decisions[: len(originals)])  # distinct tasks stay apart
    assert [d.match for d in decisions[len(originals) :]] == originals
    assert tokenize("写一首诗", "unicode") == ["写", "一", "首", "诗"]
    assert tokenize("กรุณาแปล", "unicode") == ["ก", "รุ", "ณ", "า", "แ", "ป", "ล"]  # marks stay on their letter
    assert tokenize("Ｗｒｉｔｅ ÜBER straße", "unicode") == ["write", "über", "strasse"]


def test_unicode_mode_equals_default_on_ascii(real):
    ascii_texts = [text for text in real if text.isascii()]  # a few real ones hold "entrées", "café", ...
    assert len(ascii_texts) > 0.95 * len(real)
    for text in ascii_texts:
        assert tokenize(text, "unicode") == tokenize(text), text


# -- CLI -----------------------------------------------------------------------------------------------------
@pytest.fixture
def dedup_cli(run_cli, monkeypatch):
    """The shared run_cli with only the dedup command registered (the test imports nothing else)."""
    from instructforge import cli

    assert cli.COMMANDS["dedup"] == "instructforge.commands.dedup"
    monkeypatch.setattr(cli, "COMMANDS", {"dedup": cli.COMMANDS["dedup"]})
    return run_cli


def test_cli_dedup(tmp_path, dedup_cli, real):
    rows = [{"id": i, "instruction": text, "extra": [i]} for i, text in enumerate(real[180:480])]
    rows.insert(40, {"id": "dup", "instruction": real[200] + "!!"})  # repeats line 21
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps({"instruction": t}) + "\n" for t in real[:175]))
    code, out, err = dedup_cli(
        [
            "dedup",
            "--input",
            str(tmp_path / "in.jsonl"),
            "--pool",
            str(tmp_path / "seeds.jsonl"),
            "--output",
            str(tmp_path / "out.jsonl"),
        ],
    )
    assert code == 0, err
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    dropped = [json.loads(line) for line in (tmp_path / "out.dropped.jsonl").read_text().splitlines()]
    flt = RougeFilter(0.7)
    flt.add(real[:175])
    decisions = flt.check([r["instruction"] for r in rows])
    assert [r["id"] for r in kept] == [r["id"] for r, d in zip(rows, decisions) if d.keep]
    assert len(kept) + len(dropped) == len(rows) and dropped
    assert {k: v for k, v in kept[0].items() if k not in ("most_similar", "avg_similarity")} == rows[0]
    assert len(kept[0]["most_similar"]) == 10 and 0 <= kept[0]["avg_similarity"] < 0.7
    dup = next(r for r in dropped if r["id"] == "dup")
    assert dup["rouge_l_match"] == real[200] and dup["rouge_l_score"] == 1.0
    assert dup["rouge_l_match_from"] == f"{tmp_path / 'in.jsonl'}:21"
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"dedup: {len(rows)} rows -> {len(kept)} kept, {len(dropped)} dropped")
    code, out, err = dedup_cli(
        [
            "dedup",
            "-i",
            str(tmp_path / "in.jsonl"),
            "-o",
            str(tmp_path / "fast.jsonl"),
            "--threshold",
            "0.5",
            "--no-similar",
            "--dropped",
            str(tmp_path / "gone.jsonl"),
        ],
    )
    assert code == 0, err
    fast = [json.loads(line) for line in (tmp_path / "fast.jsonl").read_text().splitlines()]
    assert fast[0] == rows[0] and (tmp_path / "gone.jsonl").exists()
    assert [r["id"] for r in fast] == [
        r["id"] for r, d in zip(rows, RougeFilter(0.5).check([r["instruction"] for r in rows])) if d.keep
    ]


def test_cli_bad_input_is_one_line(tmp_path, dedup_cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Write a poem."}\n{"instruction": "Summarize this", \n')
    code, out, err = dedup_cli(["dedup", "-i", str(bad), "-o", str(tmp_path / "o.jsonl")])
    assert code == 2 and err.strip().count("\n") == 0
    assert f"{bad}:2: invalid JSON" in err
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"prompt": "Write a poem."}\n')
    code, _, err = dedup_cli(["dedup", "-i", str(missing), "-o", str(tmp_path / "o.jsonl")])
    assert code == 2 and "missing.jsonl:1: field `instruction`: missing (record has: prompt)" in err
    code, _, err = dedup_cli(
        [
            "dedup",
            "-i",
            str(missing),
            "-o",
            str(tmp_path / "o.jsonl"),
            "--field",
            "prompt",
            "--unicode",
            "--stem",
        ],
    )
    assert code == 2 and "Cannot use both `--unicode` and `--stem`" in err
    assert not (tmp_path / "o.jsonl").exists()
