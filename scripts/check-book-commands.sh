#!/usr/bin/env bash
# Fails when the docs tell a reader to type a `shopstream` command that the
# binary does not have: a subcommand or a flag that `--help` (of that
# subcommand) does not list. Reads the README, book/src, docs/, labs/README.md,
# sim/README.md and scenarios/README.md; looks at code spans and code blocks
# (including `cargo run -p shopstream ... -- ARGS`). A command that is only
# planned is written in prose, not in code, so it is not taken for one to type.
#
# usage: scripts/check-book-commands.sh [path/to/shopstream [FILE.md...]]
#        (default target/debug/shopstream and the files above)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/shopstream}"
if [ ! -x "$bin" ]; then
  echo "check-book-commands: $bin not found; build it first (cargo build -p shopstream)" >&2
  exit 2
fi
shift || true
if [ $# -gt 0 ]; then
  docs=("$@")
else
  docs=(README.md labs/README.md sim/README.md scenarios/README.md)
  while IFS= read -r f; do docs+=("$f"); done < <(find book/src docs -name '*.md' | sort)
fi

exec python3 - "$bin" "${docs[@]}" <<'PY'
import re
import subprocess
import sys

binary, files = sys.argv[1], sys.argv[2:]
help_cache = {}


def help_of(path):
    """(subcommands, {flag: takes_value}) that `--help` of `path` lists."""
    key = tuple(path)
    if key not in help_cache:
        out = subprocess.run(
            [binary, *path, "--help"], capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            sys.exit(f"check-book-commands: `{' '.join(['shopstream', *path, '--help'])}` failed: {out.stderr.strip()}")
        subs, flags, section = set(), {"--help": False, "-h": False}, None
        for line in out.stdout.splitlines():
            if re.match(r"^\S.*:\s*$", line):
                section = line.strip().rstrip(":").lower()
                continue
            if section == "commands":
                m = re.match(r"^  (\S+)", line)
                if m:
                    subs.add(m.group(1).rstrip(","))
            elif section in ("options", "arguments") or (section and "options" in section):
                m = re.match(r"^\s{2,}((?:-\w, )?--?[\w-]+(?:\s+<[^>]+>)?)", line)
                if m:
                    spec = m.group(1)
                    takes = "<" in spec
                    for flag in re.findall(r"--?[\w-]+", spec.split("<")[0]):
                        flags[flag] = takes
        help_cache[key] = (subs, flags)
    return help_cache[key]


PLACEHOLDER = re.compile(r"^([A-Z][A-Z0-9_]*|\.\.\.|…|\$\w+|\{\w+\})$")


def check(words, alternation):
    """Errors in one command line `words` (after `shopstream`)."""
    errors, path, alt_base = [], [], []
    skip_value = after_bar = False
    for raw in words:
        if alternation and raw in ("|", "\\|"):
            # `lab list | run NAME`: the next word may be another subcommand
            # of the level the last one was chosen at.
            after_bar = True
            continue
        w = raw.strip("[](){}`,;:'\"")
        if not w or skip_value:
            skip_value = False
            continue
        if after_bar and not w.startswith("-") and w in help_of(alt_base)[0]:
            path = list(alt_base)
        after_bar = False
        subs, flags = help_of(path)
        if w.startswith("-") and len(w) > 1 and w != "--" and not re.match(r"^-\d", w):
            flag = w.split("=")[0]
            if flag not in flags:
                errors.append(f"`shopstream {' '.join(path)}` has no flag {flag}")
            elif flags[flag] and "=" not in w:
                skip_value = True
            continue
        if not subs or PLACEHOLDER.match(w):
            continue  # a positional argument (or a placeholder for one)
        if w in subs:
            alt_base = list(path)
            path.append(w)
        else:
            errors.append(f"`shopstream {' '.join(path)}` has no subcommand {w!r}".replace("`shopstream `", "`shopstream`"))
            break
    return errors


def at_command_position(tokens, i):
    """In a code block, whether tokens[i] starts a command: first on the line,
    or after a prompt, env assignments, a shell operator or a wrapper."""
    j = i - 1
    while j >= 0 and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[j]):
        j -= 1
    return j < 0 or tokens[j] in ("$", "#", "&&", "||", ";", "|", "(", "time", "exec", "sudo", "env")


def commands(text, in_block):
    """Each `shopstream` command in a piece of text, as a list of words."""
    found = []
    tokens = text.split()
    for i, t in enumerate(tokens):
        bare = t.lstrip("`($")
        if bare == "cargo" and "-p" in tokens[i:] and "--" in tokens[i:]:
            rest = tokens[i:]
            p = rest.index("-p")
            if p + 1 < len(rest) and rest[p + 1] == "shopstream":
                found.append(rest[rest.index("--") + 1 :])
            continue
        if bare == "shopstream" or re.match(r"^(\./)?target/(debug|release)/shopstream$", bare):
            if i > 0 and tokens[i - 1] == "-p":
                continue
            if in_block and not at_command_position(tokens, i):
                continue
            found.append(tokens[i + 1 :])
    out = []
    for words in found:
        cut = []
        for w in words:
            # In a code block a pipe, a redirect or a comment ends the command.
            if in_block and (w in ("|", "&&", "||", ";", "#") or w.startswith((">", "2>"))):
                break
            cut.append(w)
        out.append(cut)
    return out


failures = checked = 0
for f in files:
    in_block = False
    pending = ""
    for n, line in enumerate(open(f, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        spans = re.findall(r"`([^`]+)`", line)
        rest = re.sub(r"`[^`]*`", " ", line)
        cmds = []
        for s in spans:
            cmds += [(c, True) for c in commands(s, False)]
        if in_block:
            text = pending + rest
            if text.rstrip().endswith("\\"):
                pending = text.rstrip()[:-1] + " "
                continue
            pending = ""
            cmds += [(c, False) for c in commands(text, True)]
        for words, alternation in cmds:
            checked += 1
            for e in check(words, alternation):
                failures += 1
                print(f"{f}:{n}: {e}: {line.strip()}")
if failures:
    print(f"check-book-commands: {failures} command(s) in the docs that the binary does not have")
    sys.exit(1)
print(f"check-book-commands: all {checked} shopstream commands in {len(files)} files match --help")
PY
