"""Cross-checks: question kinds, answer normalization, code extraction, examples and running them."""

from __future__ import annotations

import pytest

from cepo.checks import (
    Example,
    check_candidate,
    classify,
    code_blocks,
    examples_in,
    extract_answer,
    extract_code,
    run_examples,
)
from cepo.checks.code import definitions_in, without_main_block
from cepo.errors import CepoError
from cepo.sandbox import Limits


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ('How many r\'s are in the word "strawberry"?', "number"),
        ("What is 17 * 23?", "number"),
        ("Write a Python function that reverses a string.", "code"),
        ("Implement fib(n).\n>>> fib(5)\n5", "code"),
        ("Is 91 a prime number?", "yesno"),
        ("Which planet is largest?\nA) Mars\nB) Jupiter\nC) Venus", "choice"),
        ("Write a haiku about autumn.", "open"),
        ("Explain why the sky is blue.", "open"),
    ],
)
def test_a_question_is_classified_by_the_answer_it_wants(question: str, kind: str) -> None:
    assert classify(question) == kind


def test_public_tests_make_any_question_a_code_question() -> None:
    assert classify("Solve the task below.", has_tests=True) == "code"


@pytest.mark.parametrize(
    ("text", "kind", "answer"),
    [
        ("There are 3 r's in strawberry.", "number", "3"),
        ("Counting gives 2 then 3.\n**Answer:** 3 r's", "number", "3"),
        ("The answer is \\boxed{1,234}.", "number", "1234"),
        ("Answer: 42.0", "number", "42"),
        ("Answer: 0.5", "number", "1/2"),
        ("It has three of them.", "number", "3"),
        ('The letter "r" appears only once in "library".', "number", "1"),
        ("I cannot tell.", "number", None),
        ("1. Write down the word.", "number", None),  # a list's label is not an answer
        ("Step 2: count them.", "number", None),
        ("3. It appears 2 times.", "number", "2"),
        ("1. 2: Count them.", "number", None),
        ("2. 1. 4", "number", "4"),
        ("Answer: 3. Step 2 checks it.", "number", "3"),
        ("2.", "number", "2"),
        ("Answer: (B) Jupiter", "choice", "B"),
        ("I think it is C.", "choice", "C"),
        ("Yes, 91 = 7 * 13 is not prime... Answer: no", "yesno", "no"),
        ("True.", "yesno", "yes"),
        ("Answer:  The **Sky** is blue. ", "open", "the sky is blue"),
    ],
)
def test_answers_are_normalized_so_equal_answers_compare_equal(
    text: str, kind: str, answer: str | None
) -> None:
    assert extract_answer(text, kind) == answer  # type: ignore[arg-type]


def test_code_is_taken_from_fences_preferring_the_wanted_function() -> None:
    text = (
        "Here:\n```python\ndef helper():\n    return 1\n\n\ndef target(x):\n    return x\n```\n"
        "Usage:\n```\nprint(target(2))\n```\nand ```js\nconsole.log(1)\n```"
    )
    assert len(code_blocks(text)) == 2  # the js block is not Python
    assert extract_code(text, ["target"]).startswith("def helper")
    assert extract_code("```python\nprint(1)\n", []) == "print(1)"  # a fence cut by the token limit
    assert extract_code("def f():\n    return 1", []) == "def f():\n    return 1"
    assert extract_code("The answer is 3.", []) is None


def test_the_main_block_is_dropped_when_code_is_called() -> None:
    code = "def f():\n    return 1\n\nif __name__ == '__main__':\n    print(input())\n"
    assert without_main_block(code) == "def f():\n    return 1"


def test_examples_are_found_in_the_question() -> None:
    question = (
        "Write double(x).\n>>> double(2)\n4\n"
        "Example: double(3) -> 6\n"
        "For example, `double(0)` should return `0`.\n"
        "assert double(-1) == -2\n"
        "The answer is (not) 5 -> 6.\n"
    )
    assert examples_in(question) == [
        Example(kind="call", input="double(2)", output="4"),
        Example(kind="call", input="double(3)", output="6"),
        Example(kind="call", input="double(0)", output="0"),
        Example(kind="assert", input="assert double(-1) == -2"),
    ]


@pytest.mark.parametrize(
    ("question", "found"),
    [
        (
            "Write a function is_even(n). For example, is_even(4) returns True, and is_even(3) == False.",
            [("is_even(4)", "True"), ("is_even(3)", "False")],
        ),
        ("    any_int(5, 2, 7) ➞ True", [("any_int(5, 2, 7)", "True")]),
        ("    choose_num(12, 15) = 14", [("choose_num(12, 15)", "14")]),
        ('    decimal_to_binary(15)   # returns "db1111db"', [("decimal_to_binary(15)", '"db1111db"')]),
        ("    iscube(1) ==> true", [("iscube(1)", "true")]),
        ('    compare_one(1, "2,3") ➞ "2,3"', [('compare_one(1, "2,3")', '"2,3"')]),
        ("name_check('1.dll') # => 'No' (it should start with a letter)", [("name_check('1.dll')", "'No'")]),
        ("1. fizzbuzz(3) returns Fizz", [("fizzbuzz(3)", "Fizz")]),
        ("f(1) = true, f(2) = false", [("f(1)", "true"), ("f(2)", "false")]),
        ("class C:\n    def m(self, x): ...\nC().m(2) -> 4", [("C().m(2)", "4")]),
        ("Write add. add(2, 3) -> 5. Don't use sum(xs); sum([1]) = 1 is no example.", [("add(2, 3)", "5")]),
    ],
)
def test_examples_written_in_prose_are_found(question: str, found: list[tuple[str, str]]) -> None:
    assert [(e.input, e.output) for e in examples_in(question)] == found


def test_a_doctest_comparison_without_a_value_is_an_assert() -> None:
    question = 'def count(a):\n    """\n    >>> count([1, 2]) == 2\n    """'
    assert examples_in(question) == [Example(kind="assert", input="assert count([1, 2]) == 2")]


@pytest.mark.parametrize(
    "question",
    [
        "def tri(n):\n    tri(n) = 1 + n / 2, if n is even.",  # a definition, on names
        "def main() -> None:\n    pass",  # an annotation
        "def split_words(txt):\n    ord('a') = 0, ord('b') = 1",  # another function, described
        'def fruit(s, n):\n    fruit("5 apples", 19) ->19 - 5 - 6 = 8',  # a sum that explains the value
        "def f(x):\n    f(2) -> [1, 2] + [3]",
        "def f(x):\n    f(3) = f(2) + f(1)",
        "Write f(x). f(10) returns 1,000.",  # a number's digits, or a tuple without parentheses
        "Write primes(n). primes(5) returns 5 numbers: [2, 3, 5, 7, 11].",
        "My add(a, b) is broken: add(2, 3) returns 6 instead of 5.",
        "- parse('') returns an empty list",
        "`range_sum(start=0, stop=10) -> int`",
        "f(\ud800) is 1",  # what Python cannot encode is no example, and no error
    ],
)
def test_prose_that_is_no_example(question: str) -> None:
    assert examples_in(question) == []


def test_an_assert_line_is_one_example_not_two() -> None:
    assert examples_in("Write double(x).\nassert double(2) == 4") == [
        Example(kind="assert", input="assert double(2) == 4")
    ]


def test_stdin_examples_are_found_only_when_the_program_reads_input() -> None:
    question = "Read two numbers from standard input and print their sum.\n\nInput:\n1 2\nOutput:\n3\n"
    assert examples_in(question) == [Example(kind="stdio", input="1 2\n", output="3")]
    assert examples_in(question.replace("from standard input", "")) == []


def test_a_request_gives_tests_as_asserts_or_pairs() -> None:
    assert Example.coerce("assert f(1) == 2").kind == "assert"
    assert Example.coerce(("f(1)", "2")) == Example(kind="call", input="f(1)", output="2")
    assert Example.coerce(["1 2\n", "3"]).kind == "stdio"
    assert Example.coerce({"kind": "call", "input": "f()", "output": "1"}).input == "f()"
    with pytest.raises(CepoError):
        Example.coerce(("only one",))  # type: ignore[arg-type]


LIMITS = Limits(cpu_s=5, wall_s=5)


async def test_code_runs_against_each_kind_of_example() -> None:
    code = (
        "def add(a, b):\n    return a + b\n\n"
        "if __name__ == '__main__':\n    a, b = map(int, input().split())\n    print(add(a, b))\n"
    )
    examples = [
        Example(kind="call", input="add(2, 2)", output="4"),
        Example(kind="call", input="add([1], [2])", output="[1, 2]"),
        Example(kind="call", input="add('a', 'b')", output="ab"),
        Example(kind="call", input="add(1, 1)", output="3"),
        Example(kind="assert", input="assert add(1, 2) == 3"),
        Example(kind="assert", input="assert add(1, 2) == 4"),
        Example(kind="stdio", input="5 6\n", output="11"),
        Example(kind="stdio", input="5 6\n", output="12"),
    ]
    results = await run_examples(code, examples, LIMITS)
    assert [r.passed for r in results] == [True, True, True, False, True, False, True, False]
    assert results[3].detail == "returned '2'"
    assert "AssertionError" in results[5].detail


async def test_a_commented_call_and_a_value_in_words_are_checked() -> None:
    code = "def even(n):\n    return n % 2 == 0\n"
    examples = [
        Example(kind="call", input="even(2)  # two (an even number)", output="True"),
        Example(kind="call", input="even(3)", output="false"),
        Example(kind="call", input="even(3)", output="true"),
        Example(kind="call", input="even(3)", output="'False'"),
    ]
    assert [r.passed for r in await run_examples(code, examples, LIMITS)] == [True, True, False, False]


async def test_code_that_exits_early_or_loops_passes_nothing() -> None:
    assert_example = Example(kind="assert", input="assert f() == 1")
    [exits] = await run_examples("def f():\n    return 2\n\nraise SystemExit(0)\n", [assert_example], LIMITS)
    assert not exits.passed
    [loops] = await run_examples(
        "def f():\n    while True:\n        pass\n", [assert_example], Limits(wall_s=1, cpu_s=1)
    )
    assert not loops.passed and loops.detail


async def test_a_code_candidate_is_checked_from_its_most_final_text_with_code() -> None:
    examples = [Example(kind="call", input="sq(3)", output="9")]
    texts = ["The function is above.", "```python\ndef sq(x):\n    return x * x\n```"]
    checks = await check_candidate(texts, "code", examples, run_program=False, seconds=5)
    assert (checks.parses, checks.examples_passed) == (True, 1)
    broken = await check_candidate(
        ["```python\ndef sq(x) return x\n```"], "code", examples, run_program=False, seconds=5
    )
    assert (broken.parses, broken.examples_passed, broken.examples[0].detail) == (
        False,
        0,
        "not valid Python",
    )


async def test_the_code_that_passes_most_examples_wins_the_most_final_among_equals() -> None:
    examples = [Example(kind="call", input=f"sq({x})", output=str(x * x)) for x in (3, 2)]
    wrong, half, right = "x - 1", "9 if x == 3 else 0", "x * x"
    texts = [f"```python\ndef sq(x):\n    return {body}\n```" for body in (wrong, half, right, right)]
    checks = await check_candidate(texts, "code", examples, run_program=False, seconds=5)
    assert (checks.source, checks.examples_passed) == (2, 2) and "x * x" in str(checks.answer)

    better_later = await check_candidate(texts[:2], "code", examples, run_program=False, seconds=5)
    assert (better_later.source, better_later.examples_passed) == (1, 1)
    equals = await check_candidate(texts[2:], "code", [], run_program=False, seconds=5)
    assert (equals.source, equals.parses) == (0, True)  # no examples: the most final code that parses


async def test_a_short_answer_can_come_from_the_candidates_program() -> None:
    texts = ["2", "```python\nword = 'strawberry'\nprint(word.count('r'))\n```"]
    by_program = await check_candidate(texts, "number", [], run_program=True, seconds=5)
    assert (by_program.answer, by_program.program_output) == ("3", "3")
    stated = await check_candidate(texts, "number", [], run_program=False, seconds=5)
    assert stated.answer == "2"
    failing = await check_candidate(["2", "```python\n1/0\n```"], "number", [], run_program=True, seconds=5)
    assert failing.answer == "2" and "ZeroDivisionError" in (failing.program_error or "")


STUB_QUESTION = '''Complete this function, in one ```python block.

```python
from typing import List

print("the question's own output")


def is_even(n: int) -> bool:
    return n % 2 == 0


def evens(xs: List[int]) -> List[int]:
    """ The even numbers of xs.
    >>> evens([1, 2, 4])
    [2, 4]
    """
```'''


def test_a_question_gives_its_imports_and_definitions_but_not_its_statements() -> None:
    context = definitions_in(STUB_QUESTION)
    assert context.startswith("from typing import List\n\ndef is_even(n: int) -> bool:")
    assert "def evens(xs: List[int])" in context and "print" not in context
    assert definitions_in("Write a function that adds two numbers.") == ""


async def test_an_answer_that_writes_only_the_function_runs_with_the_questions_context() -> None:
    answer = (
        "```python\ndef evens(xs: List[int]) -> List[int]:\n    return [x for x in xs if is_even(x)]\n```"
    )
    examples = examples_in(STUB_QUESTION)
    alone = await check_candidate([answer], "code", examples, run_program=False, seconds=5)
    assert alone.examples_passed == 0 and "NameError: name 'List'" in alone.examples[0].detail
    checks = await check_candidate(
        [answer], "code", examples, run_program=False, seconds=5, context=definitions_in(STUB_QUESTION)
    )
    assert (checks.parses, checks.examples_passed, len(examples)) == (True, 1, 1)
    assert checks.answer is not None and "import" not in checks.answer  # the answer is the model's own code
