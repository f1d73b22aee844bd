"""Words the model will not follow are named (#16): before generating (the page), and with every clip
(`generate --json`, the API), instead of a clip that silently ignores them."""

import json

from pipelines.embedded.backend import embedded_entry
from pipelines.embedded.text import Tokenizer
from tests.studio.test_cli import studio as run_studio


def test_the_tokenizer_names_unknown_and_unread_words():
    tok = Tokenizer(max_len=8)
    assert tok.warnings("a red circle moving right") == []
    assert tok.warnings("a cat playing piano near a cat") == ["unknown words: cat, playing, piano, near"]
    assert tok.warnings("Ruby CIRCLES on a grey disk") == []  # aliases, plurals and case are understood
    assert tok.warnings("red " * 8) == ["only the first 7 words are read; the rest is ignored"]
    assert tok.warnings("") == []


def test_the_shipped_model_knows_the_readme_examples():
    warn = embedded_entry().prompt_warnings
    for prompt in ("a red circle moving right on a navy background", "moves up", "a pink triangle",
                   "Square. Blue. Moves to the bottom. Gray background."):
        assert warn(prompt) == [], prompt
    assert warn("a cat playing piano") == ["unknown words: cat, playing, piano"]


def test_a_model_without_weights_or_unknown_says_nothing(tmp_path, studio):
    assert embedded_entry(tmp_path).prompt_warnings("a cat") == []  # loading says what is missing
    assert studio.facade.prompt_warnings("no-such-model", "a cat") == []


def test_generate_json_gives_each_clip_its_warnings(tmp_path):
    out = run_studio("generate", "--prompt", "a cat playing piano", "--steps", "2", "--seeds", "2", "--json",
                     data_dir=tmp_path, check=True)
    rows = json.loads(out.stdout)
    assert [r["warnings"] for r in rows] == [["unknown words: cat, playing, piano"]] * 2
    plain = run_studio("generate", "--prompt", "a red piano", "--steps", "2", data_dir=tmp_path, check=True)
    assert "warning: unknown words: piano" in plain.stderr and plain.stdout.strip().endswith(".mp4")
