"""Write the synthetic sample: the two ReDSM5 CSVs and, optionally, the vocab."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from hpo.agents.criteria import DSM5_DESCRIPTIONS
from hpo.data.synth.posts import N_POSTS, generate
from hpo.data.synth.vocab import build_vocab
from hpo.train.data import ANNOTATION_COLUMNS, ANNOTATIONS_FILE, POST_COLUMNS, POSTS_FILE


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
