#!/usr/bin/env python3
"""Render the chat-template test fixtures with transformers' own machinery.

Run from the repository root:

    python3 tests/reference/make_chat_fixtures.py

Inputs (all under tests/data/):
  chat_templates/<name>.jinja   template sources
  chat_conversations.json       conversations, each template's bos/eos tokens, extra variants
  chat_snippets.json            one-feature templates, each with its conversation and tokens

Output: tests/reference/chat_expected.json, a list of cases:
  {"kind": "template" | "snippet", "template": name (template cases) | "snippet": id,
   "conversation": id, "add_generation_prompt": bool, "bos_token": str|null,
   "eos_token": str|null, then either "expected": str or "error": message, "error_type": class}
A null token is left out of the render call, so the template sees it undefined, as
apply_chat_template does for a tokenizer without that token.

Rendering: transformers.utils.chat_template_utils.render_jinja_template(conversations=[msgs],
chat_template=..., add_generation_prompt=..., bos_token=..., eos_token=...) when the installed
transformers has it (it passes tools=None and documents=None too), else
_compile_jinja_template(tmpl).render(messages=..., tools=None, documents=None, ...).

Needs python3 + transformers + jinja2 only; no network. `--local-jinja` renders with a copy of
transformers' jinja2 environment instead (development without transformers; the output records
which one was used in "source").
"""
import argparse
import json
import os
import sys

DATA = os.path.join("tests", "data")
OUT = os.path.join("tests", "reference", "chat_expected.json")


def transformers_renderer():
    import jinja2
    import transformers
    from transformers.utils import chat_template_utils as ctu

    if hasattr(ctu, "render_jinja_template"):

        def render(tmpl, msgs, agp, special):
            res = ctu.render_jinja_template(
                conversations=[msgs], chat_template=tmpl, add_generation_prompt=agp, **special
            )
            if isinstance(res, tuple):
                res = res[0]
            if isinstance(res, list):
                res = res[0]
            return res

        how = "render_jinja_template"
    else:

        def render(tmpl, msgs, agp, special):
            return ctu._compile_jinja_template(tmpl).render(
                messages=msgs, tools=None, documents=None, add_generation_prompt=agp, **special
            )

        how = "_compile_jinja_template"
    return render, f"transformers {transformers.__version__} ({how}), jinja2 {jinja2.__version__}"


def local_renderer():
    """transformers' environment, rebuilt (chat_template_utils._compile_jinja_template)."""
    import json as _json
    from datetime import datetime

    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class AssistantTracker(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

        def _generation_support(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return _json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now

    def render(tmpl, msgs, agp, special):
        return env.from_string(tmpl).render(
            messages=msgs, tools=None, documents=None, add_generation_prompt=agp, **special
        )

    return render, f"LOCAL jinja2 {jinja2.__version__} replica of transformers' environment (not transformers)"


def run_case(render, tmpl, msgs, agp, bos, eos):
    special = {}
    if bos is not None:
        special["bos_token"] = bos
    if eos is not None:
        special["eos_token"] = eos
    try:
        return {"expected": render(tmpl, [dict(m) for m in msgs], agp, special)}
    except Exception as e:  # TemplateError from raise_exception, UndefinedError, TypeError, ...
        return {"error": str(e), "error_type": type(e).__name__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--local-jinja", action="store_true", help="use a jinja2 replica instead of transformers")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(DATA, "chat_templates")):
        sys.exit("run from the repository root (tests/data/chat_templates not found)")

    render, source = local_renderer() if args.local_jinja else transformers_renderer()

    with open(os.path.join(DATA, "chat_conversations.json"), encoding="utf-8") as f:
        conv_doc = json.load(f)
    with open(os.path.join(DATA, "chat_snippets.json"), encoding="utf-8") as f:
        snippets = json.load(f)["snippets"]
    convs = {c["id"]: c["messages"] for c in conv_doc["conversations"]}

    def template_src(name):
        with open(os.path.join(DATA, "chat_templates", name + ".jinja"), encoding="utf-8", newline="") as f:
            return f.read()

    cases = []
    for name in sorted(conv_doc["templates"]):
        tok = conv_doc["templates"][name]
        src = template_src(name)
        for c in conv_doc["conversations"]:
            for agp in (False, True):
                case = {"kind": "template", "template": name, "conversation": c["id"], "add_generation_prompt": agp,
                        "bos_token": tok["bos_token"], "eos_token": tok["eos_token"]}
                case.update(run_case(render, src, c["messages"], agp, tok["bos_token"], tok["eos_token"]))
                cases.append(case)
    for v in conv_doc.get("variants", []):
        for agp in (False, True):
            case = {"kind": "template", "template": v["template"], "conversation": v["conversation"],
                    "add_generation_prompt": agp, "bos_token": v["bos_token"], "eos_token": v["eos_token"]}
            case.update(run_case(render, template_src(v["template"]), convs[v["conversation"]], agp,
                                 v["bos_token"], v["eos_token"]))
            cases.append(case)
    for s in snippets:
        case = {"kind": "snippet", "snippet": s["id"], "conversation": s["conversation"],
                "add_generation_prompt": s["add_generation_prompt"], "bos_token": s["bos_token"],
                "eos_token": s["eos_token"]}
        case.update(run_case(render, s["template"], convs[s["conversation"]], s["add_generation_prompt"],
                             s["bos_token"], s["eos_token"]))
        cases.append(case)

    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        json.dump({"source": source, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in cases if "error" in c)
    print(f"{args.out}: {len(cases)} cases ({n_err} errors) from {source}")


if __name__ == "__main__":
    main()
