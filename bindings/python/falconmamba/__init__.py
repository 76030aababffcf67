"""falconmamba - Python bindings for libfalconmamba (ctypes; no dependencies, numpy optional).

    import falconmamba
    model = falconmamba.Model("falcon-mamba-7b-instruct")
    print(model.generate("The capital of France is", max_new_tokens=20, temperature=0))
    for piece in model.generate("Once upon a time", stream=True):
        print(piece, end="", flush=True)

    s = falconmamba.Session(model)        # token level: the recurrent state and its logits
    s.feed(model.tokenize("Hello"))
    tok = s.sample(temperature=0.7, seed=1)

    pipe = falconmamba.pipeline("text-generation", model="falcon-mamba-7b")   # like transformers'
    pipe("Hello", max_new_tokens=10)      # [{"generated_text": "Hello..."}]

Every failure of the library raises falconmamba.Error(status, message), the message being the
library's fm_last_error(). The library is found through $FALCONMAMBA_LIBRARY, then next to this
package, then ctypes.util.find_library("falconmamba"), then the loader's "libfalconmamba.so.1".

Thread rules are the library's: a Model may be shared by threads; a Session must be used by one
thread at a time, except Session.cancel(), which any thread may call.
"""
import ctypes
import json
import os
import queue
import threading
import weakref

from . import _native as N

try:  # optional: logits as numpy arrays
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is not required
    _np = None

__all__ = [
    "Error", "Model", "Session", "Tokenizer", "Detokenizer", "GenerationResult", "TextGenerationPipeline",
    "pipeline", "version", "decode_batch", "library_path",
]
__version__ = "1.0.0"

# Status codes, as in the header (falconmamba.ERR_IO == FM_ERR_IO, ...).
OK = N.FM_OK
ERR_INVALID_ARGUMENT = N.FM_ERR_INVALID_ARGUMENT
ERR_OUT_OF_MEMORY = N.FM_ERR_OUT_OF_MEMORY
ERR_IO = N.FM_ERR_IO
ERR_FORMAT = N.FM_ERR_FORMAT
ERR_UNSUPPORTED = N.FM_ERR_UNSUPPORTED
ERR_BACKEND = N.FM_ERR_BACKEND
ERR_BUFFER_TOO_SMALL = N.FM_ERR_BUFFER_TOO_SMALL
ERR_STATE_MISMATCH = N.FM_ERR_STATE_MISMATCH
ERR_CANCELLED = N.FM_ERR_CANCELLED
ERR_INVALID_TOKEN = N.FM_ERR_INVALID_TOKEN
ERR_INTERNAL = N.FM_ERR_INTERNAL
SEED_RANDOM = N.FM_SEED_RANDOM

_STOP_REASONS = {N.FM_STOP_NONE: "none", N.FM_STOP_EOS: "eos", N.FM_STOP_MAX_TOKENS: "max_tokens",
                 N.FM_STOP_STRING: "stop_string", N.FM_STOP_CALLBACK: "callback", N.FM_STOP_CANCELLED: "cancelled"}
_BACKENDS = {"auto": N.FM_BACKEND_AUTO, "cpu": N.FM_BACKEND_CPU, "cuda": N.FM_BACKEND_CUDA}
_WEIGHTS = {None: N.FM_WEIGHTS_AUTO, "auto": N.FM_WEIGHTS_AUTO, "f32": N.FM_WEIGHTS_F32, "bf16": N.FM_WEIGHTS_BF16,
            "f16": N.FM_WEIGHTS_F16, "q8_0": N.FM_WEIGHTS_Q8_0, "q4_0": N.FM_WEIGHTS_Q4_0}


# ---- errors ------------------------------------------------------------------------------------------

class Error(Exception):
    """A failure reported by libfalconmamba: .status (an FM_ERR_* code, negative), .status_name
    ("FM_ERR_IO"), .message (fm_last_error() at the time)."""

    def __init__(self, status, message):
        self.status = int(status)
        self.message = message
        try:
            self.status_name = _lib().fm_status_string(self.status).decode()
        except OSError:  # the library itself could not be loaded
            self.status_name = "FM_STATUS_UNKNOWN"
        super().__init__(status, message)

    def __str__(self):
        return "%s: %s" % (self.status_name, self.message)


def _lib():
    return N.load()


def _check(st):
    """Raise Error with fm_last_error() if st is not FM_OK (call right after the failing function)."""
    if st != N.FM_OK:
        raise Error(st, _lib().fm_last_error().decode("utf-8", "replace"))


def _call(fn, *args):
    """Call a status-returning function; raise Error with fm_last_error() on failure."""
    try:
        st = fn(*args)
    except N.LibraryError as e:
        raise Error(e.status, e.message) from None
    _check(st)


def _need(name):
    if not N.has(name):
        raise Error(N.FM_ERR_UNSUPPORTED, "%s is not in the loaded libfalconmamba (too old a build?)" % name)


def version():
    """The library's version string, e.g. "1.0.0"."""
    return _lib().fm_version().decode()


def library_path():
    """The file the library was loaded from (as given to the dynamic loader)."""
    return _lib()._name


def _utf8(text):
    if isinstance(text, bytes):
        return text
    if not isinstance(text, str):
        raise TypeError("expected str, got %s" % type(text).__name__)
    return text.encode("utf-8")


def _token_array(ids):
    """ids (any iterable of ints, e.g. a list or a numpy array) as a ctypes int32 array."""
    ids = [int(t) for t in ids]
    for i, t in enumerate(ids):
        if not -2**31 <= t < 2**31:
            raise Error(N.FM_ERR_INVALID_TOKEN, "token %d is %d, outside the int32 range" % (i, t))
    return (ctypes.c_int32 * len(ids))(*ids), len(ids)


def _floats(ptr, n):
    """Copy n floats from a C pointer: a numpy array if numpy is importable, else a list."""
    if _np is not None:
        return _np.ctypeslib.as_array(ptr, shape=(n,)).copy()
    return (ctypes.c_float * n).from_address(ctypes.addressof(ptr.contents))[:]


def _sampler_params(temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None,
                    seed=None, typical_p=None, presence_penalty=None, frequency_penalty=None, logit_bias=None):
    """An fm_sampler_params from the library's defaults with the given fields changed. seed=None means
    a seed from the OS (SEED_RANDOM); logit_bias is a {token: bias} dict. Returns (params, keepalive)."""
    p = N.fm_sampler_params()
    _lib().fm_sampler_params_init(ctypes.byref(p))
    p.struct_size = ctypes.sizeof(p)
    for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("min_p", min_p),
                        ("repeat_penalty", repeat_penalty), ("repeat_last_n", repeat_last_n),
                        ("typical_p", typical_p), ("presence_penalty", presence_penalty),
                        ("frequency_penalty", frequency_penalty)):
        if value is not None:
            setattr(p, name, value)
    p.seed = N.FM_SEED_RANDOM if seed is None else int(seed) & (2**64 - 1)
    keep = None
    if logit_bias:
        keep = (N.fm_logit_bias * len(logit_bias))(*[N.fm_logit_bias(int(t), float(b)) for t, b in logit_bias.items()])
        p.logit_bias = keep
        p.n_logit_bias = len(logit_bias)
    return p, keep


# ---- tokenizer -----------------------------------------------------------------------------------------

class Tokenizer:
    """A HuggingFace tokenizer (tokenizer.json, plus tokenizer_config.json for the chat template and
    bos/eos). Tokenizer(path) loads one on its own (no weights needed); Model.tokenizer is the one
    loaded with a model."""

    def __init__(self, path=None, _handle=None, _owner=None):
        self._h = None
        self._owner = _owner  # keeps a Model alive while its tokenizer is in use
        if _handle is not None:
            self._h, self._owned = _handle, False
            return
        _need("fm_tokenizer_open")
        h = ctypes.c_void_p()
        _call(_lib().fm_tokenizer_open, os.fsencode(path), ctypes.byref(h))
        self._h, self._owned = h, True

    def close(self):
        if self._h is not None and self._owned:
            _lib().fm_tokenizer_close(self._h)
        self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if self._h is None:
            raise Error(N.FM_ERR_INVALID_ARGUMENT, "the tokenizer is closed")
        return self._h

    @property
    def n_vocab(self):
        return _lib().fm_tokenizer_n_vocab(self._handle())

    @property
    def bos(self):
        """The bos token id, or None."""
        t = _lib().fm_tokenizer_bos(self._handle())
        return None if t < 0 else t

    @property
    def eos(self):
        """The eos token id, or None."""
        t = _lib().fm_tokenizer_eos(self._handle())
        return None if t < 0 else t

    def is_special(self, token):
        return bool(_lib().fm_tokenizer_is_special(self._handle(), int(token)))

    def encode(self, text, add_special=True):
        """Token ids of text (str, or UTF-8 bytes). add_special applies the post-processor (e.g. BOS);
        special tokens written in the text are always recognised, as in HF."""
        data = _utf8(text)
        cap = len(data) + 8
        n = ctypes.c_size_t(0)
        for _ in range(2):
            buf = (ctypes.c_int32 * cap)()
            st = _lib().fm_tokenizer_encode(self._handle(), data, len(data), int(bool(add_special)), buf, cap,
                                            ctypes.byref(n))
            if st == N.FM_ERR_BUFFER_TOO_SMALL:
                cap = n.value
                continue
            _check(st)
            return buf[:n.value]
        raise Error(N.FM_ERR_INTERNAL, "fm_tokenizer_encode: the size changed between calls")

    def decode(self, ids, skip_special=True):
        """Text of ids (invalid UTF-8 from byte-level tokens becomes U+FFFD, as in HF)."""
        arr, n = _token_array(ids)
        cap = 16 * n + 16
        out = ctypes.c_size_t(0)
        for _ in range(2):
            buf = ctypes.create_string_buffer(cap)
            st = _lib().fm_tokenizer_decode(self._handle(), arr, n, int(bool(skip_special)), buf, cap,
                                            ctypes.byref(out))
            if st == N.FM_ERR_BUFFER_TOO_SMALL:
                cap = out.value + 1
                continue
            _check(st)
            return buf.raw[:out.value].decode("utf-8", "replace")
        raise Error(N.FM_ERR_INTERNAL, "fm_tokenizer_decode: the size changed between calls")

    def apply_chat_template(self, messages, add_generation_prompt=True):
        """The chat template rendered over messages ([{"role": ..., "content": ...}, ...]), as
        transformers' apply_chat_template(tokenize=False)."""
        msgs = (N.fm_chat_message * max(1, len(messages)))()
        keep = []
        for i, m in enumerate(messages):
            role, content = _utf8(m["role"]), _utf8(m["content"])
            keep += [role, content]
            msgs[i].role, msgs[i].content = role, content
        need = ctypes.c_size_t(0)
        st = _lib().fm_tokenizer_chat_format(self._handle(), msgs, len(messages), int(bool(add_generation_prompt)),
                                             None, 0, ctypes.byref(need))
        if st not in (N.FM_OK, N.FM_ERR_BUFFER_TOO_SMALL):
            _check(st)
        buf = ctypes.create_string_buffer(need.value + 1)
        _call(_lib().fm_tokenizer_chat_format, self._handle(), msgs, len(messages), int(bool(add_generation_prompt)),
              buf, need.value + 1, ctypes.byref(need))
        return buf.raw[:need.value].decode("utf-8", "replace")

    def detokenizer(self, skip_special=True):
        return Detokenizer(self, skip_special)


class Detokenizer:
    """Incremental decoding: push(token) returns the text that token completes (whole UTF-8
    characters only; a partial character waits for the next token); flush() returns what is held."""

    def __init__(self, tokenizer, skip_special=True):
        _need("fm_detokenizer_open")
        self._tok = tokenizer
        h = ctypes.c_void_p()
        _call(_lib().fm_detokenizer_open, tokenizer._handle(), int(bool(skip_special)), ctypes.byref(h))
        self._h = h
        self._buf = ctypes.create_string_buffer(256)

    def _run(self, fn, *args):
        n = ctypes.c_size_t(0)
        st = fn(self._h, *args, self._buf, len(self._buf), ctypes.byref(n))
        if st == N.FM_ERR_BUFFER_TOO_SMALL:  # nothing consumed: grow and retry
            self._buf = ctypes.create_string_buffer(n.value + 1)
            st = fn(self._h, *args, self._buf, len(self._buf), ctypes.byref(n))
        _check(st)
        return self._buf.raw[:n.value].decode("utf-8", "replace")

    def push(self, token):
        return self._run(_lib().fm_detokenizer_push, int(token))

    def flush(self):
        return self._run(_lib().fm_detokenizer_flush)

    def reset(self):
        _lib().fm_detokenizer_reset(self._h)

    def close(self):
        if getattr(self, "_h", None) is not None:
            _lib().fm_detokenizer_close(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ---- model -------------------------------------------------------------------------------------------

class Model:
    """One loaded checkpoint directory (fm_context).

    backend: "auto", "cpu" or "cuda"; threads: CPU threads (0 = all cores); weights: None (as
    stored), "f32", "bf16" or "f16"; progress: optional callable(fraction) called while loading,
    returning True to abort (Error ERR_CANCELLED)."""

    def __init__(self, path, backend="auto", threads=0, weights=None, device=0, progress=None):
        lib = _lib()
        p = N.fm_context_params()
        lib.fm_context_params_init(ctypes.byref(p))
        p.struct_size = ctypes.sizeof(p)
        try:
            p.backend = _BACKENDS[backend] if isinstance(backend, str) else int(backend)
            p.weight_type = _WEIGHTS[weights] if weights is None or isinstance(weights, str) else int(weights)
        except KeyError as e:
            raise Error(N.FM_ERR_INVALID_ARGUMENT, "unknown backend or weight type %s" % e) from None
        p.device = int(device)
        p.n_threads = int(threads)
        self._progress_error = None
        if progress is not None:
            def cb(fraction, user):
                try:
                    return 1 if progress(float(fraction)) else 0
                except BaseException as e:  # never let an exception cross the C frames
                    self._progress_error = e
                    return 1
            p.progress = N.PROGRESS_FN(cb)  # referenced by p for the duration of the open
        self._ctx = None
        self._sessions = weakref.WeakSet()
        self.path = os.fspath(path)
        h = ctypes.c_void_p()
        try:
            _call(lib.fm_context_open, os.fsencode(path), ctypes.byref(p), ctypes.byref(h))
        except Error:
            if self._progress_error is not None:
                raise self._progress_error
            raise
        self._ctx = h
        self._gen_config = None

    def __repr__(self):
        return "falconmamba.Model(%r)" % self.path

    # lifetime
    def close(self):
        """Free the model; its open sessions are closed first."""
        if self._ctx is None:
            return
        for s in list(self._sessions):
            s.close()
        _lib().fm_context_close(self._ctx)
        self._ctx = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if self._ctx is None:
            raise Error(N.FM_ERR_INVALID_ARGUMENT, "the model is closed")
        return self._ctx

    # properties
    @property
    def n_vocab(self):
        return _lib().fm_n_vocab(self._handle())

    @property
    def eos(self):
        """The end-of-sequence id from config.json, or None."""
        t = _lib().fm_token_eos(self._handle())
        return None if t < 0 else t

    @property
    def bos(self):
        t = _lib().fm_token_bos(self._handle())
        return None if t < 0 else t

    @property
    def info(self):
        """The model's dimensions as a dict (fm_model_info)."""
        i = N.fm_model_info()
        i.struct_size = ctypes.sizeof(i)
        _call(_lib().fm_context_info, self._handle(), ctypes.byref(i))
        d = {name: getattr(i, name) for name, _ in N.fm_model_info._fields_ if name != "struct_size"}
        for k in ("model_type", "backend_name"):
            d[k] = d[k].decode() if d[k] is not None else None
        d["tied_embeddings"] = bool(d["tied_embeddings"])
        return d

    @property
    def tokenizer(self):
        """The tokenizer loaded with the model (it keeps the model alive), or None if the directory
        has no tokenizer.json."""
        if not N.has("fm_context_tokenizer"):
            return None
        h = _lib().fm_context_tokenizer(self._handle())
        if not h:
            return None
        return Tokenizer(_handle=ctypes.c_void_p(h), _owner=self)

    def _need_tokenizer(self):
        _need("fm_context_tokenizer")
        tok = self.tokenizer
        if tok is None:
            raise Error(N.FM_ERR_UNSUPPORTED, "%s has no tokenizer.json" % self.path)
        return tok

    # text
    def tokenize(self, text, add_special=True):
        return self._need_tokenizer().encode(text, add_special)

    def detokenize(self, ids, skip_special=True):
        return self._need_tokenizer().decode(ids, skip_special)

    def apply_chat_template(self, messages, add_generation_prompt=True):
        return self._need_tokenizer().apply_chat_template(messages, add_generation_prompt)

    def session(self, prefill_chunk=0):
        return Session(self, prefill_chunk=prefill_chunk)

    def generate(self, prompt, max_new_tokens=128, temperature=0.8, top_k=None, top_p=None, min_p=None,
                 repeat_penalty=None, seed=None, stop=None, stream=False, **kw):
        """Generate from a fresh session: the text after prompt (str), or with stream=True an iterator
        of text pieces. See Session.generate for the parameters."""
        s = Session(self)
        try:
            out = s.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop, stream=stream, **kw)
        except BaseException:
            s.close()
            raise
        if not stream:
            s.close()
            return out
        return _closing_iter(out, s)

    def generation_config(self):
        """generation_config.json of the checkpoint as a dict ({} if absent)."""
        if self._gen_config is None:
            try:
                with open(os.path.join(self.path, "generation_config.json"), encoding="utf-8") as f:
                    self._gen_config = json.load(f)
            except (OSError, ValueError):
                self._gen_config = {}
        return self._gen_config


def _closing_iter(it, session):
    try:
        yield from it
    finally:
        it.close()
        session.close()


# ---- session -----------------------------------------------------------------------------------------

class GenerationResult(str):
    """The generated text (a str) with the statistics of the run as attributes: n_prompt_tokens,
    n_generated_tokens, prompt_seconds, generate_seconds, stop_reason ("eos", "max_tokens",
    "stop_string", "callback", "cancelled")."""


class Session:
    """One sequence: the model's recurrent state after the tokens fed so far, and the logits after the
    last one. Use it from one thread at a time (cancel() excepted)."""

    def __init__(self, model, prefill_chunk=0, _handle=None):
        self.model = model
        self._s = None
        if _handle is None:
            p = N.fm_session_params()
            _lib().fm_session_params_init(ctypes.byref(p))
            p.struct_size = ctypes.sizeof(p)
            p.prefill_chunk = int(prefill_chunk)
            h = ctypes.c_void_p()
            _call(_lib().fm_session_open, model._handle(), ctypes.byref(p), ctypes.byref(h))
            _handle = h
        self._s = _handle
        self.last_result = None  # the GenerationResult of the last generate (also after streaming)
        model._sessions.add(self)

    def close(self):
        if self._s is not None:
            _lib().fm_session_close(self._s)
            self._s = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if self._s is None:
            raise Error(N.FM_ERR_INVALID_ARGUMENT, "the session is closed")
        return self._s

    # state
    @property
    def n_tokens(self):
        """Tokens consumed since open/reset (restored by load_state)."""
        return _lib().fm_session_n_tokens(self._handle())

    def reset(self):
        """Back to the empty state; also drops a pending cancel."""
        _call(_lib().fm_session_reset, self._handle())

    def feed(self, ids, all_logits=False):
        """Advance the state over ids (at least one). With all_logits=True, returns the logits after
        every token: n rows of n_vocab (a list of lists, or an (n, n_vocab) numpy array)."""
        arr, n = _token_array(ids)
        if not all_logits:
            _call(_lib().fm_session_feed, self._handle(), arr, n, None)
            return None
        v = self.model.n_vocab
        out = (ctypes.c_float * (n * v))()
        _call(_lib().fm_session_feed, self._handle(), arr, n, out)
        if _np is not None:
            return _np.ctypeslib.as_array(out).reshape(n, v).copy()
        flat = out[:]
        return [flat[i * v:(i + 1) * v] for i in range(n)]

    @property
    def logits(self):
        """A copy of the logits after the last token fed (list of n_vocab floats, or a numpy array), or
        None before the first feed."""
        ptr = _lib().fm_session_logits(self._handle())
        if not ptr:
            return None
        return _floats(ptr, self.model.n_vocab)

    def sample(self, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, seed=None,
               repeat_last_n=None, typical_p=None, presence_penalty=None, frequency_penalty=None, logit_bias=None):
        """The next token drawn from the current logits (not fed: call feed with it). Unset parameters
        take the library's defaults (temperature 1, top_k 50, ...); temperature=0 is greedy. seed=None
        seeds the session's generator from the OS on first use; a changed seed reseeds it."""
        p, keep = _sampler_params(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed, typical_p,
                                  presence_penalty, frequency_penalty, logit_bias)
        t = ctypes.c_int32(0)
        _call(_lib().fm_session_sample, self._handle(), ctypes.byref(p), ctypes.byref(t))
        del keep
        return t.value

    def fork(self):
        """A new session with a copy of this one's state and logits."""
        h = ctypes.c_void_p()
        _call(_lib().fm_session_fork, self._handle(), ctypes.byref(h))
        return Session(self.model, _handle=h)

    def save_state(self):
        """The state as bytes (a validated blob: header naming the model, state, logits)."""
        n = _lib().fm_session_state_size(self._handle())
        buf = ctypes.create_string_buffer(max(1, n))
        written = ctypes.c_size_t(0)
        _call(_lib().fm_session_state_save, self._handle(), buf, n, ctypes.byref(written))
        return buf.raw[:written.value]

    def load_state(self, blob):
        """Restore a blob from save_state (Error ERR_STATE_MISMATCH if corrupt or from another model)."""
        blob = bytes(blob)
        _call(_lib().fm_session_state_load, self._handle(), blob, len(blob))

    def cancel(self):
        """Stop the call running on this session (or the next one) with ERR_CANCELLED. Any thread."""
        if self._s is not None:
            _lib().fm_session_cancel(self._s)

    # text
    def generate(self, prompt, max_new_tokens=128, temperature=0.8, top_k=None, top_p=None, min_p=None,
                 repeat_penalty=None, seed=None, stop=None, stream=False, add_special=None, skip_special=True,
                 ignore_eos=False, **sampler):
        """Feed prompt ("" continues from the state) and generate up to max_new_tokens tokens with
        fm_generate, continuing from the session's state (so a chat feeds only its new turn).

        Stops at EOS, max_new_tokens, a stop string (str or list; not included in the text) or cancel().
        Returns the new text as a GenerationResult (a str with the run's statistics; also kept as
        self.last_result, which streaming sets when the iterator ends), or with stream=True an
        iterator of text pieces (fm_generate runs in a background thread meanwhile, so
        do not use this session for anything else until the iterator is exhausted or closed)."""
        _need("fm_generate")
        sp, keep_bias = _sampler_params(temperature, top_k, top_p, min_p, repeat_penalty, sampler.pop("repeat_last_n", None),
                                        seed, sampler.pop("typical_p", None), sampler.pop("presence_penalty", None),
                                        sampler.pop("frequency_penalty", None), sampler.pop("logit_bias", None))
        if sampler:
            raise TypeError("unexpected keyword argument(s): %s" % ", ".join(sorted(sampler)))
        if isinstance(stop, (str, bytes)):
            stop = [stop]
        stop_b = [_utf8(x) for x in (stop or [])]
        gp = N.fm_generate_params()
        _lib().fm_generate_params_init(ctypes.byref(gp))
        gp.struct_size = ctypes.sizeof(gp)
        gp.max_new_tokens = int(max_new_tokens)
        gp.sampler = ctypes.pointer(sp)
        stop_arr = (ctypes.c_char_p * max(1, len(stop_b)))(*stop_b)
        if stop_b:
            gp.stop = ctypes.cast(stop_arr, ctypes.POINTER(ctypes.c_char_p))
            gp.n_stop = len(stop_b)
        gp.add_special = -1 if add_special is None else int(bool(add_special))
        gp.skip_special = int(bool(skip_special))
        gp.ignore_eos = int(bool(ignore_eos))
        stats = N.fm_generate_stats()
        stats.struct_size = ctypes.sizeof(stats)
        gp.stats = ctypes.pointer(stats)
        prompt_b = _utf8(prompt)
        keep = (sp, keep_bias, stop_arr, stop_b, stats, prompt_b)
        if stream:
            return self._generate_stream(prompt_b, gp, keep)
        pieces = []

        def on_piece(ptr, n, token, user):
            pieces.append(ctypes.string_at(ptr, n) if n else b"")
            return 0

        cb = N.TOKEN_CALLBACK(on_piece)
        _call(_lib().fm_generate, self._handle(), prompt_b, ctypes.byref(gp), cb, None)
        self.last_result = self._result(b"".join(pieces).decode("utf-8", "replace"), stats)
        return self.last_result

    @staticmethod
    def _result(text, stats):
        r = GenerationResult(text)
        r.n_prompt_tokens = stats.n_prompt_tokens
        r.n_generated_tokens = stats.n_generated_tokens
        r.prompt_seconds = stats.prompt_seconds
        r.generate_seconds = stats.generate_seconds
        r.stop_reason = _STOP_REASONS.get(stats.stop_reason, "none")
        return r

    def _generate_stream(self, prompt_b, gp, keep):
        """fm_generate on a worker thread; its callback hands pieces over through a bounded queue.
        Closing the iterator early makes the callback return nonzero (FM_STOP_CALLBACK)."""
        q = queue.Queue(maxsize=64)
        stop = threading.Event()
        done = object()
        handle = self._handle()

        def on_piece(ptr, n, token, user):
            piece = ctypes.string_at(ptr, n) if n else b""
            while not stop.is_set():
                try:
                    q.put(piece, timeout=0.05)
                    return 0
                except queue.Full:
                    continue
            return 1

        cb = N.TOKEN_CALLBACK(on_piece)

        def run():
            try:
                st = _lib().fm_generate(handle, prompt_b, ctypes.byref(gp), cb, None)
                err = None if st == N.FM_OK else Error(st, _lib().fm_last_error().decode("utf-8", "replace"))
            except BaseException as e:  # pragma: no cover - ctypes itself failing
                err = e
            while not stop.is_set():
                try:
                    q.put((done, err), timeout=0.05)
                    break
                except queue.Full:
                    continue

        worker = threading.Thread(target=run, name="falconmamba-generate", daemon=True)
        worker.start()
        text = []
        try:
            while True:
                item = q.get()
                if isinstance(item, tuple) and item and item[0] is done:
                    if item[1] is not None:
                        raise item[1]
                    self.last_result = self._result("".join(text), keep[4])
                    return
                if item:
                    piece = item.decode("utf-8", "replace")  # pieces are whole UTF-8 characters
                    text.append(piece)
                    yield piece
        finally:
            stop.set()
            worker.join()
            del keep, cb


def decode_batch(sessions, tokens):
    """Advance several sessions of one model by one token each (tokens[i] for sessions[i]) in one pass
    over the weights; afterwards each session's logits are its next-token logits."""
    sessions = list(sessions)
    if len(sessions) != len(tokens):
        raise Error(N.FM_ERR_INVALID_ARGUMENT, "decode_batch: %d sessions but %d tokens" % (len(sessions), len(tokens)))
    hs = (ctypes.c_void_p * max(1, len(sessions)))(*[s._handle().value for s in sessions])
    arr, n = _token_array(tokens)
    _call(_lib().fm_decode_batch, hs, arr, n)


# ---- transformers-style pipeline ---------------------------------------------------------------------

class TextGenerationPipeline:
    """Callable like transformers' text-generation pipeline:

        pipe = falconmamba.pipeline("text-generation", model="path/to/checkpoint")
        pipe("Hello", max_new_tokens=20)          # [{"generated_text": "Hello ..."}]
        pipe(["a", "b"], do_sample=False)          # [[{...}], [{...}]]
        pipe([{"role": "user", "content": "Hi"}])  # chat: generated_text is the messages + the reply

    Defaults come from the checkpoint's generation_config.json, else transformers' defaults (greedy,
    max_length 20). Accepts max_length (prompt + new tokens), max_new_tokens (wins over max_length),
    do_sample, temperature, top_k, top_p, min_p, typical_p, repetition_penalty, seed, stop_strings,
    return_full_text, num_return_sequences."""

    def __init__(self, model, **defaults):
        self.model = model if isinstance(model, Model) else Model(model)
        self.defaults = defaults

    def __call__(self, text_inputs, **kwargs):
        is_chat = self._is_chat(text_inputs)
        if isinstance(text_inputs, (str, bytes)) or is_chat:
            return self._one(text_inputs, is_chat, **kwargs)
        return [self._one(t, self._is_chat(t), **kwargs) for t in text_inputs]

    @staticmethod
    def _is_chat(x):
        return isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], dict) and "role" in x[0]

    def _settings(self, kwargs):
        cfg = dict(self.model.generation_config())
        cfg.update(self.defaults)
        cfg.update(kwargs)
        return cfg

    def _one(self, inp, is_chat, **kwargs):
        c = self._settings(kwargs)
        if is_chat:
            messages = list(inp)
            prompt = self.model.apply_chat_template(messages, add_generation_prompt=True)
        else:
            prompt = inp.decode("utf-8") if isinstance(inp, bytes) else inp
        n_prompt = len(self.model.tokenize(prompt, add_special=True)) if prompt else 0
        if c.get("max_new_tokens") is not None:
            max_new = int(c["max_new_tokens"])
        else:
            max_new = int(c.get("max_length") or 20) - n_prompt
        max_new = max(0, max_new)
        do_sample = bool(c.get("do_sample", False))
        temperature = float(c.get("temperature", 1.0) if c.get("temperature") is not None else 1.0)
        if not do_sample or temperature == 0:
            temperature = 0.0
        stop = c.get("stop_strings") or c.get("stop")
        results = []
        for k in range(int(c.get("num_return_sequences", 1) or 1)):
            seed = c.get("seed")
            text = self.model.generate(
                prompt, max_new_tokens=max_new, temperature=temperature,
                top_k=int(c["top_k"]) if c.get("top_k") is not None else 50,
                top_p=float(c["top_p"]) if c.get("top_p") is not None else 1.0,
                min_p=float(c["min_p"]) if c.get("min_p") is not None else None,
                typical_p=float(c["typical_p"]) if c.get("typical_p") is not None else None,
                repeat_penalty=float(c["repetition_penalty"]) if c.get("repetition_penalty") is not None else None,
                seed=None if seed is None else int(seed) + k, stop=stop)
            if is_chat:
                results.append({"generated_text": messages + [{"role": "assistant", "content": str(text)}]})
            elif c.get("return_full_text", True):
                results.append({"generated_text": prompt + text})
            else:
                results.append({"generated_text": str(text)})
        return results


def pipeline(task="text-generation", model=None, **kwargs):
    """transformers-style factory; only "text-generation" is supported. model: a path or a Model.
    Other keyword arguments become defaults of every call (model-loading ones: backend, threads,
    weights)."""
    if task != "text-generation":
        raise ValueError("falconmamba.pipeline supports only 'text-generation', not %r" % task)
    if model is None:
        raise ValueError("pipeline: model= (a checkpoint directory or a falconmamba.Model) is required")
    load = {k: kwargs.pop(k) for k in ("backend", "threads", "weights") if k in kwargs}
    if not isinstance(model, Model):
        model = Model(model, **load)
    return TextGenerationPipeline(model, **kwargs)
