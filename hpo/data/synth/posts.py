"""Synthetic ReDSM5-format posts and their annotation rows.

Posts are stitched from templates x fillers with a seeded RNG, so the output is byte-for-byte reproducible.
The sample imitates the shape of real Reddit data, not only its format (data/sample/README.md says which
numbers are published and which are our choice):
- lengths: each annotated sentence is a symptom clause inside Reddit-style context clauses, its word count
  drawn from a log-normal (median ~20 words) with a run-on tail (9 %: median ~90 words), so a few % of the
  (criterion, sentence) pairs pass 128 MiniLM tokens and some pass 256;
- balance: evidence (status=1) rows are a minority (about a third);
- difficulty: status=0 rows include symptom words in negated, past, third-person or figurative contexts and
  sentences that express a different (also a closely related) symptom; status=1 rows include evidence without
  the symptom's keywords; passing mentions are labelled either way and a few labels are flipped
  (annotator disagreement). None of it is real data.
"""

from __future__ import annotations

import random

from hpo.data.synth.phrases import CLOSERS, CONTEXT, EXPLAIN_CROSS, EXPLAIN_FLIP, OPENERS, POST_FILL
from hpo.data.synth.text import annotation, render, topic_clause, wrap
from hpo.data.synth.topics import TOPICS

N_POSTS = 150
P_CROSS = 0.25  # chance that an evidence sentence also gets a status=0 row for another symptom
P_FLIP = 0.03  # annotator disagreement: the label is flipped


def make_post(rng: random.Random, index: int, seen: set[tuple[str, str]]) -> tuple[list[list[str]], str]:
    """One synthetic post: its annotation rows and the post text (``seen``: (symptom, sentence) so far)."""
    post_id = f"synth_{index:04d}"
    symptoms = rng.sample(sorted(TOPICS), rng.choice((2, 2, 3, 3, 4)))
    sentences: list[str] = [render(rng, rng.choice(OPENERS), POST_FILL)] if rng.random() < 0.6 else []
    rows: list[list[str]] = []
    for symptom in symptoms:
        if rng.random() < 0.4:
            sentences.append(wrap(rng, rng.choice(CONTEXT)))
        kind, status, explanation = annotation(rng, symptom)
        text = wrap(rng, topic_clause(rng, symptom, kind))
        if (symptom, text.lower()) in seen or text in sentences:
            continue  # a repeated pair could carry the opposite label: the loader refuses those
        if rng.random() < P_FLIP:
            status, explanation = 1 - status, explanation + EXPLAIN_FLIP
        sentence_id = f"{post_id}_{len(sentences)}"
        sentences.append(text)
        seen.add((symptom, text.lower()))
        rows.append([post_id, sentence_id, text, symptom, str(status), explanation])
        if kind in ("pos", "hidden") and rng.random() < P_CROSS:
            other = rng.choice([s for s in sorted(TOPICS) if s != symptom])
            if (other, text.lower()) not in seen:
                seen.add((other, text.lower()))
                about = TOPICS[symptom].phrase
                cross = EXPLAIN_CROSS.format(about=about, label=TOPICS[other].phrase)
                rows.append([post_id, sentence_id, text, other, "0", cross])
    if rng.random() < 0.5:
        sentences.append(rng.choice(CLOSERS))
    return rows, " ".join(sentences)


def generate(seed: int = 0, n_posts: int = N_POSTS) -> tuple[list[list[str]], list[list[str]]]:
    """Annotation rows and post rows (without headers) of the whole synthetic sample."""
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    annotations: list[list[str]] = []
    posts: list[list[str]] = []
    for index in range(n_posts):
        rows, text = make_post(rng, index, seen)
        annotations.extend(rows)
        posts.append([f"synth_{index:04d}", text])
    return annotations, posts
