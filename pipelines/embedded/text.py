"""Word-level tokenizer for free-text prompts.

Lower-cases, splits on anything that is not a letter, maps a few spelling variants and held-out
synonyms through `ALIASES`, strips plural "s", and turns every other unknown word into <unk>:
any prompt tokenizes, none raises. The vocabulary is every word of the training grammar, so it is
fixed by the code and saved next to the weights.
"""

from __future__ import annotations

import functools
import re

from pipelines.embedded import world

PAD, UNK, BOS = 0, 1, 2
SPECIALS = ["<pad>", "<unk>", "<bos>"]

# words outside the training grammar that mean something in it (spelling variants, held-out synonyms)
ALIASES = {
    "colour": "color", "coloured": "colored", "colored": "color", "grey": "grey", "disk": "disc",
    "ruby": "red", "apricot": "orange", "canary": "yellow", "jade": "green", "teal": "cyan",
    "sapphire": "blue", "lavender": "purple", "fuchsia": "pink", "magenta": "pink", "milky": "white",
    "onyx": "black", "silver": "gray", "indigo": "navy", "khaki": "beige", "cube": "square",
    "trigon": "triangle", "rectangle": "square", "orb": "ball", "sphere": "ball", "westward": "leftward",
    "eastward": "rightward", "west": "left", "east": "right", "north": "up", "south": "down",
    "upwards": "upward", "downwards": "downward", "leftwards": "leftward", "rightwards": "rightward",
    "motionless": "still", "stationary": "stationary", "static": "static", "glides": "slides",
    "gliding": "sliding", "plunges": "falls", "plunging": "falling", "lifts": "rises", "lifting": "rising",
    "traveling": "travelling", "moving": "moving", "descend": "descends", "ascend": "ascends",
}


def _grammar_words() -> list[str]:
    words: set[str] = set()
    tables = [world.OBJ_WORDS, world.BG_WORDS, world.SHAPE_WORDS, world.MOTION_VERBS, world.MOTION_GERUNDS]
    for table in tables:
        for train, _held in table.values():
            for phrase in train:
                words.update(split_words(phrase))
    templates = list(world.TRAIN_TEMPLATES) + list(world.EDIT_OBJ_SHAPE[0])
    templates += [t for train, _held in world.I2V_TEMPLATES.values() for t in train]
    templates += [t for train, _held in world.EDIT_PHRASES.values() for t in train]
    for t in templates:
        words.update(split_words(re.sub(r"\{[a-z]\}", " ", t)))
    return sorted(words)


def split_words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@functools.cache
def phrasing_words() -> frozenset[str]:
    """The words that i2v and v2v prompts are phrased with around what they name ("make it blue", "a triangle
    instead", "it just moves up"): the world's partial and edit templates without their slots. They name nothing
    to follow, so they are not called unknown even where the vocabulary lacks them; the attributes around them
    are read (named_labels) and, with an input, completed (complete_prompt)."""
    templates = [t for pair in (*world.I2V_TEMPLATES.values(), *world.EDIT_PHRASES.values(), world.EDIT_OBJ_SHAPE)
                 for split in pair for t in split]
    templates += [j for split in world.EDIT_JOINS for j in split]  # "plus", "and" between the phrases
    return frozenset(w for t in templates for w in split_words(re.sub(r"\{\w+\}", " ", t)))


class Tokenizer:
    def __init__(self, vocab: list[str] | None = None, max_len: int = 32):
        self.vocab = list(vocab) if vocab is not None else SPECIALS + _grammar_words()
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = max_len

    @classmethod
    def extending(cls, vocab: list[str], max_len: int = 32) -> "Tokenizer":
        """A trained model's vocabulary with the grammar's newer words appended: every id it was trained
        with keeps its meaning (fine-tuning from shipped weights), new words take fresh embedding rows."""
        vocab = list(vocab)
        known = set(vocab)
        return cls(vocab + [w for w in SPECIALS + _grammar_words() if w not in known], max_len)

    def __len__(self) -> int:
        return len(self.vocab)

    def word_id(self, w: str) -> int:
        for cand in (w, ALIASES.get(w), w[:-1] if w.endswith("s") else None, w[:-2] if w.endswith("es") else None):
            if cand and cand in self.index:
                return self.index[cand]
            if cand and ALIASES.get(cand) in self.index:
                return self.index[ALIASES[cand]]
        return UNK

    def warnings(self, text: str) -> list[str]:
        """What the model will not read in a prompt: words it has never seen (they become <unk>) other than the
        phrasing words around what a prompt names (phrasing_words), and words past the last one it reads. Empty
        when it reads every word."""
        words = split_words(text or "")
        unknown = list(dict.fromkeys(w for w in words if self.word_id(w) == UNK and w not in phrasing_words()))
        out = [f"unknown words: {', '.join(unknown)}"] if unknown else []
        if len(words) > self.max_len - 1:
            out.append(f"only the first {self.max_len - 1} words are read; the rest is ignored")
        return out

    def encode(self, text: str) -> list[int]:
        """<bos> + word ids, truncated to max_len. The empty prompt is just <bos> (the unconditional)."""
        ids = [BOS] + [self.word_id(w) for w in split_words(text or "")]
        return ids[: self.max_len]

    def batch(self, texts: list[str]):
        """(B, L) long ids padded with <pad>, L = longest in the batch."""
        import torch

        enc = [self.encode(t) for t in texts]
        L = max(len(e) for e in enc)
        out = torch.full((len(enc), L), PAD, dtype=torch.long)
        for i, e in enumerate(enc):
            out[i, : len(e)] = torch.tensor(e)
        return out


# ---- what a prompt names, and saying what an input already shows -----------------------------------
_ATTRIBUTE_TABLES = (("obj", world.OBJ_WORDS), ("bg", world.BG_WORDS), ("shape", world.SHAPE_WORDS),
                     ("motion", world.MOTION_VERBS), ("motion", world.MOTION_GERUNDS))


def _norm(words: list[str]) -> tuple[str, ...]:
    return tuple(ALIASES.get(w, w) for w in words)


@functools.cache  # fixed by the grammar: built once, not on every prompt
def _phrases() -> tuple[tuple[tuple[str, ...], str, str], ...]:
    """(normalised words, attribute, value) for every synonym of the grammar (training and held-out),
    longest first, so "light blue" (cyan) and "navy blue" (a background) win over "blue"."""
    out = []
    for key, table in _ATTRIBUTE_TABLES:
        for value, (train, held) in table.items():
            for phrase in train + held:
                out.append((_norm(split_words(phrase)), key, value))
    for value, extra in (("still", ["still", "static", "stationary"]), ("up", ["upward"]),
                         ("down", ["downward"]), ("left", ["left", "leftward"]), ("right", ["right", "rightward"]),
                         ("up", ["up"]), ("down", ["down"])):
        out += [(_norm([w]), "motion", value) for w in extra]  # a direction said on its own
    return tuple(sorted(set(out), key=lambda p: -len(p[0])))


def _named_spans(words: tuple[str, ...]) -> list[tuple[int, int, str, str]]:
    """(start, end, attribute, value) of every grammar phrase in the normalised words, longest phrase first,
    no word in two phrases."""
    taken = [False] * len(words)
    spans = []
    for phrase, key, value in _phrases():
        n = len(phrase)
        for i in range(len(words) - n + 1):
            if words[i:i + n] == phrase and not any(taken[i:i + n]):
                taken[i:i + n] = [True] * n
                spans.append((i, i + n, key, value))
    return spans


def named_labels(text: str) -> dict[str, str]:
    """The world's attributes a prompt names, by the grammar's words and their aliases: {"obj": "green",
    "motion": "left", ...}; an attribute named twice keeps its first mention."""
    found: dict[str, tuple[int, str]] = {}
    for i, _, key, value in _named_spans(_norm(split_words(text or ""))):
        if key not in found or i < found[key][0]:
            found[key] = (i, value)
    return {key: value for key, (_, value) in found.items()}


# the shape a small model hedges a named shape towards: squares and circles meet in a squircle, a triangle's
# corners blunt into a round blob (MODEL_CARD.md, "Session 11")
CONFUSABLE_SHAPE = {"square": "circle", "circle": "square", "triangle": "circle"}


def contrast_prompt(text: str) -> str | None:
    """The prompt with its shape said as the shape the model confuses it with ("a small khaki square ..." ->
    "a small khaki circle ..."), for shape-contrastive guidance; None when the prompt names no shape. Every
    mention of the shape is swapped; the other words are kept as they are (lower case, punctuation dropped)."""
    raw = split_words(text or "")
    spans = [s for s in _named_spans(_norm(raw)) if s[2] == "shape"]
    if not spans:
        return None
    out, at = [], 0
    for start, end, _, value in sorted(spans):
        out += [*raw[at:start], CONFUSABLE_SHAPE[value]]
        at = end
    return " ".join(out + raw[at:])


def complete_prompt(prompt: str, seen: dict[str, "str | None"]) -> str | None:
    """The prompt with what an input already shows said in it: `seen` holds the attributes read from an i2v
    image or a v2v source (obj, shape, bg; motion for a video). What the prompt names wins. None when the
    prompt already names everything the input could add, or the input shows no object (then the prompt
    is used as it is)."""
    if not seen.get("obj") or not seen.get("shape"):
        return None
    named = named_labels(prompt)
    labels = {k: named.get(k) or seen.get(k) for k in ("obj", "shape", "bg", "motion")}
    if all(named.get(k) or not seen.get(k) for k in labels):
        return None
    if labels["motion"] is None or labels["bg"] is None:
        tail = f" on {labels['bg']}" if labels["bg"] else ""
        return f"a {labels['obj']} {labels['shape']}{tail}"  # the grammar's partial caption
    return world.canonical_caption(labels)
