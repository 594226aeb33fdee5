#!/usr/bin/env python3
"""Writes a deterministic corpus of source-like text for `make bench-scan`.

    bench/scan_corpus.py <dir> [--mb 200] [--file-kb 100]

Files of about --file-kb KB in nested directories, in several languages' shapes (code,
configuration, prose), with one planted credential in every 20th file, rotating through the
kinds the scanners look for, and many near misses (placeholders, hashes, identifiers). Credentials
are random per seed, never real. Writes <dir>/manifest.json with the planted count per kind.
"""
import argparse
import json
import os
import random
import shutil
import string

ALNUM = string.ascii_letters + string.digits


def rnd(r, n, alphabet=ALNUM):
    return "".join(r.choice(alphabet) for _ in range(n))


def planted(r, kind):
    if kind == "gitlab-token":
        return f'GITLAB_TOKEN = "glpat-{rnd(r, 20)}"'
    if kind == "aws-access-key-id":
        return f"aws_access_key_id = AKIA{rnd(r, 16, string.ascii_uppercase + '234567')}"
    if kind == "github-token":
        return f"github_token: ghp_{rnd(r, 36)}"
    if kind == "private-key":
        body = "\n".join(rnd(r, 64, ALNUM + "+/") for _ in range(12))
        return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    if kind == "slack-token":
        return f"SLACK = 'xoxb-{rnd(r, 12, string.digits)}-{rnd(r, 24)}'"
    if kind == "stripe-key":
        return f"stripe.api_key = 'sk_live_{rnd(r, 24)}'"
    if kind == "database-url-password":
        return f"DATABASE_URL=postgres://app:{rnd(r, 20)}@db.internal:5432/app"
    return f'client_secret = "{rnd(r, 32)}"'


KINDS = [
    "gitlab-token",
    "aws-access-key-id",
    "github-token",
    "private-key",
    "slack-token",
    "stripe-key",
    "database-url-password",
    "generic-secret",
]

WORDS = ("user account token value config request response handler service client server "
         "project repository branch commit merge pipeline job runner deploy build cache "
         "index query result error message status count limit offset page cursor").split()


def line(r, lang):
    a, b, c = r.choice(WORDS), r.choice(WORDS), r.choice(WORDS)
    n = r.randint(0, 9999)
    roll = r.random()
    if roll < 0.03:
        # Near misses: placeholders, digests and ids that look random but are not credentials.
        return r.choice([
            f'password = "${{{a.upper()}_PASSWORD}}"',
            f'token: "<your-{a}-token>"',
            f'sha256 = "{rnd(r, 64, "0123456789abcdef")}"',
            f'{a}_id = "{rnd(r, 24, "0123456789abcdef")}"',
            f"# see https://example.com/{a}/{b}?page={n}",
            f'api_key = "changeme"',
        ])
    if lang == "py":
        return r.choice([
            f"def {a}_{b}({c}, limit={n}):",
            f"    {a} = {b}.get_{c}({n})",
            f"    if {a}.{b} is None: return {c}",
            f"# {a} {b} {c} {n}",
            f'    log.info("{a} %s {b}", {c})',
        ])
    if lang == "js":
        return r.choice([
            f"export function {a}{b.title()}({c}) {{",
            f"  const {a} = await {b}.{c}({n});",
            f"  if (!{a}) return null; // {b}",
            f"}}",
            f"import {{ {a} }} from './{b}/{c}';",
        ])
    if lang == "yaml":
        return r.choice([f"{a}:", f"  {b}: {c}-{n}", f"  {b}_{c}: {n}", f"  - name: {a}-{b}"])
    if lang == "md":
        return " ".join(r.choice(WORDS) for _ in range(r.randint(6, 16))) + "."
    return r.choice([
        f"fn {a}_{b}({c}: u64) -> Result<{b.title()}, Error> {{",
        f"    let {a} = {b}.{c}({n})?;",
        f"    // {a} {b} {c}",
        f"}}",
    ])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--file-kb", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if os.path.exists(args.dir):
        shutil.rmtree(args.dir)
    r = random.Random(args.seed)
    target = args.mb * 1_000_000
    written, index = 0, 0
    counts = {k: 0 for k in KINDS}
    langs = ["py", "js", "rs", "yaml", "md"]
    while written < target:
        lang = langs[index % len(langs)]
        path = os.path.join(args.dir, f"pkg{index // 200:03d}", f"mod{(index // 20) % 10}", f"file{index:05d}.{lang}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lines, size = [], 0
        plant_at = r.randint(5, 500) if index % 20 == 0 else -1
        while size < args.file_kb * 1000:
            if len(lines) == plant_at:
                kind = KINDS[(index // 20) % len(KINDS)]
                counts[kind] += 1
                text = planted(r, kind)
            else:
                text = line(r, lang)
            lines.append(text)
            size += len(text) + 1
        data = "\n".join(lines) + "\n"
        with open(path, "w") as f:
            f.write(data)
        written += len(data)
        index += 1
    manifest = {"bytes": written, "files": index, "planted": counts, "planted_total": sum(counts.values())}
    with open(os.path.join(args.dir, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
