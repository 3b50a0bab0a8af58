"""Generate the SYNTHETIC ReDSM5-format sample (data/sample) and the tiny-bert WordPiece vocab.

    python scripts/make_sample_data.py                     # rewrite data/sample/*.csv and the vocab
    python scripts/make_sample_data.py --out /tmp/x --vocab /tmp/x/vocab.txt --seed 1
    python scripts/make_sample_data.py --out /tmp/s600 --no-vocab --n-posts 600   # 4x larger, same kind

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

import argparse
import csv
import math
import random
import re
import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hpo.agents.criteria import DSM5_DESCRIPTIONS
from hpo.paths import ASSETS_DIR, SAMPLE_DATA_DIR
from hpo.train.data import ANNOTATION_COLUMNS, ANNOTATIONS_FILE, POST_COLUMNS, POSTS_FILE

N_POSTS = 150
P_EVIDENCE = 0.32  # chance that an annotated topic sentence is evidence for its symptom (explicit or hidden)
P_HIDDEN = 0.25  # share of evidence sentences without the symptom's keywords
P_HARD = 0.35  # share of non-evidence topic sentences with symptom words in a context that is not evidence
P_MILD = 0.05  # chance that a topic sentence is a passing mention (status: a coin, as annotators split)
P_CROSS = 0.25  # chance that an evidence sentence also gets a status=0 row for another symptom
P_FLIP = 0.03  # annotator disagreement: the label is flipped
P_TWICE = 0.5  # venting repeats itself: a second clause of the same kind in the sentence
WORDS_MEDIAN, WORDS_SIGMA = 20.0, 0.5  # ordinary sentences: log-normal word count
P_RUNON, RUNON_MEDIAN, RUNON_SIGMA = 0.09, 90.0, 0.55  # run-on sentences (no full stop for a paragraph)
MAX_WORDS = 300
VOCAB_SIZE = 2048
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Topic:
    """Templates for one symptom: what it is called, sentences expressing it and healthy ones."""

    phrase: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    fill: dict[str, tuple[str, ...]] = field(default_factory=dict)


# Templates and fillers, kept compact: one line per group of alternatives.
# fmt: off
COMMON: dict[str, tuple[str, ...]] = {
    "time": ("every day", "most of the day", "for weeks now", "nearly every day", "for the past month",
             "all the time", "since the winter started", "almost every day", "for months", "lately"),
    "time_ok": ("most days", "this week", "lately", "these days", "since the spring", "this month",
                "for a while now"),
    "when": ("yesterday", "last weekend", "on Friday", "this morning", "on Sunday", "after work today"),
    "day": ("yesterday", "last weekend", "on Friday", "on Sunday", "on Saturday"),
    "chore": ("showering", "doing the dishes", "making breakfast", "brushing my teeth", "doing laundry",
              "answering texts", "walking to the bus stop"),
    "hobby": ("gaming", "painting", "playing guitar", "reading", "hiking", "cooking", "soccer", "drawing",
              "watching movies", "photography", "baking", "writing music"),
    "task": ("my work", "my studies", "reading", "a simple conversation", "a TV show", "my assignments",
             "emails"),
    "doctor": ("doctor", "psychiatrist", "GP", "nurse practitioner"),
    "meal": ("lunch", "breakfast", "dinner", "brunch"),
}

TOPICS: dict[str, Topic] = {
    "DEPRESSED_MOOD": Topic(
        "depressed mood",
        pos=("I feel {sad} {time}.", "I have been feeling {sad} {time} and I cannot shake it.",
             "I cry {cry} for no clear reason.", "There is a constant {sadness} hanging over me.",
             "Everything feels {bleak} and I feel {sad} inside.",
             "My mood has been {sad} {time} no matter what happens.",
             "I wake up feeling {sad} and it stays with me all day.", "Nothing lifts this {sadness} anymore.",
             "I just feel hopeless about everything {time}.",
             "I am so {sad} that I do not recognize myself."),
        neg=("I feel {happy} {time_ok}.", "My mood has been {steady} {time_ok}.",
             "I laughed a lot with my friends {when}.", "Overall I am in a {good} place emotionally.",
             "I have been feeling {happy} and hopeful about things.",
             "I rarely feel sad and I bounce back quickly.", "My spirits have been high {time_ok}."),
        fill={"sad": ("sad", "down", "empty", "hopeless", "miserable", "low", "numb and empty",
                      "heavy and sad"),
              "cry": ("almost every night", "most days", "several times a week",
                      "in the shower every morning"),
              "sadness": ("sadness", "emptiness", "heaviness", "gray cloud", "hopelessness"),
              "bleak": ("bleak", "gray", "dark", "heavy"),
              "happy": ("happy", "cheerful", "content", "upbeat", "calm and content", "pretty good"),
              "steady": ("stable", "good", "steady", "bright"),
              "good": ("good", "great", "healthy", "positive")},
    ),
    "ANHEDONIA": Topic(
        "loss of interest or pleasure",
        pos=("I used to love {hobby} but now it means nothing to me.", "I have lost all interest in {hobby}.",
             "Even {hobby} does not bring me any joy anymore.", "Nothing feels fun or enjoyable {time}.",
             "I stopped {hobby} because I just do not care about it anymore.",
             "Things I used to enjoy, like {hobby}, feel pointless now.",
             "I cannot enjoy anything, not even {hobby}.", "I feel no pleasure in anything I do.",
             "My friends invite me out but I have zero interest in anything.",
             "I have no desire to do the things I once loved."),
        neg=("I really enjoyed {hobby} {when}.", "I have been getting into {hobby} and I love it.",
             "I still get a lot of joy from {hobby}.",
             "I am excited to try {hobby} with my friends next week.",
             "I spent the afternoon {hobby} and had a great time.",
             "I picked up a new hobby and I look forward to it every day.",
             "I find a lot of things fun and interesting {time_ok}."),
    ),
    "APPETITE_CHANGE": Topic(
        "a change in appetite or weight",
        pos=("I have {lost} {pounds} pounds in {period} without trying.",
             "I have no appetite and I skip most meals.",
             "I barely eat anymore, food just does not appeal to me.",
             "I keep eating way too much even when I am not hungry.",
             "My appetite is gone and I forget to eat {time}.", "I have been binge eating junk food {time}.",
             "I can only force down a few bites of food a day.",
             "My eating has changed a lot and my clothes no longer fit.",
             "Food tastes like nothing so I hardly eat.",
             "I snack constantly at night and have gained a lot of weight."),
        neg=("I have been eating {meals} regularly.", "My appetite is normal and my weight has not changed.",
             "I cooked a big dinner and enjoyed every bite.", "I eat well and my weight is stable.",
             "I had a nice {meal} with my family {day}.", "I am trying a new recipe for {meal} tonight.",
             "I have a healthy appetite {time_ok}."),
        fill={"lost": ("lost", "gained"), "pounds": ("ten", "fifteen", "twenty", "eight", "twelve"),
              "period": ("a month", "two months", "six weeks", "the last few weeks"),
              "meals": ("three meals a day", "balanced meals", "healthy meals", "home cooked meals")},
    ),
    "SLEEP_ISSUES": Topic(
        "insomnia or hypersomnia",
        pos=("I {nosleep} {time}.", "I have been sleeping {hours} hours a day and still want more.",
             "My insomnia is getting worse {time}.", "I stay in bed sleeping most of the day.",
             "I toss and turn all night and never feel rested.",
             "I keep waking up in the middle of the night.",
             "My sleep schedule is completely broken.", "I sleep way too much and cannot get out of bed.",
             "I have not had a full night of sleep in weeks."),
        neg=("I slept well {slept}.", "I go to bed at {bed} and wake up feeling rested.",
             "My sleep has been good and regular.", "I get about eight hours of sleep and feel refreshed.",
             "I fall asleep easily and sleep through the night.",
             "I took a short nap after lunch and felt great.",
             "My sleep schedule has been steady {time_ok}."),
        fill={"nosleep": ("cannot fall asleep", "lie awake until 4 am", "barely sleep",
                          "wake up at 3 am and cannot get back to sleep",
                          "sleep only two or three hours a night"),
              "hours": ("twelve", "fourteen", "eleven", "thirteen"),
              "slept": ("last night", "all week", "every night this month", "over the weekend"),
              "bed": ("ten", "eleven", "a reasonable hour")},
    ),
    "PSYCHOMOTOR": Topic(
        "psychomotor agitation or retardation",
        pos=("I feel so restless that I cannot sit still.", "I keep pacing around my room {time}.",
             "My movements and speech feel slowed down.",
             "People tell me I talk and move much slower than before.",
             "I fidget constantly and cannot stay in one place.",
             "Everything I do feels like moving through mud.",
             "I feel physically agitated and keep wringing my hands.",
             "It takes me forever to get up and move because my body feels slowed.",
             "My speech and movements have been sluggish {time}.",
             "I pace back and forth for hours because I feel so agitated."),
        neg=("I went for a {run} {when} and felt light on my feet.", "I feel calm and relaxed in my body.",
             "I move around at my normal pace.", "I sat through a long movie without feeling restless.",
             "My coordination and speed were normal at the gym {when}.",
             "I danced at a party {when} and felt full of life.",
             "I can sit still and relax without fidgeting."),
        fill={"run": ("run", "walk", "bike ride", "swim")},
    ),
    "FATIGUE": Topic(
        "fatigue or loss of energy",
        pos=("I feel {tired} {time}.", "I have no energy to do even simple things like {chore}.",
             "Even {chore} leaves me exhausted.", "I am tired no matter how much I rest.",
             "My body feels heavy and drained all day.", "I have to lie down after {chore}.",
             "I run out of energy before noon.",
             "I am constantly fatigued and everything feels like a huge effort."),
        neg=("I have plenty of energy {time_ok}.", "I finished {chore} and still had energy for a walk.",
             "I feel energetic and ready for the day.", "I woke up full of energy {day}.",
             "I had a productive day and did not feel worn out at all.",
             "My energy levels are good {time_ok}."),
        fill={"tired": ("exhausted", "drained", "completely worn out", "tired all the time", "wiped out",
                        "out of energy")},
    ),
    "WORTHLESSNESS": Topic(
        "worthlessness or excessive guilt",
        pos=("I feel {worthless} {time}.", "I feel so guilty about {guilt} even though it was not my fault.",
             "I blame myself for everything that goes wrong.", "I am a failure and I let everyone down.",
             "I do not deserve the kindness people show me.",
             "I feel guilty all the time for things that are not my fault.",
             "I hate myself and feel like I have no value.",
             "I keep thinking I am worthless compared to everyone else.",
             "No matter what I achieve, I feel like a fraud and a failure."),
        neg=("I am proud of {proud}.", "I feel confident and good about myself.",
             "I know I have value and people appreciate me.",
             "I made a mistake at work but I forgave myself quickly.",
             "My self-esteem has been pretty healthy {time_ok}.",
             "I feel good about the person I am becoming."),
        fill={"worthless": ("worthless", "like a failure", "useless", "like a burden to everyone",
                            "like I am not good enough", "like a waste of space"),
              "guilt": ("everything", "my parents' divorce", "letting my team down", "small mistakes",
                        "things I did years ago"),
              "proud": ("finishing my project", "my new job", "how far I have come", "passing my exam",
                        "helping my friend move")},
    ),
    "COGNITIVE_ISSUES": Topic(
        "diminished concentration or indecisiveness",
        pos=("I cannot concentrate on {task} {time}.", "My mind goes blank and I cannot think clearly.",
             "I struggle to make even small decisions like {decision}.",
             "I keep forgetting things and losing my train of thought.",
             "I read the same page over and over without understanding it.",
             "My brain feels foggy and slow {time}.", "I am so indecisive that I freeze up.",
             "I cannot focus long enough to finish {task}."),
        neg=("I focused on {task} for hours without trouble.", "My mind feels sharp and clear {time_ok}.",
             "I made some quick decisions at work {when}.",
             "I finished a whole book this week and remembered all of it.",
             "I can concentrate well and my memory is fine.", "I easily decided {decision} {day}."),
        fill={"decision": ("what to eat", "what to wear", "which email to answer first", "what to buy")},
    ),
    "SUICIDAL_THOUGHTS": Topic(
        "thoughts of death or suicidal ideation",
        pos=("I have been having thoughts of ending my life {time}.",
             "Sometimes I think everyone would be better off without me.",
             "I wish I could go to sleep and not wake up.",
             "I keep thinking about death and not wanting to be here.",
             "I have thought about suicide, though I have no plan.",
             "Part of me does not want to be alive anymore.", "Thoughts of dying keep coming back {time}.",
             "I have wondered if it would be easier to just not exist."),
        neg=("I want to live a long life and see my {family} grow up.",
             "I have never had thoughts of hurting myself.",
             "I feel safe and I am looking forward to {future}.",
             "I am excited about my future.", "Life feels worth living {time_ok}.",
             "I have plans I am really looking forward to."),
        fill={"family": ("kids", "nieces", "nephews", "little brother"),
              "future": ("the summer", "my trip next month", "my graduation", "the holidays")},
    ),
    "SPECIAL_CASE": Topic(
        "clinically relevant context such as a diagnosis or treatment",
        pos=("I was diagnosed with {dx} {ago}.", "My {doctor} {changed} my antidepressant dose.",
             "I started therapy for my depression {ago}.",
             "I have been on antidepressants for {dur} and they barely help.",
             "My depression came back after I stopped taking my medication.",
             "I spent a week in a psychiatric hospital {ago}.",
             "My therapist thinks I have had a depressive episode since {event}.",
             "Since giving birth, I have been struggling with postpartum depression."),
        neg=("My {doctor} said my check-up results were normal.",
             "I went to the dentist for a cleaning {when}.",
             "I got my flu shot at the pharmacy {when}.", "I started going to physical therapy for my knee.",
             "My blood tests came back fine.", "I take vitamins every morning with breakfast."),
        fill={"dx": ("major depression", "depression", "bipolar disorder", "persistent depressive disorder",
                     "seasonal depression"),
              "ago": ("last year", "two years ago", "as a teenager", "a few months ago"),
              "changed": ("increased", "changed", "doubled"), "dur": ("a year", "six months", "three years"),
              "event": ("my breakup", "I lost my job", "my father died", "the move")},
    ),
}

# Evidence without the symptom's keywords (status 1): an annotator reads the symptom from what is described.
HIDDEN: dict[str, tuple[str, ...]] = {
    "DEPRESSED_MOOD": ("I sit in my car in the parking lot for an hour before I can walk into the house",
                       "every song on the radio makes my throat close up and I have to turn it off",
                       "I smile at work and then I get home and just stare at the wall until it is dark"),
    "ANHEDONIA": ("my guitar has been sitting in the corner collecting dust since the summer",
                  "my friends stopped inviting me because I always say I will see how I feel",
                  "I finished the game I waited two years for and felt absolutely nothing"),
    "APPETITE_CHANGE": ("my jeans are falling off me and my mom keeps asking if I am eating",
                        "I realized at nine at night that the only thing I had all day was a coffee",
                        "I have gone up two sizes since the fall from eating cereal out of the box at "
                        "midnight"),
    "SLEEP_ISSUES": ("I watch the numbers on my clock go from one to five most nights",
                     "I slept through three alarms and my whole Saturday again",
                     "I see the sun come up more often than I see it set these days"),
    "PSYCHOMOTOR": ("my coworker asked why it takes me a full minute to answer a simple question",
                    "my leg will not stop bouncing under the desk and I keep getting up to walk the hallway",
                    "it takes me twenty minutes to get from the bed to the shower"),
    "FATIGUE": ("carrying the groceries up one flight of stairs feels like running a marathon",
                "I sit on the edge of the bed for ten minutes before I can stand up and get dressed",
                "by lunch my arms feel like they are made of sand"),
    "WORTHLESSNESS": ("everyone would have a better team if they replaced me with literally anyone",
                      "I apologize to people for existing in the same room as them",
                      "I replay every stupid thing I said at dinner and cringe at myself for days"),
    "COGNITIVE_ISSUES": ("I stood in the cereal aisle for twenty minutes because I could not pick a box",
                         "I have reread the same email five times and still do not know what it says",
                         "I walk into a room and have no idea why I am there several times a day"),
    "SUICIDAL_THOUGHTS": ("I have been looking up how to write a will even though I am twenty two",
                          "I keep thinking it would be a relief if I just did not wake up tomorrow",
                          "I gave my cat to my sister in case something happens to me"),
    "SPECIAL_CASE": ("my psychiatrist and I are trying a third pill because the first two did nothing",
                     "the intake form at the clinic said major depressive episode, recurrent",
                     "I have been in and out of therapy since I was fifteen"),
}
# Passing, subclinical mentions: the symptom's words, but one bad day or a normal reaction. Coin-flip status.
MILD: dict[str, tuple[str, ...]] = {
    "DEPRESSED_MOOD": ("I was a bit down after the game on Sunday",
                       "I felt kind of sad when my friend moved"),
    "ANHEDONIA": ("I have not been that into {hobby} this month",
                  "I skipped {hobby} this week, not in the mood"),
    "APPETITE_CHANGE": ("I was not very hungry yesterday", "I have been snacking more than usual this week"),
    "SLEEP_ISSUES": ("I slept badly before my exam", "I stayed up too late gaming a couple of nights"),
    "PSYCHOMOTOR": ("I was a bit restless waiting for the results",
                    "I felt slow this morning before my coffee"),
    "FATIGUE": ("I was tired after the double shift", "I have been a bit low on energy this week"),
    "WORTHLESSNESS": ("I felt guilty for forgetting her birthday", "I felt a little useless at the new job"),
    "COGNITIVE_ISSUES": ("I had trouble focusing in the meeting today", "I could not decide what to order"),
    "SUICIDAL_THOUGHTS": ("I sometimes think about what my funeral would be like",
                          "I joked that I would rather die than go to that meeting"),
    "SPECIAL_CASE": ("I wonder if I should talk to someone about how I have been",
                     "my friend thinks I might have depression"),
}
# A symptom sentence (core) in a context that makes it no evidence for the writer now (status 0).
HARD: tuple[str, ...] = (
    'my {rel} texted me "{core}" and I did not know what to say',
    "a few years ago {core_l}, but that is behind me now",
    "my {doctor} asked whether {core_l} and I could honestly say no",
    "it is not that {core_l}, I am just stressed about money",
    "people at work joke that {core_l} every time the Monday meeting runs long",
    "I keep reading posts where people say {core_l} and I am glad that is not me anymore",
    "my {rel} has been saying {core_l} and I am worried about {them}",
    "in high school {core_l}, but I got help and I have been okay for years",
)
RELATIVES = (("sister", "her"), ("brother", "him"), ("best friend", "her"), ("roommate", "him"),
             ("mom", "her"), ("dad", "him"), ("boyfriend", "him"), ("girlfriend", "her"), ("coworker", "her"))
# Symptom-neutral context: what Reddit sentences wrap around the one clause that matters.
CONTEXT: tuple[str, ...] = (
    "my roommate moved out in March", "I work closing shifts at a grocery store",
    "my parents keep asking when I will finish my degree", "I moved to a new city for a job last year",
    "my car broke down again last week", "I have been applying to jobs for months",
    "my best friend moved across the country", "we adopted a cat in the spring", "my sister just had a baby",
    "I switched majors twice", "rent went up again", "I have two exams next week",
    "my dad and I do not really talk anymore", "I spend most evenings on my phone",
    "my boyfriend and I broke up in January", "my girlfriend works nights so I barely see her",
    "the weather here has been gray for weeks", "I am the oldest of four kids",
    "my manager keeps changing my schedule", "I live with two roommates I barely know",
    "my mom calls me every Sunday", "I have been trying to save money for a car",
    "we had a family reunion last month", "my grandma has been in and out of the hospital",
    "I quit my part time job in October", "I have a group project due Friday",
    "I do not have many friends in this town", "my landlord still has not fixed the heating",
    "my little brother is starting high school", "everyone at work seems to have their life together",
    "I turned twenty five in May", "I am in my last year of college", "I got passed over for a promotion",
    "my internet has been out half the week", "I spent the holidays alone this year",
    "my friends from high school all have kids now", "I volunteer at an animal shelter on weekends",
    "I drive an hour each way to work", "my parents are getting divorced", "my dog died in the summer",
    "my boss says my work is fine", "I take the bus everywhere", "I am behind on my student loans",
    "my ex started dating one of my friends", "I keep telling myself next week will be different",
    "nobody in my family talks about feelings", "I have been at this company for six years",
    "I just started my second year of grad school", "my shift starts at six in the morning",
    "I deleted most of my social media", "my cousin is getting married in the fall",
    "I have lived in the same apartment since college", "the bills keep piling up on the counter",
)
JOIN_BEFORE = (", and ", ", so ", " and ", ", but ", " and honestly ", ", and then ")
JOIN_AFTER = (" and ", ", because ", ", but ", ", and ", " since ", ", which is why ", " and like ")
LEADS = ("honestly ", "to be honest ", "I guess ", "also ", "and ", "on top of that ", "idk, ", "so yeah, ")
OPENERS = ("Throwaway account because people I know use this site.", "I am not sure where else to post this.",
           "Long time lurker, first post.", "I am {age} and {job}.", "This is going to be a long one.")
CLOSERS = ("Thanks for reading.", "Any advice would help.", "I just needed to get this off my chest.",
           "Does anyone else feel this way?", "Sorry for the rambling.", "TL;DR I do not know what to do.")
POST_FILL: dict[str, tuple[str, ...]] = {
    "age": ("19", "22", "24", "27", "31", "35", "42"),
    "job": ("work in retail", "a college student", "work in an office", "a nurse", "between jobs",
            "a high school teacher", "a software developer"),
    "rel": tuple(r for r, _ in RELATIVES),
}
EXPLAIN_POS = ("The writer describes {topic}.", "Clear first-person report of {topic}.",
               "The sentence expresses {topic}.")
EXPLAIN_HIDDEN = "No keyword, but the behaviour described is {topic}."
EXPLAIN_OK = ("Healthy statement on this topic; no sign of {topic}.",
              "The writer reports the opposite of {topic}.")
EXPLAIN_HARD = "Mentions {topic}, but not as the writer's current experience."
EXPLAIN_MILD = ("Passing mention; too mild or brief to count as {topic}.",
                "Borderline: read as {topic} given the rest of the post.")
EXPLAIN_CROSS = "The sentence is about {about}, not {label}."
EXPLAIN_FLIP = " (Borderline call.)"
# fmt: on


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


def basic_tokens(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks, as BERT's basic tokenizer splits ASCII text."""
    return re.findall(r"[a-z0-9]+|[^a-z0-9\s]", text.lower())


def build_vocab(texts: Iterable[str], size: int = VOCAB_SIZE) -> list[str]:
    """WordPiece vocab: specials, single characters and their ## forms, then the most frequent words."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    base = [*SPECIAL_TOKENS, *chars, *("##" + c for c in chars)]
    counts = Counter(tok for text in texts for tok in basic_tokens(text) if tok not in chars)
    ranked = sorted(counts, key=lambda tok: (-counts[tok], tok))
    return base + ranked[: size - len(base)]


def _write_csv(path: Path, header: Iterable[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(list(header))
        writer.writerows(rows)


def write_sample(
    out_dir: Path, vocab_path: Path | None, seed: int = 0, n_posts: int = N_POSTS
) -> dict[str, int]:
    """Write both CSVs into ``out_dir`` (and the vocab, when ``vocab_path`` is given); return stats."""
    annotations, posts = generate(seed, n_posts)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / ANNOTATIONS_FILE, ANNOTATION_COLUMNS, annotations)
    _write_csv(out_dir / POSTS_FILE, POST_COLUMNS, posts)
    if vocab_path is not None:
        texts = [text for _, text in posts] + list(DSM5_DESCRIPTIONS.values())
        vocab_path.parent.mkdir(parents=True, exist_ok=True)
        vocab_path.write_text("\n".join(build_vocab(texts)) + "\n", encoding="utf-8")
    positives = sum(1 for row in annotations if row[4] == "1")
    return {"rows": len(annotations), "posts": len(posts), "positives": positives}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=SAMPLE_DATA_DIR, help="folder for the two CSVs")
    parser.add_argument(
        "--vocab",
        type=Path,
        default=ASSETS_DIR / "tiny-bert" / "vocab.txt",
        help="where to write the tiny-bert vocab.txt",
    )
    parser.add_argument("--no-vocab", action="store_true", help="do not write the vocab")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-posts",
        type=int,
        default=N_POSTS,
        help=f"posts to generate (default {N_POSTS}); the first N of a larger sample are the N-post sample",
    )
    args = parser.parse_args(argv)
    stats = write_sample(args.out, None if args.no_vocab else args.vocab, args.seed, args.n_posts)
    if not args.no_vocab and args.vocab == ASSETS_DIR / "tiny-bert" / "vocab.txt":  # hpo-tiny-llama shares it
        (ASSETS_DIR / "tiny-llama" / "vocab.txt").write_text(args.vocab.read_text(encoding="utf-8"), "utf-8")
    share = 100 * stats["positives"] / stats["rows"]
    print(
        f"wrote {stats['rows']} annotation rows over {stats['posts']} posts ({share:.1f}% positive) "
        f"to {args.out}"
    )


if __name__ == "__main__":
    main()
