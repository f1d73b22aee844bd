"""The procedural world: one coloured shape moving over a uniform background, with a caption.

Everything the model knows comes from here: the palette, the geometry, and a caption grammar
with many templates and synonyms. Some templates and synonyms are held out of training
(`split="eval"`) so the evaluation measures paraphrases the model never saw.

Clips are rendered in torch, batched and vectorised: (B, F, H, W, 3) float in [0, 1].
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import torch

# ---- the palette (RGB, exactly as specified) -----------------------------------------------------
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 180, 60),
    "cyan": (40, 200, 220),
    "blue": (40, 80, 230),
    "purple": (150, 60, 200),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12),
    "gray": (110, 110, 110),
    "navy": (15, 20, 70),
    "beige": (205, 190, 155),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "still")

OBJ_NAMES = tuple(OBJECT_COLOURS)
BG_NAMES = tuple(BACKGROUNDS)
VALUES = {"bg": BG_NAMES, "obj": OBJ_NAMES, "shape": SHAPES, "motion": MOTIONS}  # each attribute's values


@dataclass(frozen=True)
class WorldConfig:
    frames: int = 16
    height: int = 64
    width: int = 64
    min_size: float = 0.15  # object width as a fraction of the frame width
    max_size: float = 0.35
    min_travel: float = 0.75  # a moving object crosses this fraction (or more) of its free range
    margin: float = 1.0  # pixels kept between the object and the frame edge


@dataclass
class Batch:
    """Attribute indices (B,) and geometry for a batch of clips."""

    bg: torch.Tensor  # (B,) index into BG_NAMES
    obj: torch.Tensor  # (B,) index into OBJ_NAMES
    shape: torch.Tensor  # (B,) index into SHAPES
    motion: torch.Tensor  # (B,) index into MOTIONS
    size: torch.Tensor  # (B,) object width in pixels
    start: torch.Tensor  # (B, 2) centre (x, y) at frame 0, pixels
    end: torch.Tensor  # (B, 2) centre (x, y) at the last frame, pixels

    def __len__(self) -> int:
        return int(self.bg.shape[0])

    def codes(self) -> torch.Tensor:
        """(B, 4) int8: bg, obj, shape, motion indices (the latent cache's label rows)."""
        return torch.stack([self.bg, self.obj, self.shape, self.motion], 1).to(torch.int8)

    def labels(self, i: int) -> dict[str, str]:
        return {
            "bg": BG_NAMES[int(self.bg[i])],
            "obj": OBJ_NAMES[int(self.obj[i])],
            "shape": SHAPES[int(self.shape[i])],
            "motion": MOTIONS[int(self.motion[i])],
        }


def sample_batch(n: int, g: torch.Generator, cfg: WorldConfig = WorldConfig(), **fixed: int) -> Batch:
    """Sample n clips' attributes; pass e.g. obj=3 to fix an attribute for all of them."""

    def pick(name: str, k: int) -> torch.Tensor:
        if name in fixed and fixed[name] is not None:
            return torch.full((n,), int(fixed[name]), dtype=torch.long)
        return torch.randint(0, k, (n,), generator=g)

    bg, obj, shape, motion = pick("bg", 4), pick("obj", 9), pick("shape", 3), pick("motion", 5)
    W, H = cfg.width, cfg.height
    size = (cfg.min_size + (cfg.max_size - cfg.min_size) * torch.rand(n, generator=g)) * W
    half = size / 2
    lo_x, hi_x = half + cfg.margin, W - half - cfg.margin  # (B,) allowed centre range
    lo_y, hi_y = half + cfg.margin, H - half - cfg.margin
    u = torch.rand(n, 4, generator=g)
    # still: anywhere; moving: the cross axis anywhere, the travel axis from one side to the other
    x0 = lo_x + (hi_x - lo_x) * u[:, 0]
    y0 = lo_y + (hi_y - lo_y) * u[:, 1]
    x1, y1 = x0.clone(), y0.clone()
    frac = cfg.min_travel + (1 - cfg.min_travel) * u[:, 2]
    for m, (axis, sign) in enumerate([(0, -1), (0, 1), (1, -1), (1, 1)]):  # left right up down
        sel = motion == m
        lo, hi = (lo_x, hi_x) if axis == 0 else (lo_y, hi_y)
        travel = (hi - lo) * frac
        a = lo + (hi - lo - travel) * u[:, 3]  # start of the travel segment, low side
        b = a + travel
        s, e = (b, a) if sign < 0 else (a, b)
        if axis == 0:
            x0 = torch.where(sel, s, x0)
            x1 = torch.where(sel, e, x1)
        else:
            y0 = torch.where(sel, s, y0)
            y1 = torch.where(sel, e, y1)
    return Batch(bg, obj, shape, motion, size, torch.stack([x0, y0], 1), torch.stack([x1, y1], 1))


def variant(b: Batch, g: torch.Generator, p_bg: float = 0.0, p_shape: float = 0.0) -> Batch:
    """The same clips (geometry, motion) with another object colour, and with probability p_bg / p_shape
    another background / shape too: the pairs that teach v2v to follow a prompt that disagrees with its input."""
    n = len(b)

    def other(v: torch.Tensor, k: int) -> torch.Tensor:  # another of k values, uniformly
        return (v + torch.randint(1, k, (n,), generator=g)) % k

    obj = other(b.obj, len(OBJ_NAMES))
    u = torch.rand(n, 2, generator=g)
    bg = torch.where(u[:, 0] < p_bg, other(b.bg, len(BG_NAMES)), b.bg)
    shape = torch.where(u[:, 1] < p_shape, other(b.shape, len(SHAPES)), b.shape)
    return dataclasses.replace(b, bg=bg, obj=obj, shape=shape)


def _palette(names: dict[str, tuple[int, int, int]]) -> torch.Tensor:
    return torch.tensor(list(names.values()), dtype=torch.float32) / 255.0  # (K, 3)


def render(b: Batch, cfg: WorldConfig = WorldConfig()) -> torch.Tensor:
    """Render clips: (B, F, H, W, 3) float32 in [0, 1], anti-aliased edges."""
    B, F, H, W = len(b), cfg.frames, cfg.height, cfg.width
    t = torch.linspace(0, 1, F) if F > 1 else torch.zeros(1)
    centre = b.start[:, None, :] + (b.end - b.start)[:, None, :] * t[None, :, None]  # (B, F, 2)
    cx = centre[..., 0][:, :, None, None]  # (B, F, 1, 1)
    cy = centre[..., 1][:, :, None, None]
    h = (b.size / 2)[:, None, None, None]
    px = torch.arange(W, dtype=torch.float32)[None, None, None, :] + 0.5
    py = torch.arange(H, dtype=torch.float32)[None, None, :, None] + 0.5
    dx, dy = px - cx, py - cy  # (B, F, H, W) by broadcasting
    d_circle = torch.sqrt(dx * dx + dy * dy) - h
    d_square = torch.maximum(dx.abs(), dy.abs()) - h
    # triangle, apex up: bbox is size x size; max of the three edge distances (inside < 0)
    inv5 = 5**-0.5
    d_bottom = dy - h
    d_left = (-2 * (dx + h) - (dy - h)) * inv5
    d_right = (2 * (dx - h) - (dy - h)) * inv5
    d_tri = torch.maximum(d_bottom, torch.maximum(d_left, d_right))
    shape = b.shape[:, None, None, None]
    d = torch.where(shape == 0, d_circle, torch.where(shape == 1, d_square, d_tri))
    cover = (0.5 - d).clamp(0, 1)[..., None]  # (B, F, H, W, 1)
    bg = _palette(BACKGROUNDS)[b.bg][:, None, None, None, :]  # (B, 1, 1, 1, 3)
    ob = _palette(OBJECT_COLOURS)[b.obj][:, None, None, None, :]
    return bg * (1 - cover) + ob * cover


def to_uint8(x: torch.Tensor) -> "torch.Tensor":
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


# ---- captions ----------------------------------------------------------------------------------
# Synonyms: (used in training, held out for eval). Held-out words reach the model only through the
# tokenizer's alias table (text.ALIASES); unknown words become <unk>.
OBJ_WORDS: dict[str, tuple[list[str], list[str]]] = {
    "red": (["red", "scarlet", "crimson", "cherry"], ["ruby"]),
    "orange": (["orange", "tangerine", "amber", "pumpkin"], ["apricot"]),
    "yellow": (["yellow", "golden", "lemon", "gold"], ["canary"]),
    "green": (["green", "lime", "emerald", "grass green"], ["jade"]),
    "cyan": (["cyan", "turquoise", "aqua", "light blue"], ["teal"]),
    "blue": (["blue", "azure", "cobalt", "royal blue"], ["sapphire"]),
    "purple": (["purple", "violet", "lilac", "plum"], ["lavender"]),
    "pink": (["pink", "rose", "bubblegum", "light pink"], ["fuchsia"]),
    "white": (["white", "snowy", "ivory", "snow white"], ["milky"]),
}
BG_WORDS: dict[str, tuple[list[str], list[str]]] = {
    "black": (["black", "jet black", "pitch black", "ebony"], ["onyx"]),
    "gray": (["gray", "grey", "slate", "ash gray"], ["silver"]),
    "navy": (["navy", "navy blue", "midnight blue", "dark blue"], ["indigo"]),
    "beige": (["beige", "tan", "sand", "cream"], ["khaki"]),
}
SHAPE_WORDS: dict[str, tuple[list[str], list[str]]] = {
    "circle": (["circle", "dot", "disc", "ball", "round shape"], ["disk"]),
    "square": (["square", "box", "block", "tile"], ["cube"]),
    "triangle": (["triangle", "wedge", "pyramid"], ["trigon"]),
}
# verb phrases (third person) and gerund phrases
MOTION_VERBS: dict[str, tuple[list[str], list[str]]] = {
    "left": (["moves left", "moves to the left", "heads left", "goes left", "slides left", "drifts left",
              "travels left", "moves leftward"], ["glides west"]),
    "right": (["moves right", "moves to the right", "heads right", "goes right", "slides right",
               "drifts right", "travels right", "moves rightward"], ["glides east"]),
    "up": (["moves up", "rises", "goes up", "climbs", "moves to the top", "floats up", "ascends",
            "moves upward"], ["lifts off"]),
    "down": (["moves down", "falls", "drops", "sinks", "moves to the bottom", "goes down", "descends",
              "moves downward"], ["plunges"]),
    "still": (["stays put", "stays still", "does not move", "sits still", "is stationary", "stays in place",
               "remains still", "is static"], ["is motionless"]),
}
MOTION_GERUNDS: dict[str, tuple[list[str], list[str]]] = {
    "left": (["moving left", "heading left", "going left", "sliding to the left", "drifting left",
              "travelling left"], ["gliding west"]),
    "right": (["moving right", "heading right", "going right", "sliding to the right", "drifting right",
               "travelling right"], ["gliding east"]),
    "up": (["moving up", "rising", "going up", "climbing", "floating upward", "ascending"], ["lifting off"]),
    "down": (["moving down", "falling", "dropping", "sinking", "going down", "descending"], ["plunging"]),
    "still": (["staying put", "standing still", "not moving", "sitting still", "staying in place",
               "holding still"], ["motionless"]),
}

# {c} object colour, {s} shape, {m} motion verb, {g} motion gerund, {b} background colour
TRAIN_TEMPLATES = [
    "a {c} {s} {m} on a {b} background",
    "{c} {s} {g} on {b}",
    "a {c} {s} {g} over {b}",
    "{c} {s}, {b} background, {g}",
    "on {b}, a {c} {s} that {m}",
    "on a {b} background a {c} {s} {m}",
    "{s}. {c}. {m}. {b} background.",
    "{b} background. {c} {s}. {g}.",
    "the {s} is {c} and {m}; the background is {b}",
    "a {c} {s} against a {b} backdrop, {g}",
    "{g}: a {c} {s} on {b}",
    "{b} backdrop with a {c} {s} {g}",
    "a {s}, {c}, {m} across a {b} background",
    "{c} {s} {m}. background {b}",
    "video of a {c} {s} {g} on a {b} background",
    "a {c} {s} over {b} {g}",
    # "top" and "bottom" also name motions ("moves to the top"); these teach the other sense
    "a {c} {s} {g} on top of a {b} background",
    "on top of {b}, a {c} {s} that {m}",
    "{c} {s} on top of a {b} backdrop, {g}",
    # partial captions: the model fills in the missing attribute itself
    "a {c} {s} {m}",
    "a {c} {s} on {b}",
    "{c} {s}",
]
EVAL_TEMPLATES = [  # structures never seen in training
    "there is a {c} {s} here, it {m}, and behind it everything is {b}",
    "{b} colored background with one {c} {s} {g}",
    "watch the {c} {s} as it {m} over the {b} background",
    "{s} in {c}, {g}, {b} backdrop",
    "a clip where a {c} {s} {m} in front of {b}",
    "{c}-colored {s} {g}, with a {b} canvas behind it",
]
FULL_TEMPLATES = [t for t in TRAIN_TEMPLATES if all(k in t for k in ("{c}", "{s}", "{b}")) and ("{m}" in t or "{g}" in t)]


def caption(labels: dict[str, str], rng: random.Random, split: str = "train", template: str | None = None) -> str:
    """A caption for the labels; split 'train' uses training words/templates, 'eval' held-out ones."""
    k = 0 if split == "train" else 1

    def word(table: dict[str, tuple[list[str], list[str]]], key: str) -> str:
        words = table[key][k] if split == "eval" and rng.random() < 0.5 else table[key][0]
        return rng.choice(words)

    if template is None:
        template = rng.choice(TRAIN_TEMPLATES if split == "train" else EVAL_TEMPLATES)
    text = template.format(
        c=word(OBJ_WORDS, labels["obj"]),
        s=word(SHAPE_WORDS, labels["shape"]),
        m=word(MOTION_VERBS, labels["motion"]),
        g=word(MOTION_GERUNDS, labels["motion"]),
        b=word(BG_WORDS, labels["bg"]),
    )
    # surface noise people type: case, spacing
    r = rng.random()
    if r < 0.15:
        text = text.capitalize()
    elif r < 0.2:
        text = text.upper()
    elif r < 0.25:
        text = text.title()
    if rng.random() < 0.1:
        text = "  " + text.replace(" ", "  ", 1) + " "
    return text


def canonical_caption(labels: dict[str, str]) -> str:
    return f"a {labels['obj']} {labels['shape']} {MOTION_VERBS[labels['motion']][0][0]} on a {labels['bg']} background"


# ---- partial captions: say only what the i2v image or the v2v source does not already fix ------------
# Keys name what a caption mentions besides the motion: "" (motion only), "c" colour, "s" shape, "b" background.
# (training templates, held-out templates); {m}/{g} motion verb/gerund as above.
I2V_TEMPLATES: dict[str, tuple[list[str], list[str]]] = {
    "": (["{m}", "{g}", "it {m}", "the object {m}", "the shape {m}", "object {g}"],
         ["it just {m}", "the thing {m}", "{g}, nothing else"]),
    "c": (["the {c} object {m}", "{c}, {g}", "it is {c} and {m}", "a {c} shape {g}"],
          ["the {c} thing {m}", "{c} and {g}"]),
    "s": (["the {s} {m}", "a {s} {g}", "{s} {g}", "it is a {s} and it {m}"],
          ["this {s} {m}", "{s}, {g}"]),
    "b": (["it {m} on {b}", "{g} over a {b} background", "the object {m}; the background is {b}"],
          ["{g} in front of {b}"]),
    "cs": (["the {c} {s} {m}", "a {c} {s} {g}"], ["this {c} {s} {m}"]),
}
# v2v: one phrase per attribute that differs between the source and the target, naming the target's value
EDIT_PHRASES: dict[str, tuple[list[str], list[str]]] = {
    "obj": (["make it {c}", "turn it {c}", "{c} instead", "now {c}", "change the color to {c}", "a {c} one",
             "color it {c}", "the object is {c} now"],
            ["paint it {c}", "it should be {c}", "switch to {c}", "{c} this time"]),
    "shape": (["a {s} instead", "make it a {s}", "turn it into a {s}", "now a {s}", "change the shape to a {s}",
               "as a {s}"],
              ["it should be a {s}", "swap in a {s}", "a {s} this time", "replace it with a {s}"]),
    "bg": (["on a {b} background", "make the background {b}", "{b} background instead",
            "change the background to {b}", "now on {b}", "over a {b} backdrop"],
           ["put it on {b}", "swap the background for {b}", "against {b} this time", "{b} behind it"]),
}
EDIT_JOINS = ([", ", " and ", "; ", ". ", " "], [", and ", " plus "])  # (train, eval) between phrases
# colour and shape together, as one noun phrase
EDIT_OBJ_SHAPE = (["a {c} {s} instead", "make it a {c} {s}", "turn it into a {c} {s}", "a {c} {s}", "now a {c} {s}"],
                  ["it should be a {c} {s}", "a {c} {s} this time"])
EDIT_KEYS = ("obj", "shape", "bg")


def _words(labels: dict[str, str], rng: random.Random, split: str) -> dict[str, str]:
    """One word or phrase per template field, training synonyms or (split 'eval', half the time) held-out ones."""

    def word(table: dict[str, tuple[list[str], list[str]]], key: str) -> str:
        words = table[key][1] if split == "eval" and rng.random() < 0.5 else table[key][0]
        return rng.choice(words)

    return {"c": word(OBJ_WORDS, labels["obj"]), "s": word(SHAPE_WORDS, labels["shape"]),
            "m": word(MOTION_VERBS, labels["motion"]), "g": word(MOTION_GERUNDS, labels["motion"]),
            "b": word(BG_WORDS, labels["bg"])}


def i2v_caption(labels: dict[str, str], rng: random.Random, split: str = "train", look: str | None = None) -> str:
    """A caption for an i2v clip that says the motion and at most part of the look (the image gives the
    rest): look is a key of I2V_TEMPLATES ("" motion only, "c", "s", "b", "cs"); None picks one, motion
    only half the time."""
    if look is None:
        look = "" if rng.random() < 0.5 else rng.choice([k for k in I2V_TEMPLATES if k])
    k = 0 if split == "train" else 1
    return rng.choice(I2V_TEMPLATES[look][k]).format(**_words(labels, rng, split))


def changed(src: dict[str, str], dst: dict[str, str]) -> list[str]:
    """The attributes of EDIT_KEYS (colour, shape, background) whose values differ, in that order."""
    return [key for key in EDIT_KEYS if src[key] != dst[key]]


def edit_caption(src: dict[str, str], dst: dict[str, str], rng: random.Random, split: str = "train") -> str:
    """A v2v caption that names exactly what differs between src and dst (dst's values) and nothing else;
    "" when nothing differs (the edit then keeps the input)."""
    diff = changed(src, dst)
    k = 0 if split == "train" else 1
    w = _words(dst, rng, split)
    if not diff:
        return ""
    parts = []
    if "obj" in diff and "shape" in diff and rng.random() < 0.5:
        parts.append(rng.choice(EDIT_OBJ_SHAPE[k]))
        diff = [d for d in diff if d not in ("obj", "shape")]
    parts += [rng.choice(EDIT_PHRASES[d][k]) for d in diff]
    rng.shuffle(parts)
    text = parts[0]
    for p in parts[1:]:
        text += rng.choice(EDIT_JOINS[k]) + p
    return text.format(**w)


def edit_variant(b: Batch, g: torch.Generator, p_obj: float = 0.6, p_shape: float = 0.4, p_bg: float = 0.4) -> Batch:
    """Like `variant`, but each of colour, shape and background changes on its own (with these
    probabilities; at least one always changes, drawn uniformly when none did): edit pairs for every
    kind of change-only caption ("make it blue", "a triangle instead", "on a black background")."""
    n = len(b)

    def other(v: torch.Tensor, k: int) -> torch.Tensor:
        return (v + torch.randint(1, k, (n,), generator=g)) % k

    u = torch.rand(n, 3, generator=g) < torch.tensor([p_obj, p_shape, p_bg])
    none = ~u.any(1)
    forced = torch.randint(0, 3, (n,), generator=g)
    u = u | (none[:, None] & (forced[:, None] == torch.arange(3)[None]))
    obj = torch.where(u[:, 0], other(b.obj, len(OBJ_NAMES)), b.obj)
    shape = torch.where(u[:, 1], other(b.shape, len(SHAPES)), b.shape)
    bg = torch.where(u[:, 2], other(b.bg, len(BG_NAMES)), b.bg)
    return dataclasses.replace(b, bg=bg, obj=obj, shape=shape)
