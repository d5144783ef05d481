"""Letter counting: "How many r's are in "strrrawberrry"?" - generated, seeded, scored by exact match
of the number the answer states (read as the methods read short answers).

Four kinds of text, taken in turn so any prefix (--limit) has all of them: ordinary words, stretched
spellings with letters repeated, long words, and short phrases. One question in ten asks for a letter the
text does not contain.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

from cepo.checks.answers import extract_answer
from cepo.errors import CepoError
from cepo.evals.base import BadLinePolicy, Dataset, Loaded, Problem, Verdict

SEED = 20240917
COUNT = 400

WORDS = [
    "strawberry",
    "banana",
    "apple",
    "cherry",
    "raspberry",
    "blueberry",
    "pepper",
    "coffee",
    "committee",
    "balloon",
    "bookkeeper",
    "mississippi",
    "tomato",
    "potato",
    "necessary",
    "occurrence",
    "parallel",
    "success",
    "address",
    "embarrass",
    "letter",
    "difficult",
    "programming",
    "assessment",
    "possession",
    "tennessee",
    "giraffe",
    "hippopotamus",
    "sheep",
    "different",
    "accommodate",
    "millennium",
    "referee",
    "pizzazz",
    "grammar",
    "umbrella",
    "library",
    "february",
    "calendar",
    "rhythm",
]
LONG_WORDS = [
    "antidisestablishmentarianism",
    "supercalifragilisticexpialidocious",
    "incomprehensibilities",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "floccinaucinihilipilification",
    "uncharacteristically",
    "counterrevolutionaries",
    "electroencephalographically",
    "internationalization",
    "deinstitutionalization",
    "misinterpretation",
    "overrepresentation",
    "telecommunications",
]
PHRASES = (
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "peter piper picked a peck of pickled peppers",
    "a stitch in time saves nine",
    "all that glitters is not gold",
    "better late than never",
    "the early bird catches the worm",
    "every cloud has a silver lining",
    "red lorry yellow lorry",
    "how much wood would a woodchuck chuck",
)
QUESTIONS = (
    'How many times does the letter "{letter}" appear in "{text}"?',
    'How many {letter}\'s are in "{text}"?',
    'Count the letter "{letter}" in "{text}". How many are there?',
)


class LettersProblem(Problem):
    text: str
    letter: str
    count: int


class Letters(Dataset):
    name = "letters"
    task = "number"

    def load(self, path: Path | None, on_bad_line: BadLinePolicy) -> Loaded:
        if path is not None:
            raise CepoError("the letters dataset is generated, not read from a file", hint="leave out --path")
        rng = random.Random(SEED)
        return Loaded(problems=[_problem(index, rng) for index in range(COUNT)])

    async def score(self, problem: Problem, answer: str) -> Verdict:
        assert isinstance(problem, LettersProblem)
        predicted = extract_answer(answer, "number")
        if predicted == str(problem.count):
            return Verdict(passed=True)
        return Verdict(passed=False, detail=f"answered {predicted}, expected {problem.count}")


def _problem(index: int, rng: random.Random) -> LettersProblem:
    kind = index % 4
    if kind == 0:
        text = rng.choice(WORDS)
    elif kind == 1:
        text = stretch(rng.choice(WORDS), rng)
    elif kind == 2:
        text = rng.choice(LONG_WORDS)
    else:
        text = rng.choice(PHRASES)
    present = sorted(set(text) - {" "})
    absent = sorted(set(string.ascii_lowercase) - set(present))  # empty for a pangram
    letter = rng.choice(absent) if absent and rng.random() < 0.1 else rng.choice(present)
    question = rng.choice(QUESTIONS).format(letter=letter, text=text)
    return LettersProblem(
        id=f"letters-{index:04d}",
        messages=[{"role": "user", "content": question}],
        text=text,
        letter=letter,
        count=text.count(letter),
    )


def stretch(word: str, rng: random.Random) -> str:
    """Repeat one to three of the word's letters a few extra times: strawberry -> strrrawberrry."""
    stretched = set(rng.sample(sorted(set(word)), k=min(len(set(word)), rng.randint(1, 3))))
    return "".join(char * (1 + rng.randint(1, 3)) if char in stretched else char for char in word)
