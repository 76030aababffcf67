"""ctypes mirror of include/falconmamba.h: library lookup, struct layouts, function prototypes.

Internal module; the public API is in falconmamba/__init__.py. Every struct here matches the C
declaration field by field (order and types); struct_size is always set with ctypes.sizeof.
"""
import ctypes
import ctypes.util
import os
import threading

# ---- status codes and enums (values are stable, from the header) ----------------------------------

FM_OK = 0
FM_ERR_INVALID_ARGUMENT = -1
FM_ERR_OUT_OF_MEMORY = -2
FM_ERR_IO = -3
FM_ERR_FORMAT = -4
FM_ERR_UNSUPPORTED = -5
FM_ERR_BACKEND = -6
FM_ERR_BUFFER_TOO_SMALL = -7
FM_ERR_STATE_MISMATCH = -8
FM_ERR_CANCELLED = -9
FM_ERR_INVALID_TOKEN = -10
FM_ERR_INTERNAL = -11

FM_BACKEND_AUTO = 0
FM_BACKEND_CPU = 1
FM_BACKEND_CUDA = 2

FM_WEIGHTS_AUTO = 0
FM_WEIGHTS_F32 = 1
FM_WEIGHTS_BF16 = 2
FM_WEIGHTS_F16 = 3
FM_WEIGHTS_Q8_0 = 4
FM_WEIGHTS_Q4_0 = 5

FM_STOP_NONE = 0
FM_STOP_EOS = 1
FM_STOP_MAX_TOKENS = 2
FM_STOP_STRING = 3
FM_STOP_CALLBACK = 4
FM_STOP_CANCELLED = 5

FM_SEED_RANDOM = 2**64 - 1
FM_HISTORY_MAX = 65536

# C enums are ints on every ABI this library supports.
c_enum = ctypes.c_int

# ---- structs -------------------------------------------------------------------------------------

PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_float, ctypes.c_void_p)
TOKEN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_int32,
                                  ctypes.c_void_p)


class fm_context_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("backend", c_enum),
        ("device", ctypes.c_int32),
        ("n_threads", ctypes.c_int32),
        ("weight_type", c_enum),
        ("progress", PROGRESS_FN),
        ("progress_user", ctypes.c_void_p),
    ]


class fm_model_info(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("model_type", ctypes.c_char_p),
        ("n_layer", ctypes.c_int32),
        ("d_model", ctypes.c_int32),
        ("d_inner", ctypes.c_int32),
        ("d_state", ctypes.c_int32),
        ("d_conv", ctypes.c_int32),
        ("dt_rank", ctypes.c_int32),
        ("n_vocab", ctypes.c_int32),
        ("tied_embeddings", ctypes.c_int32),
        ("n_params", ctypes.c_uint64),
        ("weight_bytes", ctypes.c_uint64),
        ("state_bytes", ctypes.c_uint64),
        ("backend_name", ctypes.c_char_p),
    ]


class fm_session_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("prefill_chunk", ctypes.c_uint32),
    ]


class fm_logit_bias(ctypes.Structure):
    _fields_ = [
        ("token", ctypes.c_int32),
        ("bias", ctypes.c_float),
    ]


class fm_sampler_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("repeat_last_n", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("typical_p", ctypes.c_float),
        ("presence_penalty", ctypes.c_float),
        ("frequency_penalty", ctypes.c_float),
        ("logit_bias", ctypes.POINTER(fm_logit_bias)),
        ("n_logit_bias", ctypes.c_size_t),
    ]


class fm_generate_stats(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("n_prompt_tokens", ctypes.c_uint64),
        ("n_generated_tokens", ctypes.c_uint64),
        ("prompt_seconds", ctypes.c_double),
        ("generate_seconds", ctypes.c_double),
        ("stop_reason", c_enum),
    ]


class fm_generate_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("max_new_tokens", ctypes.c_int32),
        ("sampler", ctypes.POINTER(fm_sampler_params)),
        ("stop", ctypes.POINTER(ctypes.c_char_p)),
        ("n_stop", ctypes.c_size_t),
        ("add_special", ctypes.c_int32),
        ("skip_special", ctypes.c_int32),
        ("ignore_eos", ctypes.c_int32),
        ("stats", ctypes.POINTER(fm_generate_stats)),
    ]


class fm_chat_message(ctypes.Structure):
    _fields_ = [
        ("role", ctypes.c_char_p),
        ("content", ctypes.c_char_p),
    ]


# ---- prototypes ------------------------------------------------------------------------------------

_p = ctypes.c_void_p  # opaque handles (fm_context *, fm_session *, fm_tokenizer *, fm_detokenizer *)
_st = c_enum          # fm_status
_i32 = ctypes.c_int32
_sz = ctypes.c_size_t
_psz = ctypes.POINTER(ctypes.c_size_t)
_pi32 = ctypes.POINTER(ctypes.c_int32)
_pf = ctypes.POINTER(ctypes.c_float)
_pp = ctypes.POINTER(ctypes.c_void_p)

PROTOTYPES = {
    # name: (restype, argtypes, required)
    "fm_version": (ctypes.c_char_p, [], True),
    "fm_last_error": (ctypes.c_char_p, [], True),
    "fm_status_string": (ctypes.c_char_p, [_st], True),
    "fm_context_params_init": (None, [ctypes.POINTER(fm_context_params)], True),
    "fm_context_open": (_st, [ctypes.c_char_p, ctypes.POINTER(fm_context_params), _pp], True),
    "fm_context_close": (None, [_p], True),
    "fm_n_vocab": (_i32, [_p], True),
    "fm_token_eos": (_i32, [_p], True),
    "fm_token_bos": (_i32, [_p], True),
    "fm_context_info": (_st, [_p, ctypes.POINTER(fm_model_info)], True),
    "fm_session_params_init": (None, [ctypes.POINTER(fm_session_params)], True),
    "fm_session_open": (_st, [_p, ctypes.POINTER(fm_session_params), _pp], True),
    "fm_session_close": (None, [_p], True),
    "fm_session_reset": (_st, [_p], True),
    "fm_session_feed": (_st, [_p, _pi32, _sz, _pf], True),
    "fm_session_logits": (_pf, [_p], True),
    "fm_session_n_tokens": (ctypes.c_uint64, [_p], True),
    "fm_session_fork": (_st, [_p, _pp], True),
    "fm_session_state_size": (_sz, [_p], True),
    "fm_session_state_save": (_st, [_p, ctypes.c_void_p, _sz, _psz], True),
    "fm_session_state_load": (_st, [_p, ctypes.c_void_p, _sz], True),
    "fm_decode_batch": (_st, [_pp, _pi32, _sz], True),
    "fm_session_cancel": (None, [_p], True),
    "fm_sampler_params_init": (None, [ctypes.POINTER(fm_sampler_params)], True),
    "fm_session_sample": (_st, [_p, ctypes.POINTER(fm_sampler_params), _pi32], True),
    # Text: generation and the tokenizer. Optional so that a library without them still loads for
    # token-level work; calling one that is missing raises Error(FM_ERR_UNSUPPORTED).
    "fm_generate_params_init": (None, [ctypes.POINTER(fm_generate_params)], False),
    "fm_generate": (_st, [_p, ctypes.c_char_p, ctypes.POINTER(fm_generate_params), TOKEN_CALLBACK, ctypes.c_void_p],
                    False),
    "fm_tokenizer_open": (_st, [ctypes.c_char_p, _pp], False),
    "fm_tokenizer_close": (None, [_p], False),
    "fm_context_tokenizer": (_p, [_p], False),
    "fm_tokenizer_n_vocab": (_i32, [_p], False),
    "fm_tokenizer_bos": (_i32, [_p], False),
    "fm_tokenizer_eos": (_i32, [_p], False),
    "fm_tokenizer_is_special": (ctypes.c_int, [_p, _i32], False),
    "fm_tokenizer_encode": (_st, [_p, ctypes.c_char_p, _sz, ctypes.c_int, _pi32, _sz, _psz], False),
    "fm_tokenizer_decode": (_st, [_p, _pi32, _sz, ctypes.c_int, ctypes.c_char_p, _sz, _psz], False),
    "fm_detokenizer_open": (_st, [_p, ctypes.c_int, _pp], False),
    "fm_detokenizer_close": (None, [_p], False),
    "fm_detokenizer_reset": (None, [_p], False),
    "fm_detokenizer_push": (_st, [_p, _i32, ctypes.c_char_p, _sz, _psz], False),
    "fm_detokenizer_flush": (_st, [_p, ctypes.c_char_p, _sz, _psz], False),
    "fm_tokenizer_chat_format": (_st, [_p, ctypes.POINTER(fm_chat_message), _sz, ctypes.c_int, ctypes.c_char_p, _sz,
                                       _psz], False),
}

# ---- library lookup ----------------------------------------------------------------------------------

LIBRARY_NAMES = ("libfalconmamba.so.1", "libfalconmamba.so")


def candidate_paths():
    """Where the library is looked for, in order (see README.md)."""
    out = []
    env = os.environ.get("FALCONMAMBA_LIBRARY")
    if env:
        out.append(env)
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (here, os.path.dirname(here)):
        for name in LIBRARY_NAMES:
            p = os.path.join(d, name)
            if os.path.exists(p):
                out.append(p)
    found = ctypes.util.find_library("falconmamba")
    if found:
        out.append(found)
    out.append("libfalconmamba.so.1")
    return out


class _Missing:
    """Stands in for a function the loaded library does not export."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        raise LibraryError(FM_ERR_UNSUPPORTED, "%s is not in the loaded libfalconmamba (too old a build?)" % self.name)


class LibraryError(Exception):
    """Raised by _Missing; falconmamba.__init__ turns it into falconmamba.Error."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


_lib = None
_lib_lock = threading.Lock()


def load():
    """The loaded library (a ctypes.CDLL with prototypes set); loads it on first use."""
    global _lib
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        errors = []
        env = os.environ.get("FALCONMAMBA_LIBRARY")
        for path in candidate_paths():
            try:
                lib = ctypes.CDLL(path)
                break
            except OSError as e:
                if env and path == env:  # an explicit choice that fails is an error, not a hint
                    raise OSError("cannot load FALCONMAMBA_LIBRARY=%s: %s" % (env, e)) from None
                errors.append("%s: %s" % (path, e))
        else:
            raise OSError("cannot load libfalconmamba (set FALCONMAMBA_LIBRARY to its path): " + "; ".join(errors))
        for name, (res, args, required) in PROTOTYPES.items():
            try:
                f = getattr(lib, name)
            except AttributeError:
                if required:
                    raise OSError("%s does not export %s: not a libfalconmamba 1.x" % (lib._name, name))
                setattr(lib, name, _Missing(name))
                continue
            f.restype = res
            f.argtypes = args
        version = lib.fm_version().decode()
        if not version.startswith("1."):
            raise OSError("%s is libfalconmamba %s; these bindings need 1.x" % (lib._name, version))
        _lib = lib
        return _lib


def has(name):
    """True if the loaded library exports the (optional) function `name`."""
    return not isinstance(getattr(load(), name), _Missing)
