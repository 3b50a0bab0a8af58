"""The tiny-bert WordPiece vocab built from the synthetic posts (BERT-style basic tokens)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

VOCAB_SIZE = 2048
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


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
