"""The docs test's parser: which blocks are commands, the markers, console steps, matching."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.docs import blocks

PAGE = """# A page

```bash
respublica contracts show lyon-micromobility
```

<!-- docs-test: skip — starts a broker on a fixed port -->
```bash
respublica kafka start
```

```json
{"accepted": 1}
```

- in a list:
  ```console
  $ respublica gateway new-token
  ```
"""


@pytest.mark.unit
def test_an_unmarked_command_block_that_did_not_run_fails_the_check() -> None:
    found = blocks.parse(PAGE, "page.md")
    assert [(b.line, b.info, b.is_command) for b in found] == [
        (3, "bash", True),
        (8, "bash", True),
        (12, "json", False),
        (17, "console", True),
    ]
    assert found[3].body == "$ respublica gateway new-token\n"  # without the list's indent
    assert found[1].marker == blocks.Marker("skip", None, "starts a broker on a fixed port")
    unrun = blocks.unrun(found, ran={"page.md:3"})
    assert len(unrun) == 1 and unrun[0].startswith("page.md:17: a console block")
    assert blocks.unrun(found, ran={"page.md:3", "page.md:17"}) == []


@pytest.mark.unit
@pytest.mark.parametrize(
    ("markdown", "problem"),
    [
        ("<!-- docs-test: skip -->\n```bash\nls\n```\n", "needs a reason"),
        ("<!-- docs-test: later — soon -->\n```bash\nls\n```\n", "unknown docs-test marker"),
        ("<!-- docs-test: background — a server -->\n```sh\nx\n```\n", "needs the URL"),
        ("```zsh\nls\n```\n", "unknown info string 'zsh'"),
        ("<!-- docs-test: skip — why -->\n```json\n{}\n```\n", "a docs-test marker on a sample"),
        ("```bash\ncurl -d '{\"timestamp\": 1780000000000}' x\n```\n", "a fixed time in ms"),
    ],
)
def test_what_makes_a_page_untestable(markdown: str, problem: str) -> None:
    found = blocks.problems(blocks.parse(markdown, "p.md"))
    assert len(found) == 1 and problem in found[0], found


@pytest.mark.unit
def test_a_marker_that_cannot_be_read_is_an_error() -> None:
    plain = blocks.parse("<!-- docs-test: background http://x/ -- a server -->\n```sh\nx\n```\n")
    assert plain[0].marker == blocks.Marker("background", "http://x/", "a server")
    with pytest.raises(blocks.DocsError, match="p.md:1: unreadable docs-test marker"):
        blocks.parse("<!-- docs-test skip: why -->\n```bash\nls\n```\n", "p.md")


@pytest.mark.unit
def test_console_steps_keep_continuations_and_heredocs_with_their_command() -> None:
    body = (
        "$ export TOKEN=abc\n"
        "$ curl -sS https://x \\\n"
        '    -H "A: b" --data-binary @- <<EOF\n'
        '[{"timestamp": $NOW}]\n'
        "EOF\n"
        '{"accepted": 1}\n'
        "$ ls\n"
    )
    steps = blocks.console_steps(body)
    assert [s.command.splitlines()[0] for s in steps] == [
        "export TOKEN=abc",
        "curl -sS https://x \\",
        "ls",
    ]
    assert steps[1].command.endswith("EOF") and steps[1].expected == ['{"accepted": 1}']
    with pytest.raises(blocks.DocsError, match="before the first"):
        blocks.console_steps("output\n$ ls\n")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("shown", "printed", "ok"),
    [
        (
            '{"request_id": "7d0c...", "accepted": 1, "rejected": []}',
            '{"accepted": 1, "rejected": [], "request_id": "e1"}',
            True,
        ),
        (
            '{"request_id": "7d0c...", "accepted": 1, "rejected": []}',
            '{"accepted": 0, "rejected": [], "request_id": "e1"}',
            False,
        ),
        ('{"accepted": 1}', '{"accepted": 1, "extra": 2}', False),
        ('{"accepted": 1}', '{"accepted": true}', False),
        ("token:        1Hk3...Qs", "token: Zm9vYmFy", True),
        ("token:        1Hk3...Qs", "secret: Zm9vYmFy", False),
    ],
)
def test_shown_output_matches_with_ellipses_as_wildcards(
    shown: str, printed: str, ok: bool
) -> None:
    assert (blocks.matches([shown], printed + "\n") is None) is ok
    assert blocks.matches([], "anything") is None
    assert blocks.matches([shown], "") is not None


ROOT = Path(__file__).resolve().parents[2]
EVERY_PAGE = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.unit
@pytest.mark.parametrize("page", EVERY_PAGE)
def test_every_runnable_block_of_every_page_is_run_or_says_where_it_is_tested(page: str) -> None:
    # No broker: the pages the docs test runs are checked there (`unrun` with what it ran).
    found = blocks.read(ROOT / page, ROOT)
    problems = blocks.problems(found)
    if page not in blocks.RUN_PAGES:
        problems += blocks.unrun(found, ran=set())
    assert not problems, "\n".join(problems)


@pytest.mark.unit
def test_a_python_block_runs_and_takes_a_skip_marker() -> None:
    page = "```python\nprint(1)\n```\n\n<!-- docs-test: skip — needs X -->\n```python\nx\n```\n"
    found = blocks.parse(page, "p.md")
    assert [b.runs for b in found] == [True, True] and not blocks.problems(found)
    assert blocks.unrun(found, ran=set()) == [
        "p.md:1: a python block the docs test did not run; make it runnable, or mark it "
        "`<!-- docs-test: skip — why (and where it is tested) -->`"
    ]


@pytest.mark.unit
def test_a_python_block_that_raises_fails_and_one_that_runs_passes(tmp_path: Path) -> None:
    from tests.docs.test_docs import Shell, run_block

    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    shell = Shell(tmp_path, env)
    page = "```python\nprint('ok')\n```\n\n```python\nraise ValueError('the page is wrong')\n```\n"
    runs, raises = blocks.parse(page, "p.md")
    assert run_block(shell, runs, {}) is None
    failure = run_block(shell, raises, {})
    assert failure is not None and "ValueError: the page is wrong" in failure
