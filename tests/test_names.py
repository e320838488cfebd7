"""Names usable as folders on every platform and inside git branch names."""

from __future__ import annotations

import subprocess
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.errors import InvalidInput
from coordinator.names import (
    WINDOWS_RESERVED,
    agent_folder,
    safe_component,
    task_branch,
    unique_name,
)
from tests.gitrepo import git, make_repo

DEVICES = ["CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))]
NASTY = [*':*?"<>|\\/~^[]@{}. -_\t\n\r\x00\x1b\x7f\u0085\u00a0\u200b\u2028', ".lock", "..", "@{", "con"]
texts = st.lists(st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=150).map("".join)


def assert_safe(name: str, max_length: int = 200) -> None:
    """Every property a produced name promises."""
    assert name
    assert len(name.encode()) <= max_length
    assert all(c in "._-" or unicodedata.category(c)[0] in "LNM" for c in name), name
    assert name == name.lower()
    assert ".." not in name
    assert name[0] not in ".-_"
    assert name[-1] not in ".-"
    assert not name.endswith(".lock")
    assert name.split(".")[0] not in WINDOWS_RESERVED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Add cart: API", "add-cart-api"),
        ("  Fix   the bug  ", "fix-the-bug"),
        ("a..b", "a.b"),
        ("...a....b...", "a.b"),
        ("-a", "a"),
        ("--a", "a"),
        (".hidden", "hidden"),
        ("_private", "private"),
        ("a.", "a"),
        ("a ", "a"),
        ("a. . .", "a"),
        ("a-", "a"),
        ("a.lock", "a"),
        ("a.LOCK.lock.", "a"),
        ("release.lock-file", "release.lock-file"),
        ("x@{1}", "x-1"),
        ("CamelCase_Name", "camelcase_name"),
        ("Ünïcödé straße", "ünïcödé-straße"),
        ("日本語のタスク", "日本語のタスク"),
        ("console", "console"),
        ("com10", "com10"),
        ("auxiliary.txt", "auxiliary.txt"),
        ("lpt", "lpt"),
    ],
)
def test_sanitising(text: str, expected: str) -> None:
    assert safe_component(text) == expected
    assert_safe(expected)


@pytest.mark.parametrize(
    "char", [*':*?"<>|\\/', " ", "\t", "\n", "\u00a0", "\u3000", "~", "^", "[", "@", "{"]
)
def test_each_invalid_character_is_replaced(char: str) -> None:
    assert safe_component(f"a{char}b") == "a-b"


@pytest.mark.parametrize("code", [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x200B, 0x202E, 0xFEFF])
def test_control_and_format_characters_are_replaced(code: int) -> None:
    assert safe_component(f"a{chr(code)}b") == "a-b"


@pytest.mark.parametrize("device", [*DEVICES, "COM0", "LPT0", "COM²", "LPT³"])
@pytest.mark.parametrize("case", [str.upper, str.lower, str.title, lambda s: s[0].lower() + s[1:]])
@pytest.mark.parametrize("extension", ["", ".txt", ".tar.gz", "."])
def test_every_windows_device_name_gets_a_suffix(
    device: str, case: Callable[[str], str], extension: str
) -> None:
    name = safe_component(case(device) + extension)
    assert name == device.lower() + "_" + extension.rstrip(".").lower()
    assert_safe(name)


def test_the_cap_counts_bytes_and_never_splits_a_character() -> None:
    two_byte = safe_component("é" * 300)
    assert two_byte == "é" * 100
    three_byte = safe_component("日本" * 100)
    assert three_byte == "日本" * 33
    assert len(three_byte.encode()) == 198
    with_marks = safe_component("x\u0301" * 150)  # no precomposed form: every x keeps its accent
    assert with_marks == "x\u0301" * 66
    assert safe_component("a" * 250, max_length=20) == "a" * 20


def test_cutting_never_leaves_a_bad_ending_or_a_device_name() -> None:
    assert safe_component("ab.cdefgh", max_length=8) == "ab.cdefg"
    assert safe_component("abcdefg.hij", max_length=8) == "abcdefg"
    assert safe_component("com1.tar.gz", max_length=8) == "com1_.ta"


def test_empty_results_fall_back() -> None:
    assert safe_component("") == "item"
    assert safe_component(" ./\\-_ ") == "item"
    assert safe_component("😀", fallback="agent") == "agent"
    assert safe_component("", fallback="..Con") == "con_"
    assert safe_component("", fallback="") == "item"


def test_too_small_a_cap_is_refused() -> None:
    with pytest.raises(InvalidInput, match="max_length"):
        safe_component("abc", max_length=3)


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(min_value=8, max_value=255))
def test_any_text_gives_a_safe_name(text: str, max_length: int) -> None:
    name = safe_component(text, max_length=max_length)
    assert_safe(name, max_length)
    assert safe_component(name, max_length=max_length) == name


def test_unique_names_differ_ignoring_case() -> None:
    assert unique_name("api", []) == "api"
    assert unique_name("api", ["API"]) == "api-2"
    assert unique_name("api", ["api", "Api-2", "other"]) == "api-3"
    assert unique_name("é", [unicodedata.normalize("NFD", "É")]) == "é-2"


def test_unique_names_after_sanitising() -> None:
    taken: list[str] = []
    for title in ["Add cart: API", "add cart api", "ADD-CART-API", "Add cart: API!"]:
        taken.append(unique_name(safe_component(title), taken))
    assert taken == ["add-cart-api", "add-cart-api-2", "add-cart-api-3", "add-cart-api-4"]


def test_unique_names_stay_within_the_cap() -> None:
    long = "x" * 200
    assert unique_name(long, [long]) == "x" * 198 + "-2"
    wide = "é" * 100
    assert unique_name(wide, [wide, wide[:99] + "-2"]) == "é" * 99 + "-3"
    assert len(unique_name(wide, [wide]).encode()) <= 200


def test_task_branches() -> None:
    assert task_branch(12, "Add cart: API") == "yokeflow/task-12-add-cart-api"
    assert task_branch(7, " ?? ") == "yokeflow/task-7"
    assert task_branch(7, "CON") == "yokeflow/task-7-con_"
    long = task_branch(123456, "word " * 100)
    assert len(long.encode()) <= 200
    assert long.startswith("yokeflow/task-123456-word-word")
    with pytest.raises(InvalidInput, match="task_id"):
        task_branch(0, "x")


def test_agent_folders() -> None:
    assert agent_folder("implementer", 3) == "implementer-3"
    assert agent_folder("Reviewer (Claude)", 12) == "reviewer-claude-12"
    assert agent_folder("", 4) == "agent-4"
    assert agent_folder("_integration", 1) == "integration-1"
    assert len(agent_folder("x" * 500, 99)) == 63
    with pytest.raises(InvalidInput, match="agent_id"):
        agent_folder("x", -1)


@settings(max_examples=200, deadline=None)
@given(texts, st.integers(min_value=1, max_value=10**12))
def test_agent_folders_are_safe_and_never_the_integration_worktree(name: str, agent_id: int) -> None:
    folder = agent_folder(name, agent_id)
    assert folder != "_integration"
    assert_safe(folder)


def check_ref_format(branch: str) -> bool:
    done = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == branch


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=10**9), texts)
def test_git_accepts_every_task_branch(task_id: int, title: str) -> None:
    branch = task_branch(task_id, title)
    assert len(branch) <= 200
    assert check_ref_format(branch), branch


def test_git_accepts_the_table_as_branches_and_folders(tmp_path: Path) -> None:
    """One `update-ref --stdin` transaction creates a branch for every nasty title, and a folder each."""
    titles = [
        *NASTY,
        *DEVICES,
        "Add cart: API",
        "a..b",
        "x" * 400,
        "é" * 300,
        "-lead",
        "trail.",
        "a.lock",
        "@",
    ]
    titles += [chr(code) for code in [*range(0x20), 0x7F]]
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    branches = [task_branch(number, title) for number, title in enumerate(titles, start=1)]
    commands = "".join(f"create refs/heads/{branch}\0{head}\0" for branch in branches)
    done = subprocess.run(
        ["git", "update-ref", "--stdin", "-z"], cwd=repo, input=commands, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    listed = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/yokeflow").splitlines()
    assert sorted(listed) == sorted(branches)
    folders = tmp_path / "folders"
    folders.mkdir()
    for number, title in enumerate(titles, start=1):
        (folders / agent_folder(title, number)).mkdir()
        (folders / safe_component(title)).mkdir(exist_ok=True)
