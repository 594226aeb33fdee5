#!/usr/bin/env python3
"""Lints a SAM template offline, the way CloudFormation will see it.

Runs with .venv-cfn's interpreter (cfn-lint + aws-sam-translator, see scripts/tools.sh):

    .venv-cfn/bin/python scripts/lint-template.py [template.yaml] [--keep-translated FILE]

Three passes, all must pass:

1. translate: SAM -> CloudFormation with aws-sam-translator, then cfn-lint on the result.
   cfn-lint's own AWS::Serverless::* schemas miss real mistakes (a wrong Runtime on a function, a
   !GetAtt to a missing attribute or a !Ref to a missing resource inside SAM-expanded properties);
   on the expanded template they are ordinary resource errors.
2. sam: plain `cfn-lint template.yaml`, which still sees things the expansion hides.
3. local: the forms tests/local-host can resolve when it builds the local stack from the template
   (plain values, !Ref, !GetAtt X.Arn, !GetAtt <function URL>.FunctionUrl (the local host's own
   URL), one-string !Sub) in tables, queues and function environments,
   and that every HTTP API route requires the JWT authorizer (routes are explicit resources, so no
   SAM default authorizer protects a forgotten one).

cfn-lint's exit code is a bit set: 1 fatal, 2 errors, 4 warnings, 8 informational. Errors fail the
run; warnings and informational findings are printed and pass.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# The translator builds ARNs with the session's partition/region; without a region it fails, and
# it must never look for real credentials or call AWS.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from cfnlint.decode import decode_str  # noqa: E402  (reads !Ref/!GetAtt/!Sub tags)
from samtranslator.parser.parser import Parser  # noqa: E402
from samtranslator.translator.translator import Translator  # noqa: E402

CFN_ERROR_BITS = 0b0011  # 1 = fatal / usage, 2 = errors
PLACEHOLDER_BUCKET = "lint-placeholder-bucket"


def to_plain(value: Any) -> Any:
    """cfn-lint's decoder returns dict/str subclasses carrying line marks; use plain types."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def load_template(path: Path) -> dict[str, Any]:
    template, matches = decode_str(path.read_text(encoding="utf-8"))
    if matches:
        for m in matches:
            print(f"{path}: {m}", file=sys.stderr)
        raise SystemExit(f"FAIL: {path} does not parse")
    if not isinstance(template, dict):
        raise SystemExit(f"FAIL: {path} is not a mapping")
    return to_plain(template)


def with_placeholder_artifacts(template: dict[str, Any]) -> dict[str, Any]:
    """The translator accepts only S3 locations for code and definitions; `sam build`/`package`
    would upload the local paths. Substitute placeholders so the rest of the template is checked
    as it will be deployed."""
    t = copy.deepcopy(template)
    t.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for name, res in (t.get("Resources") or {}).items():
        if not isinstance(res, dict):
            continue
        props = res.setdefault("Properties", {})
        if not isinstance(props, dict):
            continue
        placeholder = {"Bucket": PLACEHOLDER_BUCKET, "Key": f"{name}.zip"}
        rtype = res.get("Type")
        if rtype == "AWS::Serverless::Function":
            if "InlineCode" not in props and props.get("PackageType") != "Image":
                props["CodeUri"] = placeholder
        elif rtype == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = placeholder
        elif rtype in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi", "AWS::Serverless::StateMachine"):
            if isinstance(props.get("DefinitionUri"), str) and not props["DefinitionUri"].startswith("s3://"):
                props["DefinitionUri"] = placeholder
    return t


def translate(template: dict[str, Any]) -> dict[str, Any] | None:
    translator = Translator(managed_policy_map={}, sam_parser=Parser())
    try:
        return translator.translate(sam_template=with_placeholder_artifacts(template), parameter_values={})
    except Exception as exc:  # noqa: BLE001  (every translator failure is a template error)
        causes = getattr(exc, "causes", None)
        print("translate: aws-sam-translator rejected the template:")
        if causes:
            for cause in causes:
                print(f"  E [translator] {getattr(cause, 'message', cause)}")
        else:
            print(f"  E [translator] {type(exc).__name__}: {exc}")
        return None


def cfn_lint_bin() -> str:
    sibling = Path(sys.executable).with_name("cfn-lint")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("cfn-lint")
    if not found:
        raise SystemExit("FAIL: cfn-lint not found; run scripts/tools.sh cfn")
    return found


def lint_translated(translated: dict[str, Any], keep: Path | None) -> bool:
    with tempfile.TemporaryDirectory(prefix="lint-template-") as tmp:
        out = Path(tmp) / "template.translated.json"
        out.write_text(json.dumps(translated, indent=1), encoding="utf-8")
        if keep:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, keep)
        proc = subprocess.run(
            [cfn_lint_bin(), "--format", "json", "--", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        findings = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        findings = None
    if findings is None:
        print(proc.stdout, proc.stderr, sep="\n")
    else:
        # Paths name the expanded resources (ConnectFunction, ConnectFunctionRole, ...), which map
        # back to the SAM resource of the same prefix; line numbers would point into the temp file.
        for f in findings:
            path = "/".join(str(p) for p in f.get("Location", {}).get("Path", []))
            level = f.get("Level", "?")[0].upper()
            print(f"  {level} {f.get('Rule', {}).get('Id', '?')} {path}: {f.get('Message', '').strip()}")
        if proc.stderr.strip():
            print(proc.stderr.rstrip())
    return report("translate", proc.returncode)


def lint_sam(path: Path) -> bool:
    proc = subprocess.run([cfn_lint_bin(), "--", str(path)], capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        print(f"  {line}")
    return report("sam", proc.returncode)


def report(name: str, rc: int) -> bool:
    if rc & CFN_ERROR_BITS:
        print(f"{name}: FAIL (cfn-lint exit {rc})")
        return False
    note = " (warnings/informational only)" if rc else ""
    print(f"{name}: ok{note}")
    return True


# ---- local pass: forms tests/local-host resolves -----------------------------------------------

PSEUDO = {"AWS::StackName", "AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}
SUB_VAR = re.compile(r"\$\{([^}]*)\}")


def local_forms(template: dict[str, Any]) -> list[str]:
    params = set((template.get("Parameters") or {}).keys())
    resources = template.get("Resources") or {}
    names = set(resources.keys())
    problems: list[str] = []

    def ref_ok(target: Any) -> bool:
        return isinstance(target, str) and (target in PSEUDO or target in params or target in names)

    def check(value: Any, where: str) -> None:
        if value is None or isinstance(value, (str, int, float, bool)):
            return
        if isinstance(value, list):
            for i, v in enumerate(value):
                check(v, f"{where}/{i}")
            return
        if not isinstance(value, dict):
            problems.append(f"{where}: unsupported value {value!r}")
            return
        intrinsic = [k for k in value if k == "Ref" or k.startswith("Fn::") or k == "Condition"]
        if not intrinsic:
            for k, v in value.items():
                check(v, f"{where}/{k}")
            return
        if len(value) != 1:
            problems.append(f"{where}: unexpected keys {sorted(value)}")
            return
        (fn, arg), = value.items()
        if fn == "Ref":
            if not ref_ok(arg):
                problems.append(f"{where}: !Ref {arg!r} is not a parameter, resource or supported pseudo parameter")
        elif fn == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else arg
            url_att = (
                isinstance(parts, list) and len(parts) == 2 and parts[1] == "FunctionUrl"
                and (resources.get(parts[0]) or {}).get("Type") == "AWS::Lambda::Url"
            )
            arn_att = isinstance(parts, list) and len(parts) == 2 and parts[0] in names and parts[1] == "Arn"
            if not (arn_att or url_att):
                problems.append(
                    f"{where}: only !GetAtt <Resource>.Arn and <AWS::Lambda::Url>.FunctionUrl are supported, got {arg!r}"
                )
        elif fn == "Fn::Sub":
            if not isinstance(arg, str):
                problems.append(f"{where}: only the one-string form of !Sub is supported")
                return
            for var in SUB_VAR.findall(arg):
                if var.startswith("!"):
                    continue  # ${!Literal}
                base, _, attr = var.partition(".")
                if attr:
                    if base not in names or attr != "Arn":
                        problems.append(f"{where}: !Sub ${{{var}}}: only ${{Resource.Arn}} is supported")
                elif not ref_ok(base):
                    problems.append(f"{where}: !Sub ${{{var}}} is not a parameter, resource or supported pseudo parameter")
        else:
            problems.append(f"{where}: {fn} is not supported here (plain value, !Ref, !GetAtt X.Arn, !Sub)")

    for name, res in resources.items():
        if not isinstance(res, dict):
            continue
        rtype = res.get("Type")
        props = res.get("Properties") or {}
        if rtype in ("AWS::DynamoDB::Table", "AWS::SQS::Queue"):
            check(props, f"Resources/{name}/Properties")
        elif rtype == "AWS::Serverless::Function":
            env = (props.get("Environment") or {}).get("Variables") or {}
            check(env, f"Resources/{name}/Properties/Environment/Variables")
    genv = ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    check(genv.get("Variables") or {}, "Globals/Function/Environment/Variables")
    return problems


def unauthenticated_routes(template: dict[str, Any]) -> list[str]:
    """A route is public unless it names an authorizer. A deliberately public route (none so far)
    must say so with `Metadata: {PublicRoute: <reason>}`."""
    problems = []
    for name, res in (template.get("Resources") or {}).items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::ApiGatewayV2::Route":
            continue
        props = res.get("Properties") or {}
        if (res.get("Metadata") or {}).get("PublicRoute"):
            continue
        if props.get("AuthorizationType") != "JWT" or "AuthorizerId" not in props:
            problems.append(
                f"Resources/{name}: route {props.get('RouteKey')!r} has no JWT authorizer "
                "(set AuthorizationType: JWT and AuthorizerId, or Metadata.PublicRoute with the reason)"
            )
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("template", nargs="?", default="template.yaml", type=Path)
    ap.add_argument("--keep-translated", type=Path, help="also write the translated JSON here")
    args = ap.parse_args()

    template = load_template(args.template)
    ok = True

    print(f"== translate: aws-sam-translator + cfn-lint on {args.template}")
    translated = translate(template)
    if translated is None:
        print("translate: FAIL")
        ok = False
    else:
        ok &= lint_translated(translated, args.keep_translated)

    print(f"== sam: cfn-lint {args.template}")
    ok &= lint_sam(args.template)

    print("== local: forms tests/local-host resolves; authenticated routes")
    problems = local_forms(template) + unauthenticated_routes(template)
    for p in problems:
        print(f"  E [local] {p}")
    print("local: FAIL" if problems else "local: ok")
    ok &= not problems

    print(f"lint-template: {'PASS' if ok else 'FAIL'} ({args.template})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
