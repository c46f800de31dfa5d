"""The spoken-instruction probe: verifiable instructions learned in text, then issued as speech.

Every instruction is about one word and has one right answer:

    Instruction: say the word bread three times. Response: bread bread bread.
    Instruction: say the word bread in capitals. Response: BREAD.

The text pre-training corpus (and the text share of every arm) holds the training pairs (word, template);
the probe asks the held-out pairs: for word i, template i mod 4 is never trained. So answering needs the
instruction understood, not a memorized pair. Written, the prompt is the line up to ``Response:``; spoken,
the instruction sentence is audio (``Instruction:`` <speech> `` Response:``). An answer is right when the
generated text up to its first period or line end is exactly the expected answer.
"""

from __future__ import annotations

from dataclasses import dataclass

WORDS = ("bread", "water", "stone", "river", "house", "gold", "fire", "bird", "tree", "lamb",
         "wine", "king", "night", "land", "sword", "field", "horse", "star", "door", "city")
TEMPLATES = (
    ("three", "say the word {w} three times.", "{w} {w} {w}"),
    ("caps", "say the word {w} in capitals.", "{W}"),
    ("twice", "say the word {w} twice.", "{w} {w}"),
    ("once", "say the word {w} once.", "{w}"),
)
PREFIX, SUFFIX = "Instruction:", " Response:"


@dataclass(frozen=True)
class ProbeItem:
    id: str
    instruction: str  # the part that is spoken in the spoken probe
    answer: str

    def document(self) -> str:
        return f"{PREFIX} {self.instruction}{SUFFIX} {self.answer}."


def items(words: tuple[str, ...] = WORDS) -> tuple[list[ProbeItem], list[ProbeItem]]:
    """(training pairs, held-out probe pairs)."""
    train, held = [], []
    for i, word in enumerate(words):
        for t, (name, instruction, answer) in enumerate(TEMPLATES):
            item = ProbeItem(f"{name}-{word}", instruction.format(w=word),
                             answer.format(w=word, W=word.upper()))
            (held if t == i % len(TEMPLATES) else train).append(item)
    return train, held


def training_documents(repeats: int) -> list[dict]:
    train, _ = items()
    return [{"id": f"probe-{item.id}-{r}", "lang": "en", "text": item.document()}
            for r in range(repeats) for item in train]


def answer_of(generated: str) -> str:
    """The generated text up to its first period or line end, stripped."""
    text = generated.replace("\n", ".")
    return text.split(".", 1)[0].strip()


def is_right(generated: str, expected: str) -> bool:
    return answer_of(generated) == expected
