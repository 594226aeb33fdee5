#!/usr/bin/env python3
"""The workspace's `rust-version` must be what the locked dependencies need.

    python3 scripts/rust-version.py            print the highest rust-version a locked dependency declares
    python3 scripts/rust-version.py --check    fail unless Cargo.toml's [workspace.package] rust-version is that

Reads `cargo metadata --format-version 1 --locked --offline` (every package of Cargo.lock, all
platforms; run `cargo fetch` first on a fresh machine). A lower workspace value would promise a
toolchain that cannot build the lock; a higher one would refuse toolchains that can.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(part) for part in v.split("."))


def required() -> tuple[str, list[str]]:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    meta = json.loads(out)
    members = set(meta["workspace_members"])
    declared = [(p["rust_version"], f'{p["name"]} {p["version"]}') for p in meta["packages"]
                if p["id"] not in members and p.get("rust_version")]
    top = max((v for v, _ in declared), key=version_key)
    return top, sorted(name for v, name in declared if v == top)


def main() -> int:
    top, crates = required()
    if "--check" not in sys.argv[1:]:
        print(f"{top}  ({', '.join(crates)})")
        return 0
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    if version_key(workspace) != version_key(top):
        print(f"rust-version: Cargo.toml says {workspace}, the locked dependencies need {top} "
              f"({', '.join(crates[:5])}{', ...' if len(crates) > 5 else ''}); set it to {top}", file=sys.stderr)
        return 1
    print(f"rust-version {workspace}: what the locked dependencies need")
    return 0


if __name__ == "__main__":
    sys.exit(main())
