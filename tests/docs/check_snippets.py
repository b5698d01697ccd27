#!/usr/bin/env python3
"""Checks that every C++ snippet of the docs is compiled code.

Each ```cpp block of docs/*.md and README.md must be, after stripping its common indentation,
either a whole "// doc: <name>" ... "// doc: end" region of a file under tests/ (the region's
common indentation stripped too), or consecutive lines of a file under examples/ or tests/
(compared the same way). Those files are compiled and run by the build, so a snippet that
matches one cannot drift into code that does not compile. A block may be exempted, sparingly,
by the line `<!-- snippet: illustrative -->` right above its opening fence.

Usage:
  check_snippets.py [--root DIR]   check the repository at DIR (default: two levels up)
  check_snippets.py --self-test    check this checker on a generated repository
Exit status 0 when every block matches, 1 otherwise (each failure names the page, the
block's line and its first line).
"""

import argparse
import pathlib
import re
import sys
import tempfile

EXEMPT = "<!-- snippet: illustrative -->"
FENCE_OPEN = re.compile(r"^(\s*)```cpp\s*$")
FENCE_CLOSE = re.compile(r"^\s*```\s*$")
REGION_OPEN = re.compile(r"^\s*// doc: (?!end\s*$)(\S.*?)\s*$")
REGION_CLOSE = re.compile(r"^\s*// doc: end\s*$")
SOURCE_SUFFIXES = {".cpp", ".hpp", ".h", ".cc", ".ipp"}


def dedent(lines):
    """Strips trailing white space and the indentation common to the non-blank lines."""
    lines = [line.rstrip() for line in lines]
    widths = [len(line) - len(line.lstrip(" ")) for line in lines if line]
    cut = min(widths, default=0)
    return tuple(line[cut:] if line else "" for line in lines)


def cpp_blocks(page):
    """Yields (line number of the opening fence, lines, exempt) for each ```cpp block."""
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if not FENCE_OPEN.match(lines[i]):
            i += 1
            continue
        start = i
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        exempt = above >= 0 and lines[above].strip() == EXEMPT
        i += 1
        body = []
        while i < len(lines) and not FENCE_CLOSE.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        yield start + 1, dedent(body), exempt


def source_files(root, folder):
    base = root / folder
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES)


def doc_regions(root):
    """Maps each dedented "// doc:" region of tests/**/*.cpp to where it is."""
    regions = {}
    problems = []
    for path in source_files(root, "tests"):
        if path.suffix != ".cpp":
            continue
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        name, start = None, 0
        for n, line in enumerate(lines):
            if REGION_OPEN.match(line):
                if name is not None:
                    problems.append(f"{path.relative_to(root)}:{n + 1}: region '{name}' is not closed")
                name, start = REGION_OPEN.match(line).group(1), n + 1
            elif REGION_CLOSE.match(line):
                if name is None:
                    problems.append(f"{path.relative_to(root)}:{n + 1}: '// doc: end' without a region")
                    continue
                regions.setdefault(dedent(lines[start:n]), f"{path.relative_to(root)} (doc: {name})")
                name = None
        if name is not None:
            problems.append(f"{path.relative_to(root)}: region '{name}' is not closed")
    return regions, problems


class Excerpts:
    """Finds a dedented block as consecutive lines of a file under examples/ or tests/."""

    def __init__(self, root):
        self.files = []
        for folder in ("examples", "tests"):
            for path in source_files(root, folder):
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                self.files.append((path.relative_to(root), [line.rstrip() for line in text]))

    def find(self, block):
        first = block[0].strip() if block else ""
        for rel, lines in self.files:
            for i in range(len(lines) - len(block) + 1):
                if lines[i].strip() == first and dedent(lines[i:i + len(block)]) == block:
                    return f"{rel}:{i + 1}"
        return None


def check(root, out=sys.stdout):
    """Returns the number of failures, printing one line for each."""
    root = pathlib.Path(root)
    regions, failures = doc_regions(root)
    excerpts = Excerpts(root)
    pages = sorted((root / "docs").glob("*.md")) + [p for p in [root / "README.md"] if p.is_file()]
    checked = exempted = 0
    for page in pages:
        for line, block, exempt in cpp_blocks(page):
            rel = page.relative_to(root)
            if exempt:
                exempted += 1
                continue
            checked += 1
            if not block:
                failures.append(f"{rel}:{line}: empty ```cpp block")
            elif block not in regions and excerpts.find(block) is None:
                first = next((l for l in block if l.strip()), "")
                failures.append(
                    f"{rel}:{line}: this ```cpp block is neither a '// doc:' region of tests/ nor "
                    f"consecutive lines of a file under examples/ or tests/; it starts with: {first.strip()}")
    for failure in failures:
        print(failure, file=out)
    print(f"{checked} C++ blocks checked, {exempted} exempted as illustrative, "
          f"{len(failures)} problem(s)", file=out)
    return len(failures)


def self_test():
    """Runs the checker on a made-up repository: one good page, then one bogus block."""
    import io

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "docs").mkdir()
        (root / "tests" / "x").mkdir(parents=True)
        (root / "examples" / "demo").mkdir(parents=True)
        (root / "tests" / "x" / "x_doc.test.cpp").write_text(
            "TEST_CASE(\"x\") {\n"
            "    // doc: sum\n"
            "    int a = 1;\n"
            "\n"
            "    int b = a + 1;\n"
            "    // doc: end\n"
            "}\n")
        (root / "examples" / "demo" / "main.cpp").write_text(
            "int main() {\n"
            "    int x = 2;\n"
            "    return x - 2;\n"
            "}\n")
        good = ("# Page\n\n"
                "```cpp\nint a = 1;\n\nint b = a + 1;\n```\n\n"              # a region
                "- in a list:\n\n  ```cpp\n  int x = 2;\n  return x - 2;\n  ```\n\n"  # an excerpt, indented
                "<!-- snippet: illustrative -->\n```cpp\nnot compiled anywhere();\n```\n")
        (root / "docs" / "page.md").write_text(good)
        out = io.StringIO()
        if check(root, out) != 0:
            print("self-test: a page whose blocks all match was rejected:\n" + out.getvalue())
            return 1

        bogus = good + "\nText.\n\n```cpp\nint a = 1;\nsmtp_send(a);\n```\n"
        (root / "docs" / "page.md").write_text(bogus)
        bogus_line = bogus.splitlines().index("smtp_send(a);") - 1  # 1-based: the fence, two lines up
        out = io.StringIO()
        failures = check(root, out)
        report = out.getvalue()
        expected = f"docs/page.md:{bogus_line}:"
        if failures != 1 or expected not in report or "starts with: int a = 1;" not in report:
            print(f"self-test: expected one failure naming '{expected}' and the block's first line, got:\n"
                  + report)
            return 1

        # A region quoted with one line changed does not match either.
        (root / "docs" / "page.md").write_text(good.replace("int b = a + 1;", "int b = a + 2;"))
        out = io.StringIO()
        if check(root, out) != 1:
            print("self-test: an edited region was accepted:\n" + out.getvalue())
            return 1
    print("self-test passed: matching blocks accepted, a bogus and an edited block rejected")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parents[2]))
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    return 1 if check(args.root) else 0


if __name__ == "__main__":
    sys.exit(main())
