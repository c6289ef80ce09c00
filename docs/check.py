#!/usr/bin/env python3
"""Checks README.md and docs/ (`make docs-check`, part of `make test`; standard library only).

- Every link in README.md and docs/**/*.md to a file of the repository exists, and every
  `#anchor` (in the same file or another one) names a heading of that file, as GitHub makes
  them. Links to other sites are not fetched.
- README's headline numbers (between `<!-- headline:begin -->` and `<!-- headline:end -->`)
  are the same lines as in docs/bench.md, which bench/report.py writes.
- Every ```yaml block of README is a piece of envoy/envoy.yaml (the file `make run` and the
  Envoy e2e suite load), comment lines left aside.
- README is at most 250 lines and says how to add the filter to Envoy within its first 40.

Prints every problem and exits 1 when there is one.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BENCH = os.path.join(ROOT, "docs", "bench.md")
ENVOY_YAML = os.path.join(ROOT, "envoy", "envoy.yaml")
HEADLINE = ("<!-- headline:begin -->", "<!-- headline:end -->")
ENVOY_HEADING = "## Add it to Envoy"
MAX_LINES, FIRST_SCREEN = 250, 40

problems = []


def rel(path):
    return os.path.relpath(path, ROOT)


def prose_lines(text):
    """(line number, line) outside fenced code blocks, with inline code blanked out."""
    fence = None
    for n, line in enumerate(text.split("\n"), 1):
        m = re.match(r"^\s*(```+|~~~+)", line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1).startswith(fence):
                fence = None
            continue
        if fence is None:
            yield n, re.sub(r"`+[^`]*`+", lambda c: " " * len(c.group(0)), line)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"`", "", heading.strip().lower())
    s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)  # a link in a heading keeps its text
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


_anchors = {}


def anchors(path):
    if path not in _anchors:
        seen, out = {}, set()
        text = open(path, encoding="utf-8").read()
        fence = None
        for line in text.split("\n"):
            m = re.match(r"^\s*(```+|~~~+)", line)
            if m:
                fence = m.group(1) if fence is None else (None if m.group(1).startswith(fence) else fence)
                continue
            h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line) if fence is None else None
            if h:
                base = slug(h.group(1))
                k = seen.get(base, 0)
                seen[base] = k + 1
                out.add(base if k == 0 else f"{base}-{k}")
        for a in re.findall(r'<a\s+(?:id|name)="([^"]+)"', text):
            out.add(a)
        _anchors[path] = out
    return _anchors[path]


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def check_links(path):
    text = open(path, encoding="utf-8").read()
    for n, line in prose_lines(text):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = path if not file_part else os.path.normpath(os.path.join(os.path.dirname(path), file_part))
            where = f"{rel(path)}:{n}: link {target!r}"
            if not dest.startswith(ROOT + os.sep) and dest != ROOT:
                problems.append(f"{where} leaves the repository")
            elif not os.path.exists(dest):
                problems.append(f"{where}: no such file {rel(dest)}")
            elif anchor:
                if not dest.endswith(".md") or os.path.isdir(dest):
                    problems.append(f"{where}: an anchor into a file that is not Markdown")
                elif anchor not in anchors(dest):
                    problems.append(f"{where}: {rel(dest)} has no heading #{anchor}")


def block(path, begin, end):
    text = open(path, encoding="utf-8").read()
    if begin not in text or end not in text:
        problems.append(f"{rel(path)}: no {begin} … {end} block")
        return None
    inner = text[text.index(begin) + len(begin):text.index(end)]
    return [l.rstrip() for l in inner.strip().split("\n")]


def check_headline():
    readme, bench = block(README, *HEADLINE), block(BENCH, *HEADLINE)
    if readme is None or bench is None:
        return
    if readme != bench:
        problems.append("README.md's headline numbers differ from docs/bench.md's "
                        "(copy the block between the headline markers from docs/bench.md):")
        for a, b in zip(readme + [""] * len(bench), bench + [""] * len(readme)):
            if a != b:
                problems.append(f"  README.md:      {a}\n  docs/bench.md:  {b}")
    if not any(re.search(r"\d", l) for l in readme):
        problems.append("README.md's headline block holds no number")


def yaml_blocks(text):
    out, cur = [], None
    for n, line in enumerate(text.split("\n"), 1):
        if cur is None and re.match(r"^```ya?ml\s*$", line):
            cur = (n, [])
        elif cur is not None and line.startswith("```"):
            out.append(cur)
            cur = None
        elif cur is not None:
            cur[1].append(line)
    return out


def significant(lines):
    return [l.rstrip() for l in lines if l.strip() and not l.lstrip().startswith("#")]


def indent(l):
    return len(l) - len(l.lstrip(" "))


def check_envoy_snippets():
    envoy = significant(open(ENVOY_YAML, encoding="utf-8").read().split("\n"))
    for n, lines in yaml_blocks(open(README, encoding="utf-8").read()):
        snip = significant(lines)
        if not snip:
            continue
        base = min(indent(l) for l in snip)
        snip = [l[base:] for l in snip]
        found = False
        for i, e in enumerate(envoy):
            if e.strip() != snip[0].strip() or i + len(snip) > len(envoy):
                continue
            pad = " " * (indent(e) - indent(snip[0]))
            if all(envoy[i + k] == pad + s for k, s in enumerate(snip)):
                found = True
                break
        if not found:
            problems.append(f"README.md:{n}: this yaml block is not a piece of envoy/envoy.yaml "
                            "(the file the Envoy e2e suite loads); copy it from there")


def check_readme_shape():
    text = open(README, encoding="utf-8").read()
    lines = (text[:-1] if text.endswith("\n") else text).split("\n")
    if len(lines) > MAX_LINES:
        problems.append(f"README.md has {len(lines)} lines, more than {MAX_LINES}: move the rest into docs/")
    at = next((i + 1 for i, l in enumerate(lines) if l.strip() == ENVOY_HEADING), None)
    if at is None or at > FIRST_SCREEN:
        problems.append(f"README.md: {ENVOY_HEADING!r} must be within its first {FIRST_SCREEN} lines "
                        f"(found at {at})")


def main():
    files = [README]
    for d, _, names in os.walk(os.path.join(ROOT, "docs")):
        files += [os.path.join(d, f) for f in sorted(names) if f.endswith(".md")]
    for f in files:
        check_links(f)
    check_headline()
    check_envoy_snippets()
    check_readme_shape()
    if problems:
        print("docs check failed:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    print(f"docs check: {len(files)} files, links, headline numbers, envoy.yaml pieces and README's shape ok")


if __name__ == "__main__":
    main()
