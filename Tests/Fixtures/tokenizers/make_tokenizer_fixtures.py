#!/usr/bin/env python3
"""Small byte-level BPE tokenizer.json files with Llama 3's and Qwen 2's pre-tokenizer configurations, trained
with the `tokenizers` library, and the ids it gives on a few hundred varied strings (what Keel must reproduce).

Usage (in a venv outside the repository): pip install tokenizers==0.23.3; python make_tokenizer_fixtures.py
Writes llama3/tokenizer.json, qwen2/tokenizer.json and cases.json ({"strings": [...], "llama3": [[ids]], "qwen2": [[ids]]}).
- llama3: Split(Llama 3's regex, isolated) then ByteLevel(use_regex false), BPE with ignore_merges (as Meta's file).
- qwen2: NFC normalizer, Split(Qwen 2's regex: single digits), ByteLevel(use_regex false), BPE (as Qwen's file).
"""
import json, os, random
from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, trainers

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

rng = random.Random(7)
words = ("the of and to in is was for on that with as it he by at from his an were are which this be "
         "Keel model train recipe daemon loss reward gradient token café naïve über straße école "
         "日本語 中文 한국어 привет мир λόγος").split()
code = ["def f(x):\n    return x + 1\n", "for (int i = 0; i < n; ++i) { a[i] *= 2; }", "if x != None:\r\n\tprint('ok')",
        "let y = [1, 2, 3].map { $0 * 2 }", "SELECT * FROM runs WHERE id = 42;", "x=1;y=22;z=333;w=4444"]
def sentence():
    parts = []
    for _ in range(rng.randint(3, 12)):
        r = rng.random()
        if r < 0.6: parts.append(rng.choice(words))
        elif r < 0.75: parts.append(str(rng.randint(0, 10 ** rng.randint(1, 7))))
        elif r < 0.85: parts.append(rng.choice(["I'm", "you'll", "IT'S", "we've", "they'd", "He'S", "don't", "O'Re"]))
        else: parts.append(rng.choice([",", ".", "!?", "...", "--", "(x)", "\"q\"", "#1", "$5", "😀", "👍🏽"]))
    sep = lambda: rng.choice([" ", " ", " ", "  ", "\t", "\n", " \n", "\n\n", "\r\n", "   \n  "])
    return "".join(p + sep() for p in parts).rstrip(" ") + rng.choice(["", " ", "\n", "  "])

corpus = [sentence() for _ in range(3000)] + code * 50
strings = [sentence() for _ in range(300)] + code + [
    "", " ", "  ", "\n", "\n\n\n", " \n ", "a  b", "a\t\tb", "1234567", "12 345 6789", "x1y22z333", "'s 'S 'll 'LL 'Re",
    "e\u0301cole cafe\u0301", "é vs e\u0301", "ﬁ ligature", "Ω Ω", "tab\tend\t", "trailing   ", "   leading", "mixed \r\n\r\n end",
    "emoji 😀😀 and 👍🏽", "中文，标点。", "a-b_c.d/e\\f", "~!@#$%^&*()_+", "\u00a0nbsp\u00a0", "\u3000ideographic space"]

def build(regex, nfc, ignore_merges):
    tok = Tokenizer(models.BPE())
    if nfc: tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    spec = json.loads(tok.to_str())
    spec["model"]["ignore_merges"] = ignore_merges
    return Tokenizer.from_str(json.dumps(spec))

here = os.path.dirname(os.path.abspath(__file__))
cases = {"strings": strings}
for name, regex, nfc, ignore in [("llama3", LLAMA3, False, True), ("qwen2", QWEN2, True, False)]:
    tok = build(regex, nfc, ignore)
    os.makedirs(os.path.join(here, name), exist_ok=True)
    tok.save(os.path.join(here, name, "tokenizer.json"))
    cases[name] = [tok.encode(s, add_special_tokens=False).ids for s in strings]
json.dump(cases, open(os.path.join(here, "cases.json"), "w"), ensure_ascii=False)
print({k: len(v) for k, v in cases.items()})
