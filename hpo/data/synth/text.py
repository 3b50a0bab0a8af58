"""Sentences of the synthetic sample: fill templates, draw lengths, wrap a clause in context, label it."""

from __future__ import annotations

import math
import random
import string

from hpo.data.synth.phrases import (
    CONTEXT,
    EXPLAIN_HARD,
    EXPLAIN_HIDDEN,
    EXPLAIN_MILD,
    EXPLAIN_OK,
    EXPLAIN_POS,
    HARD,
    HIDDEN,
    JOIN_AFTER,
    JOIN_BEFORE,
    LEADS,
    MILD,
    RELATIVES,
)
from hpo.data.synth.topics import COMMON, TOPICS

P_EVIDENCE = 0.32  # chance that an annotated topic sentence is evidence for its symptom (explicit or hidden)
P_HIDDEN = 0.25  # share of evidence sentences without the symptom's keywords
P_HARD = 0.35  # share of non-evidence topic sentences with symptom words in a context that is not evidence
P_MILD = 0.05  # chance that a topic sentence is a passing mention (status: a coin, as annotators split)
P_TWICE = 0.5  # venting repeats itself: a second clause of the same kind in the sentence
WORDS_MEDIAN, WORDS_SIGMA = 20.0, 0.5  # ordinary sentences: log-normal word count
P_RUNON, RUNON_MEDIAN, RUNON_SIGMA = 0.09, 90.0, 0.55  # run-on sentences (no full stop for a paragraph)
MAX_WORDS = 300


def render(rng: random.Random, template: str, fill: dict[str, tuple[str, ...]]) -> str:
    """Fill each {slot} of ``template`` with a random choice from ``fill``."""
    slots = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return template.format(**{name: rng.choice(fill[name]) for name in sorted(slots)})


def _lower_first(text: str) -> str:
    return text if text.startswith(("I ", "I'")) else text[:1].lower() + text[1:]


def target_words(rng: random.Random) -> int:
    """A sentence length in words: log-normal, with a run-on tail (Reddit paragraphs without a full stop)."""
    median, sigma = (RUNON_MEDIAN, RUNON_SIGMA) if rng.random() < P_RUNON else (WORDS_MEDIAN, WORDS_SIGMA)
    return min(MAX_WORDS, max(4, round(median * math.exp(rng.gauss(0.0, sigma)))))


def wrap(rng: random.Random, clause: str) -> str:
    """``clause`` padded with context clauses before and after it up to a drawn length; one sentence."""
    target, before, after = target_words(rng), [], []
    size = len(clause.split())
    context = list(CONTEXT)
    rng.shuffle(context)
    while size < target and context:
        extra = context.pop()
        size += len(extra.split()) + 1
        if rng.random() < 0.4:
            before.append(extra + rng.choice(JOIN_BEFORE))
        else:
            after.append(rng.choice(JOIN_AFTER) + extra)
        if not context and size < target:  # a very long run-on repeats itself, like real ones do
            context = list(CONTEXT)
            rng.shuffle(context)
    text = "".join(before) + clause + "".join(after)
    if rng.random() < 0.25:
        text = rng.choice(LEADS) + text
    return text[:1].upper() + text[1:] + rng.choice((".", ".", ".", "!", "..."))


def topic_clause(rng: random.Random, symptom: str, kind: str) -> str:
    """The clause carrying the symptom: explicit or hidden evidence, healthy, hard negative or mild."""
    clause = _one_clause(rng, symptom, kind)
    if kind in ("pos", "hidden", "ok") and rng.random() < P_TWICE:
        clause += rng.choice((" and ", ", ", ", like ")) + _one_clause(rng, symptom, kind)
    return clause


def _one_clause(rng: random.Random, symptom: str, kind: str) -> str:
    topic = TOPICS[symptom]
    fill = {**COMMON, **topic.fill}
    if kind == "hidden":
        return render(rng, rng.choice(HIDDEN[symptom]), fill)
    if kind == "mild":
        return render(rng, rng.choice(MILD[symptom]), fill)
    if kind == "ok":
        return _lower_first(render(rng, rng.choice(topic.neg), fill)).rstrip(".")
    core = render(rng, rng.choice(topic.pos), fill).rstrip(".")
    if kind == "hard":
        rel, them = rng.choice(RELATIVES)
        return rng.choice(HARD).format(
            core=core, core_l=_lower_first(core), rel=rel, them=them, doctor=rng.choice(COMMON["doctor"])
        )
    return _lower_first(core)


def annotation(rng: random.Random, symptom: str) -> tuple[str, int, str]:
    """(clause kind, status, explanation) of one annotated topic sentence, label noise included."""
    phrase = TOPICS[symptom].phrase
    if rng.random() < P_MILD:
        status = int(rng.random() < 0.5)
        return "mild", status, EXPLAIN_MILD[status].format(topic=phrase)
    if rng.random() < P_EVIDENCE:
        if rng.random() < P_HIDDEN:
            return "hidden", 1, EXPLAIN_HIDDEN.format(topic=phrase)
        return "pos", 1, rng.choice(EXPLAIN_POS).format(topic=phrase)
    if rng.random() < P_HARD:
        return "hard", 0, EXPLAIN_HARD.format(topic=phrase)
    return "ok", 0, rng.choice(EXPLAIN_OK).format(topic=phrase)
