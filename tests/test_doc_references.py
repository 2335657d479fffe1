"""Every file the README and docs name exists in the repo (installers follow them)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

# A relative path in backquotes or a Markdown link: `gateway/hub.py`, (docs/install.md).
_REF = re.compile(r"[`(]((?:\.\./)?[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+\.[a-z]{1,5})[`)#]")


def references() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for ref in _REF.findall(doc.read_text()):
            found.append((doc.relative_to(ROOT).as_posix(), ref))
    return found


def test_docs_name_files_that_exist() -> None:
    refs = references()
    assert len(refs) > 20  # the pattern still finds what the docs cite
    missing = []
    for doc, ref in refs:
        base = ROOT if not ref.startswith("../") else ROOT / "docs"
        if not ((base / ref).exists() or (ROOT / "docs" / ref).exists()):
            missing.append(f"{doc}: {ref}")
    assert not missing, missing
