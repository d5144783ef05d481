"""Finding the Python code in a model's answer and checking that it is valid Python."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

# A block opens with a fence at the start of a line: "in one ```python block" in prose opens nothing.
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = {"", "python", "python3", "py"}


def code_blocks(text: str) -> list[str]:
    """The Python (or untagged) fenced blocks of `text`, in order; a last fence left open (the answer ran
    out of tokens) counts too."""
    return [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS and body.strip()]


def extract_code(text: str, wanted: Iterable[str] = ()) -> str | None:
    """The code of `text`: the longest block defining a function named in `wanted`, else the longest
    block; unfenced text only when it is itself a Python definition."""
    blocks = code_blocks(text)
    if not blocks:
        bare = text.strip()
        return bare if bare.startswith(("def ", "import ", "from ", "class ")) and parses(bare) else None
    defining = [b for b in blocks if any(re.search(rf"\bdef {re.escape(n)}\s*\(", b) for n in wanted)]
    return max(defining or blocks, key=len).strip("\n")


# What a question's code may hold that an answer writing only the asked-for function relies on.
_CONTEXT_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def definitions_in(text: str) -> str:
    """The imports and top-level definitions of the code blocks in `text` (a question). An answer that
    writes only the asked-for function still uses the question's imports and helpers (`List`, a helper
    function given with the stub), as it would in the question's file; so its examples run after these.
    Other statements are left out: they might print, read input or take time."""
    parts: list[str] = []
    for block in code_blocks(text):
        try:
            tree = ast.parse(block)
        except (SyntaxError, ValueError):
            continue
        parts += [ast.unparse(node) for node in tree.body if isinstance(node, _CONTEXT_NODES)]
    return "\n\n".join(parts)


def close_fence(text: str) -> str:
    """`text` with its last code fence closed, if it was left open (the reply stopped at the fence, or ran
    out of tokens)."""
    return f"{text.rstrip()}\n```" if text.count("```") % 2 else text


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def without_main_block(code: str) -> str:
    """`code` without its top-level `if __name__ == "__main__":` blocks, which would read input or print
    when the code is imported to be called."""
    tree = ast.parse(code)
    kept = [node for node in tree.body if not _is_main_guard(node)]
    if len(kept) == len(tree.body):
        return code
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def _is_main_guard(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)
    )
