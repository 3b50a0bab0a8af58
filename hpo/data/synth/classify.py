"""The SYNTHETIC support-ticket samples of the classify agent (hpo/data/classify/), made by a seeded RNG.

- ``tickets.csv`` (single-label): ticket_id, customer, text, label. Four classes (billing, login, shipping,
  bug), each with its own keywords inside shared filler, so a small model can learn them; a customer writes
  about one main topic (grouped splits keep a customer's tickets together), and a few tickets carry a second
  topic's keyword as a distractor.
- ``tickets_multilabel.jsonl`` (multi-label): {"ticket_id", "customer", "text", "tags": [...]}: zero to two
  of the same topics per ticket, each tag's keyword present.
None of it is real data; scripts/make_classify_sample.py writes both files.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

TOPICS: dict[str, tuple[str, ...]] = {
    "billing": ("invoice", "refund", "charged twice", "billing", "payment failed", "overcharged"),
    "login": ("password", "login", "locked out", "sign in", "two-factor code", "reset link"),
    "shipping": ("package", "delivery", "tracking number", "courier", "shipment", "arrived damaged"),
    "bug": ("crash", "error message", "freezes", "bug", "blank screen", "does not load"),
}
OPENERS = ("Hi,", "Hello team,", "Good morning.", "Hey,", "Dear support,", "")
FRAMES = (
    "I have a problem with the {k} since yesterday.",
    "there is an issue: {k}, can you help?",
    "my {k} again, this is the third time.",
    "please look into the {k} on my account.",
    "not sure who to ask about the {k}.",
    "urgent: {k} and I need it fixed today.",
)
CLOSERS = ("Thanks.", "Regards.", "Any update would help.", "Cheers,", "", "Thank you in advance.")
FILLER = ("on my phone", "after the update", "for my order", "this week", "on the web site", "for work")


def _sentence(rng: random.Random, topic: str) -> str:
    keyword = rng.choice(TOPICS[topic])
    return rng.choice(FRAMES).format(k=keyword) + " " + rng.choice(FILLER).capitalize() + "."


def _ticket(rng: random.Random, topics: list[str], distractor: str | None = None) -> str:
    parts = [rng.choice(OPENERS)] + [_sentence(rng, t) for t in topics]
    if distractor is not None:
        parts.append(
            f"(Last month I also asked about a {rng.choice(TOPICS[distractor])}, that one is solved.)"
        )
    parts.append(rng.choice(CLOSERS))
    return " ".join(p for p in parts if p)


def single_label_rows(seed: int = 7, customers: int = 100, per_customer: int = 3) -> list[dict[str, str]]:
    """Rows of tickets.csv: each customer's main topic for 80 % of their tickets, another topic otherwise."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    rows: list[dict[str, str]] = []
    for c in range(customers):
        main = names[c % len(names)]
        for _ in range(per_customer):
            topic = main if rng.random() < 0.8 else rng.choice(names)
            distractor = rng.choice([n for n in names if n != topic]) if rng.random() < 0.1 else None
            rows.append(
                {
                    "ticket_id": f"T{len(rows) + 1:04d}",
                    "customer": f"C{c + 1:03d}",
                    "text": _ticket(rng, [topic], distractor),
                    "label": topic,
                }
            )
    return rows


def multi_label_rows(seed: int = 11, customers: int = 60, per_customer: int = 3) -> list[dict[str, object]]:
    """Rows of tickets_multilabel.jsonl: 10 % no topic, 60 % one, 30 % two."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    rows: list[dict[str, object]] = []
    for c in range(customers):
        for _ in range(per_customer):
            draw = rng.random()
            tags = [] if draw < 0.1 else sorted(rng.sample(names, 1 if draw < 0.7 else 2))
            text = _ticket(rng, tags) if tags else f"{rng.choice(OPENERS)} just a general question. Thanks."
            rows.append(
                {
                    "ticket_id": f"M{len(rows) + 1:04d}",
                    "customer": f"C{c + 1:03d}",
                    "text": text.strip(),
                    "tags": tags,
                }
            )
    return rows


def tickets_csv(rows: list[dict[str, str]]) -> str:
    """The CSV text of ``rows`` (header ticket_id, customer, text, label; Unix line ends)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["ticket_id", "customer", "text", "label"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def tickets_jsonl(rows: list[dict[str, object]]) -> str:
    """One JSON object per line."""
    return "".join(json.dumps(row) + "\n" for row in rows)


def write_samples(out_dir: Path, seed: int = 7) -> list[Path]:
    """Write both samples into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    single, multi = out_dir / "tickets.csv", out_dir / "tickets_multilabel.jsonl"
    single.write_text(tickets_csv(single_label_rows(seed)), encoding="utf-8")
    multi.write_text(tickets_jsonl(multi_label_rows(seed + 4)), encoding="utf-8")
    return [single, multi]
