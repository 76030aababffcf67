"""python -m falconmamba: a small command line on the bindings.

    python -m falconmamba chat -m MODEL_DIR [--system TEXT] [--temperature T] [--max-new-tokens N]
    python -m falconmamba generate -m MODEL_DIR -p PROMPT [--max-new-tokens N] [--temperature T] [--seed S]
    python -m falconmamba info -m MODEL_DIR

In chat, /reset starts the conversation over and /exit (or end of input) quits. Each turn feeds only
the text the chat template adds for it: the session's state already holds the conversation.
"""
import argparse
import sys

import falconmamba

END_OF_TURN = "<|im_end|>"  # ChatML's closing tag; harmless for templates that do not use it


class Chat:
    """A conversation on one session, fed incrementally (see examples/chat.c for the same in C)."""

    def __init__(self, model, system=None, **gen):
        self.model = model
        self.session = falconmamba.Session(model)
        self.system = system
        self.gen = gen
        self.has_template = True
        self.reset()

    def reset(self):
        self.session.reset()
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.seen = ""  # rendered conversation the session has consumed (a prefix of the next render)

    def _render(self, add_generation_prompt):
        if self.has_template:
            try:
                return self.model.apply_chat_template(self.messages, add_generation_prompt)
            except falconmamba.Error as e:
                if e.status != falconmamba.ERR_UNSUPPORTED:
                    raise
                self.has_template = False  # no template: a plain "User: / Assistant:" layout
        # The assistant's content is kept exactly as generated after "Assistant:", so that every
        # render starts with the previous one.
        text = "".join("%s:%s%s\n" % (m["role"].capitalize(), "" if m["role"] == "assistant" else " ", m["content"])
                       for m in self.messages)
        return text + ("Assistant:" if add_generation_prompt else "")

    def turn(self, user, out=sys.stdout):
        """Answer one user message, streaming the reply to out; returns the reply."""
        self.messages.append({"role": "user", "content": user})
        full = self._render(True)
        if not full.startswith(self.seen):  # the template rewrote history: start the state over
            self.session.reset()
            self.seen = ""
        stop = END_OF_TURN if self.has_template else "\nUser:"
        pieces = []
        for piece in self.session.generate(full[len(self.seen):], stream=True, stop=stop, skip_special=False,
                                           **self.gen):
            pieces.append(piece)
            out.write(piece)
            out.flush()
        out.write("\n")
        reply = "".join(pieces)
        self.messages.append({"role": "assistant", "content": reply})
        # The session has consumed the prompt, the reply and, when generation ended on the stop
        # string, the stop string's token too (the template renders that tag right after the reply).
        # Otherwise the next turn's delta starts with the closing tag.
        stopped = self.session.last_result is not None and self.session.last_result.stop_reason == "stop_string"
        self.seen = full + reply + (stop if stopped else "")
        return reply


def cmd_chat(args):
    model = falconmamba.Model(args.model, backend=args.backend, threads=args.threads)
    chat = Chat(model, system=args.system, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                top_p=args.top_p, seed=args.seed)
    interactive = sys.stdin.isatty()
    if interactive:
        print("falconmamba %s, %s. /reset starts over, /exit quits." % (falconmamba.version(), args.model))
    while True:
        if interactive:
            try:
                line = input(">>> ")
            except EOFError:
                print()
                break
        else:
            line = sys.stdin.readline()
            if not line:
                break
            line = line.rstrip("\r\n")
            print(">>> " + line)
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            chat.reset()
            print("(conversation reset)")
            continue
        chat.turn(line)
    return 0


def cmd_generate(args):
    model = falconmamba.Model(args.model, backend=args.backend, threads=args.threads)
    sys.stdout.write(args.prompt)
    for piece in model.generate(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_p=args.top_p, seed=args.seed, stream=True):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_info(args):
    model = falconmamba.Model(args.model, backend=args.backend, threads=args.threads)
    for k, v in model.info.items():
        print("%-16s %s" % (k, v))
    tok = model.tokenizer
    print("%-16s %s" % ("tokenizer", "yes (%d ids)" % tok.n_vocab if tok else "no"))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m falconmamba", description="FalconMamba models through libfalconmamba")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("chat", "interactive chat (/reset, /exit)"), ("generate", "continue a prompt"),
                        ("info", "print the model's dimensions")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("-m", "--model", required=True, help="checkpoint directory")
        p.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"])
        p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
        if name != "info":
            p.add_argument("-n", "--max-new-tokens", type=int, default=256 if name == "chat" else 128)
            p.add_argument("-t", "--temperature", type=float, default=0.7)
            p.add_argument("--top-p", type=float, default=0.9)
            p.add_argument("--seed", type=int, default=None, help="default: a random seed")
        if name == "chat":
            p.add_argument("--system", default=None, help="system message")
        if name == "generate":
            p.add_argument("-p", "--prompt", required=True)
    args = ap.parse_args(argv)
    try:
        return {"chat": cmd_chat, "generate": cmd_generate, "info": cmd_info}[args.command](args)
    except falconmamba.Error as e:
        print("error: %s" % e.message, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
