"""Tests of the falconmamba Python bindings (unittest, standard library only).

Environment:
  FALCONMAMBA_LIBRARY  the libfalconmamba.so to test (else the package's usual lookup)
  FM_FIXTURES          tests/reference/cases: checkpoints with transformers' logits (expected.json);
                       the token-level tests (feed, logits, sample, fork, state, batch) run on them
  FM_TEST_MODEL        the tiny chat model (make_tiny_chat_model): random weights + the tiny byte-level
                       BPE tokenizer with a ChatML template; the text tests run on it
Tests whose variable is unset are skipped.
  python3 -m unittest discover -s bindings/python/tests      (with PYTHONPATH=bindings/python)
"""
import ctypes
import json
import math
import os
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bindings/python, when PYTHONPATH is not set

import falconmamba as fm  # noqa: E402
from falconmamba import _native as N  # noqa: E402

FIXTURES = os.environ.get("FM_FIXTURES")
TEST_MODEL = os.environ.get("FM_TEST_MODEL")
REL_TOL = 1e-4  # as tests/test_parity.c: max |err| <= 1e-4 * max |logit|, per row


def rows(x):
    """A list of lists from a list of lists or a 2-D numpy array."""
    return [list(map(float, r)) for r in x]


def assert_close(tc, got, want, what):
    got, want = list(map(float, got)), list(map(float, want))
    tc.assertEqual(len(got), len(want), what)
    ref = max(abs(v) for v in want)
    err = max(abs(a - b) for a, b in zip(got, want))
    tc.assertLessEqual(err, REL_TOL * ref, "%s: max |err| %.3g vs max |logit| %.3g" % (what, err, ref))


def byte_id(b):
    """Id of the byte-level symbol of byte b in the tiny tokenizer (GPT-2's bytes_to_unicode order)."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    return printable.index(b) if b in printable else len(printable) + [x for x in range(256) if x not in printable].index(b)


def argmax(v):
    v = list(v)
    return max(range(len(v)), key=lambda i: (v[i], -i))


def load_cases():
    if not FIXTURES or not os.path.isdir(FIXTURES):
        return []
    out = []
    for name in sorted(os.listdir(FIXTURES)):
        p = os.path.join(FIXTURES, name, "expected.json")
        if os.path.exists(p):
            with open(p) as f:
                out.append((name, os.path.join(FIXTURES, name), json.load(f)))
    return out


class TestLibrary(unittest.TestCase):
    def test_version(self):
        self.assertTrue(fm.version().startswith("1."), fm.version())

    def test_struct_layout(self):
        # The mirrors must match the C header; sizes and offsets as the C compiler lays them out on LP64.
        if ctypes.sizeof(ctypes.c_void_p) != 8:
            self.skipTest("layout table is for LP64")
        want = {N.fm_context_params: 40, N.fm_model_info: 80, N.fm_session_params: 16, N.fm_sampler_params: 72,
                N.fm_logit_bias: 8, N.fm_generate_stats: 48, N.fm_generate_params: 64, N.fm_chat_message: 16}
        for cls, size in want.items():
            self.assertEqual(ctypes.sizeof(cls), size, cls.__name__)
        self.assertEqual(N.fm_context_params.progress.offset, 24)
        self.assertEqual(N.fm_context_params.progress_user.offset, 32)
        self.assertEqual(N.fm_model_info.n_params.offset, 48)
        self.assertEqual(N.fm_model_info.backend_name.offset, 72)
        self.assertEqual(N.fm_sampler_params.seed.offset, 32)
        self.assertEqual(N.fm_sampler_params.logit_bias.offset, 56)
        self.assertEqual(N.fm_sampler_params.n_logit_bias.offset, 64)
        self.assertEqual(N.fm_generate_params.stop.offset, 24)
        self.assertEqual(N.fm_generate_params.stats.offset, 56)
        self.assertEqual(N.fm_generate_stats.stop_reason.offset, 40)

    def test_defaults_round_trip(self):
        # *_params_init through the mirrors gives the documented defaults.
        p, _ = fm._sampler_params(seed=0)
        self.assertAlmostEqual(p.temperature, 1.0)
        self.assertEqual(p.top_k, 50)
        self.assertAlmostEqual(p.top_p, 1.0)
        self.assertEqual(p.repeat_last_n, -1)
        c = N.fm_context_params()
        N.load().fm_context_params_init(ctypes.byref(c))
        self.assertEqual(c.struct_size, ctypes.sizeof(c))
        self.assertFalse(c.progress)

    def test_error_missing_dir(self):
        with self.assertRaises(fm.Error) as cm:
            fm.Model("/nonexistent/falconmamba/model")
        e = cm.exception
        self.assertEqual(e.status, fm.ERR_IO)
        self.assertEqual(e.status_name, "FM_ERR_IO")
        self.assertIn("/nonexistent/falconmamba/model", e.message)
        self.assertIn("FM_ERR_IO", str(e))

    def test_bad_options(self):
        with self.assertRaises(fm.Error):
            fm.Model("/nonexistent", backend="tpu")
        with self.assertRaises(fm.Error):
            fm.Model("/nonexistent", weights="int3")


@unittest.skipUnless(load_cases(), "FM_FIXTURES not set")
class TestParity(unittest.TestCase):
    """Token-level API against transformers' logits (no tokenizer needed)."""

    @classmethod
    def setUpClass(cls):
        cls.cases = [(name, fm.Model(d), exp) for name, d, exp in load_cases()]

    @classmethod
    def tearDownClass(cls):
        for _, m, _ in cls.cases:
            m.close()

    def test_prefill_all_logits(self):
        for name, m, exp in self.cases:
            for k, p in enumerate(exp["prompts"]):
                with fm.Session(m) as s:
                    got = rows(s.feed(p["tokens"], all_logits=True))
                    self.assertEqual(len(got), len(p["tokens"]))
                    for i, (g, w) in enumerate(zip(got, p["logits"])):
                        assert_close(self, g, w, "%s prompt %d row %d" % (name, k, i))
                    assert_close(self, s.logits, p["logits"][-1], "%s prompt %d logits" % (name, k))
                    self.assertEqual(s.n_tokens, len(p["tokens"]))

    def test_token_by_token_and_chunked(self):
        for name, m, exp in self.cases:
            p = exp["prompts"][-1]
            with fm.Session(m) as s, fm.Session(m, prefill_chunk=3) as c:
                for i, t in enumerate(p["tokens"]):
                    self.assertIsNone(s.feed([t]))
                    assert_close(self, s.logits, p["logits"][i], "%s step %d" % (name, i))
                c.feed(p["tokens"])
                assert_close(self, c.logits, p["logits"][-1], "%s chunked" % name)

    def test_greedy_continuation(self):
        for name, m, exp in self.cases:
            g = exp["greedy"]
            with fm.Session(m) as s:
                s.feed(exp["prompts"][g["prompt"]]["tokens"])
                out = []
                for _ in g["tokens"]:
                    t = s.sample(temperature=0)
                    self.assertEqual(t, argmax(s.logits))
                    out.append(t)
                    s.feed([t])
                self.assertEqual(out, g["tokens"], name)

    def test_fork_and_state(self):
        name, m, exp = self.cases[0]
        p = exp["prompts"][1]
        with fm.Session(m) as s:
            self.assertIsNone(s.logits)
            s.feed(p["tokens"][:3])
            blob = s.save_state()
            self.assertIsInstance(blob, bytes)
            f = s.fork()
            f.feed(p["tokens"][3:])
            assert_close(self, f.logits, p["logits"][-1], "fork")
            s.feed([5, 6])  # diverge, then come back
            s.load_state(blob)
            self.assertEqual(s.n_tokens, 3)
            s.feed(p["tokens"][3:])
            assert_close(self, s.logits, p["logits"][-1], "state load")
            s.reset()
            self.assertEqual(s.n_tokens, 0)
            self.assertIsNone(s.logits)
            f.close()
            with self.assertRaises(fm.Error) as cm:
                s.load_state(blob[:-5])
            self.assertEqual(cm.exception.status, fm.ERR_STATE_MISMATCH)
            # a blob from another model is refused
            other = self.cases[1][1] if len(self.cases) > 1 else None
            if other is not None:
                with fm.Session(other) as o:
                    with self.assertRaises(fm.Error) as cm:
                        o.load_state(blob)
                    self.assertEqual(cm.exception.status, fm.ERR_STATE_MISMATCH)

    def test_decode_batch(self):
        name, m, exp = self.cases[0]
        prompts = exp["prompts"]
        sessions = [fm.Session(m) for _ in prompts]
        try:
            for s, p in zip(sessions, prompts):
                if len(p["tokens"]) > 1:
                    s.feed(p["tokens"][:-1])
            fm.decode_batch(sessions, [p["tokens"][-1] for p in prompts])
            for k, (s, p) in enumerate(zip(sessions, prompts)):
                self.assertEqual(s.n_tokens, len(p["tokens"]))
                assert_close(self, s.logits, p["logits"][-1], "%s batch %d" % (name, k))
            with self.assertRaises(fm.Error):
                fm.decode_batch(sessions, [1])
        finally:
            for s in sessions:
                s.close()

    def test_invalid_token_leaves_session(self):
        name, m, exp = self.cases[0]
        with fm.Session(m) as s:
            s.feed([1, 2])
            before = list(s.logits)
            for bad in ([m.n_vocab], [-1], [1, 2**40]):
                with self.assertRaises(fm.Error) as cm:
                    s.feed(bad)
                self.assertEqual(cm.exception.status, fm.ERR_INVALID_TOKEN)
            self.assertEqual(s.n_tokens, 2)
            self.assertEqual(list(s.logits), before)

    def test_sampling(self):
        name, m, exp = self.cases[0]
        with fm.Session(m) as s:
            with self.assertRaises(fm.Error) as cm:
                s.sample()  # before the first feed
            self.assertEqual(cm.exception.status, fm.ERR_INVALID_ARGUMENT)
            s.feed(exp["prompts"][1]["tokens"])
            a = [s.sample(temperature=1.0, seed=5) for _ in range(1)]
            with fm.Session(m) as s2:
                s2.feed(exp["prompts"][1]["tokens"])
                b = [s2.sample(temperature=1.0, seed=5) for _ in range(1)]
            self.assertEqual(a, b)
            best = argmax(s.logits)
            self.assertEqual(s.sample(temperature=0), best)
            # logit bias: banning the argmax changes the greedy choice
            self.assertNotEqual(s.sample(temperature=0, logit_bias={best: -math.inf}), best)
            # top_k=1 is greedy whatever the temperature
            self.assertEqual(s.sample(temperature=5.0, top_k=1, seed=9), best)
            for t in (s.sample(temperature=0.9, top_p=0.5, min_p=0.05, repeat_penalty=1.3, seed=None) for _ in range(5)):
                self.assertTrue(0 <= t < m.n_vocab)
            with self.assertRaises(fm.Error):
                s.sample(top_p=2.0)

    def test_cancel(self):
        name, m, exp = self.cases[0]
        with fm.Session(m) as s:
            s.cancel()  # no call running: the next one stops before consuming anything
            with self.assertRaises(fm.Error) as cm:
                s.feed([1, 2, 3])
            self.assertEqual(cm.exception.status, fm.ERR_CANCELLED)
            self.assertEqual(s.n_tokens, 0)
            s.reset()
            s.feed([1, 2, 3])
            self.assertEqual(s.n_tokens, 3)

    def test_cancel_from_other_thread(self):
        name, m, exp = self.cases[0]
        with fm.Session(m, prefill_chunk=1) as s:
            tokens = [1 + (i % (m.n_vocab - 1)) for i in range(300000)]
            timer = threading.Timer(0.3, s.cancel)  # usually lands inside the feed
            timer.start()
            try:
                s.feed(tokens)
                fed_all = True
            except fm.Error as e:
                self.assertEqual(e.status, fm.ERR_CANCELLED)
                fed_all = False
            timer.join()
            if fed_all:  # very fast machine: the cancel is still pending
                self.assertEqual(s.n_tokens, len(tokens))
            else:
                self.assertLess(s.n_tokens, len(tokens))
            s.reset()

    def test_weights_and_backend_options(self):
        for name, d, exp in load_cases():
            if exp["dtype"] == "bfloat16":
                with fm.Model(d, backend="cpu", threads=1, weights="f32") as m, fm.Session(m) as s:
                    p = exp["prompts"][1]
                    s.feed(p["tokens"])
                    assert_close(self, s.logits, p["logits"][-1], name + " widened to f32")
                    self.assertEqual(m.info["backend_name"], "cpu")
        d = load_cases()[0][1]
        with self.assertRaises(fm.Error) as cm:
            fm.Model(d, backend="cuda")
        self.assertEqual(cm.exception.status, fm.ERR_BACKEND)

    def test_progress(self):
        d = load_cases()[0][1]
        seen = []
        with fm.Model(d, progress=lambda f: seen.append(f)):
            pass
        self.assertTrue(seen and 0.0 <= min(seen) and max(seen) <= 1.0)
        with self.assertRaises(fm.Error) as cm:
            fm.Model(d, progress=lambda f: True)
        self.assertEqual(cm.exception.status, fm.ERR_CANCELLED)
        with self.assertRaises(ZeroDivisionError):
            fm.Model(d, progress=lambda f: 1 / 0)

    def test_info_and_ids(self):
        for name, m, exp in self.cases:
            i = m.info
            self.assertEqual(i["n_vocab"], m.n_vocab)
            self.assertEqual(i["model_type"], exp["model_type"])
            self.assertEqual(m.n_vocab, len(exp["prompts"][0]["logits"][0]))
            with open(os.path.join(m.path, "config.json")) as f:
                cfg = json.load(f)
            self.assertEqual(m.eos, cfg.get("eos_token_id"))
            self.assertEqual(m.bos, cfg.get("bos_token_id"))

    def test_model_close_closes_sessions(self):
        d = load_cases()[0][1]
        m = fm.Model(d)
        s = fm.Session(m)
        s.feed([1])
        m.close()
        with self.assertRaises(fm.Error):
            s.feed([1])
        with self.assertRaises(fm.Error):
            m.n_vocab


# ---- text: the tiny chat model -----------------------------------------------------------------------

# Ids of the tiny tokenizer (tests/data/tiny_tokenizer/make.py): byte symbols 0..255 in GPT-2 order,
# merges from 256, then <|endoftext|>=280, <|im_start|>=281, <|im_end|>=282.
HELLO_WORLD = [39, 68, 274, 78, 266, 268, 75, 67]  # H e ll o Ġw or l d
THE_CAT = [83, 257, 220, 66, 267, 273, 260, 275, 267]  # t he Ġ c at Ġand Ġthe Ġh at


@unittest.skipUnless(TEST_MODEL, "FM_TEST_MODEL not set")
class TestText(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = fm.Model(TEST_MODEL)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_tokenizer_basics(self):
        m = self.model
        tok = m.tokenizer
        self.assertIsNotNone(tok, "the tiny chat model has a tokenizer")
        self.assertEqual(tok.n_vocab, 283)
        self.assertEqual(m.n_vocab, 283)
        self.assertEqual(tok.eos, 280)
        self.assertEqual(m.eos, 280)
        self.assertTrue(tok.is_special(281))
        self.assertFalse(tok.is_special(65))
        self.assertFalse(tok.is_special(10**6))

    def test_encode_decode(self):
        m = self.model
        self.assertEqual(m.tokenize("Hello world"), HELLO_WORLD)
        self.assertEqual(m.tokenize("the cat and the hat"), THE_CAT)
        self.assertEqual(m.tokenize(""), [])
        self.assertEqual(m.detokenize(HELLO_WORLD), "Hello world")
        for text in ("héllo wörld", "🙂 日本語 ünïcödé", "tabs\tand\nnewlines  ", "a\x00b"):
            self.assertEqual(m.detokenize(m.tokenize(text)), text)
        ids = m.tokenize("<|im_start|>user\nHi<|im_end|>")
        self.assertEqual(ids[0], 281)
        self.assertEqual(ids[-1], 282)
        self.assertEqual(m.detokenize(ids), "user\nHi")
        self.assertEqual(m.detokenize(ids, skip_special=False), "<|im_start|>user\nHi<|im_end|>")
        self.assertEqual(byte_id(ord("H")), HELLO_WORLD[0])
        self.assertEqual(byte_id(0x20), 220)  # "Ġ"
        self.assertEqual(m.detokenize([byte_id(0xF0)]), "\ufffd")  # a lone lead byte becomes U+FFFD
        self.assertEqual(m.detokenize([byte_id(b) for b in "é".encode()]), "é")
        with self.assertRaises(fm.Error):
            m.detokenize([10**6])

    def test_standalone_tokenizer(self):
        with fm.Tokenizer(TEST_MODEL) as tok:
            self.assertEqual(tok.encode("Hello world"), HELLO_WORLD)
            self.assertEqual(tok.n_vocab, 283)
        with fm.Tokenizer(os.path.join(TEST_MODEL, "tokenizer.json")) as tok:  # a file path reads the config too
            self.assertEqual(tok.eos, 280)
        with self.assertRaises(fm.Error):
            fm.Tokenizer("/nonexistent/tokenizer.json")

    def test_detokenizer_streaming(self):
        text = "naïve 🙂 café"
        ids = self.model.tokenize(text)
        d = self.model.tokenizer.detokenizer()
        pieces = [d.push(t) for t in ids] + [d.flush()]
        self.assertEqual("".join(pieces), text)
        self.assertNotIn("\ufffd", "".join(pieces))
        self.assertIn("", pieces)  # the emoji's first bytes are held back

    def test_chat_template(self):
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        self.assertEqual(self.model.apply_chat_template(msgs),
                         "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                         "<|im_start|>assistant\n")
        self.assertEqual(self.model.apply_chat_template(msgs[:1], add_generation_prompt=False),
                         "<|im_start|>system\nBe brief.<|im_end|>\n")

    def test_generate(self):
        m = self.model
        a = m.generate("Hello", max_new_tokens=12, temperature=0.8, seed=1)
        b = m.generate("Hello", max_new_tokens=12, temperature=0.8, seed=1)
        self.assertIsInstance(a, str)
        self.assertEqual(a, b)
        self.assertLessEqual(a.n_generated_tokens, 12)
        self.assertEqual(a.n_prompt_tokens, len(m.tokenize("Hello")))
        self.assertIn(a.stop_reason, ("eos", "max_tokens"))
        g1 = m.generate("The cat", max_new_tokens=10, temperature=0)
        g2 = m.generate("The cat", max_new_tokens=10, temperature=0)
        self.assertEqual(g1, g2)
        self.assertEqual(m.generate("Hello", max_new_tokens=0), "")
        with self.assertRaises(fm.Error) as cm:
            m.generate("Hello", max_new_tokens=-1)
        self.assertEqual(cm.exception.status, fm.ERR_INVALID_ARGUMENT)

    def test_generate_matches_token_loop(self):
        # fm_generate with greedy sampling = feeding the prompt and taking argmaxes by hand.
        m = self.model
        text = m.generate("the hat", max_new_tokens=8, temperature=0, ignore_eos=True, skip_special=False)
        with fm.Session(m) as s:
            s.feed(m.tokenize("the hat"))
            ids = []
            for _ in range(8):
                t = argmax(s.logits)
                ids.append(t)
                s.feed([t])
        self.assertEqual(text, m.detokenize(ids, skip_special=False))

    def test_stream(self):
        m = self.model
        full = m.generate("Once", max_new_tokens=20, temperature=0.9, seed=4)
        pieces = list(m.generate("Once", max_new_tokens=20, temperature=0.9, seed=4, stream=True))
        self.assertEqual("".join(pieces), full)
        # closing early stops the worker (no hang) and frees the session
        it = m.generate("Once", max_new_tokens=100000, temperature=0.9, ignore_eos=True, stream=True)
        t0 = time.time()
        for i, _ in enumerate(it):
            if i == 3:
                break
        it.close()
        self.assertLess(time.time() - t0, 30)
        # a session's stream, then its result
        with fm.Session(m) as s:
            text = "".join(s.generate("Once", max_new_tokens=5, temperature=0, stream=True))
            self.assertEqual(s.last_result, text)
            self.assertEqual(s.n_tokens, s.last_result.n_prompt_tokens + s.last_result.n_generated_tokens)

    def test_stop_strings(self):
        m = self.model
        base = m.generate("the cat", max_new_tokens=40, temperature=0, ignore_eos=True)
        if len(base) < 6:
            self.skipTest("the random model produced too little text")
        stop = base[3:5]
        cut = base.index(stop)
        got = m.generate("the cat", max_new_tokens=40, temperature=0, ignore_eos=True, stop=[stop, "\x01never"])
        self.assertEqual(got, base[:cut])
        self.assertEqual(got.stop_reason, "stop_string")

    def test_session_continues(self):
        m = self.model
        with fm.Session(m) as s:
            r1 = s.generate("Hello", max_new_tokens=4, temperature=0, ignore_eos=True)
            n1 = s.n_tokens
            self.assertEqual(n1, r1.n_prompt_tokens + r1.n_generated_tokens)
            r2 = s.generate(" and", max_new_tokens=4, temperature=0, ignore_eos=True)
            self.assertEqual(s.n_tokens, n1 + r2.n_prompt_tokens + r2.n_generated_tokens)
            r3 = s.generate("", max_new_tokens=2, temperature=0, ignore_eos=True)  # continue from the state
            self.assertEqual(r3.n_prompt_tokens, 0)

    def test_pipeline(self):
        pipe = fm.pipeline("text-generation", model=TEST_MODEL)
        out = pipe("the cat", max_new_tokens=6, do_sample=False)
        self.assertIsInstance(out, list)
        self.assertEqual(set(out[0]), {"generated_text"})
        self.assertTrue(out[0]["generated_text"].startswith("the cat"))
        self.assertEqual(out, pipe("the cat", max_new_tokens=6, do_sample=False))
        greedy = self.model.generate("the cat", max_new_tokens=6, temperature=0)
        self.assertEqual(out[0]["generated_text"], "the cat" + greedy)
        # max_length counts the prompt, as in transformers
        n_prompt = len(self.model.tokenize("the cat"))
        self.assertEqual(pipe("the cat", max_length=n_prompt + 6), out)
        self.assertEqual(pipe("the cat", max_new_tokens=6, return_full_text=False)[0]["generated_text"], greedy)
        sampled = pipe("the cat", max_new_tokens=6, do_sample=True, temperature=0.9, top_k=20, top_p=0.9, seed=3)
        self.assertEqual(sampled, pipe("the cat", max_new_tokens=6, do_sample=True, temperature=0.9, top_k=20,
                                       top_p=0.9, seed=3))
        batch = pipe(["a", "b"], max_new_tokens=3)
        self.assertEqual(len(batch), 2)
        self.assertTrue(batch[1][0]["generated_text"].startswith("b"))
        chat = pipe([{"role": "user", "content": "Hi"}], max_new_tokens=4)
        self.assertEqual(chat[0]["generated_text"][-1]["role"], "assistant")
        with self.assertRaises(ValueError):
            fm.pipeline("fill-mask", model=TEST_MODEL)

    def test_cli(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE)] + [p for p in [env.get("PYTHONPATH")] if p])
        r = subprocess.run([sys.executable, "-m", "falconmamba", "chat", "-m", TEST_MODEL, "-n", "8", "--seed", "1",
                            "--system", "Be brief."], input="Hello!\nHow are you?\n/reset\nHi again\n/exit\nnot read\n",
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(">>> Hello!", r.stdout)
        self.assertIn("(conversation reset)", r.stdout)
        self.assertNotIn("not read", r.stdout)
        r = subprocess.run([sys.executable, "-m", "falconmamba", "info", "-m", TEST_MODEL], capture_output=True,
                           text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("falcon_mamba", r.stdout)
        r = subprocess.run([sys.executable, "-m", "falconmamba", "generate", "-m", TEST_MODEL, "-p", "Hi", "-n", "4"],
                           capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("Hi"))
        r = subprocess.run([sys.executable, "-m", "falconmamba", "info", "-m", "/nonexistent"], capture_output=True,
                           text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("error: "))

    def test_chat_incremental(self):
        # The CLI's chat feeds only each turn's delta; the session then holds the whole conversation.
        sys.path.insert(0, os.path.dirname(HERE))
        from falconmamba.__main__ import Chat
        import io
        c = Chat(self.model, system="Be brief.", max_new_tokens=6, temperature=0)
        c.turn("Hello", out=io.StringIO())
        n1 = c.session.n_tokens
        c.turn("Again", out=io.StringIO())
        self.assertGreater(c.session.n_tokens, n1)
        full = self.model.apply_chat_template(c.messages, add_generation_prompt=False)
        self.assertTrue(full.startswith(c.seen))


if __name__ == "__main__":
    unittest.main()
