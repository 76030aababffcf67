// cpp_raii.cpp - libfalconmamba from C++17: handles owned by std::unique_ptr with custom deleters,
// failures turned into exceptions that carry the status and fm_last_error(), and fm_generate's
// callback bridged to a lambda. Nothing leaks on any path, exceptions included.
// usage: cpp_raii MODEL_DIR [PROMPT]
#include <falconmamba.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fm {

// An error from the library: the status code and the thread's message at the time of the failure.
class Error : public std::runtime_error {
  public:
    Error(fm_status status, const std::string &what)
        : std::runtime_error(std::string(fm_status_string(status)) + ": " + what), status_(status) {}
    fm_status status() const noexcept { return status_; }

  private:
    fm_status status_;
};

inline void check(fm_status st) {
    if (st != FM_OK) throw Error(st, fm_last_error()); // read the message before any other call
}

// One deleter per handle type, so that unique_ptr calls the right *_close.
struct ContextDeleter {
    void operator()(fm_context *c) const noexcept { fm_context_close(c); }
};
struct SessionDeleter {
    void operator()(fm_session *s) const noexcept { fm_session_close(s); }
};
struct TokenizerDeleter {
    void operator()(fm_tokenizer *t) const noexcept { fm_tokenizer_close(t); }
};
using ContextPtr = std::unique_ptr<fm_context, ContextDeleter>;
using SessionPtr = std::unique_ptr<fm_session, SessionDeleter>;
using TokenizerPtr = std::unique_ptr<fm_tokenizer, TokenizerDeleter>;

class Model {
  public:
    explicit Model(const std::string &dir, fm_backend_kind backend = FM_BACKEND_AUTO) {
        fm_context_params p;
        fm_context_params_init(&p);
        p.backend = backend;
        fm_context *raw = nullptr;
        check(fm_context_open(dir.c_str(), &p, &raw));
        ctx_.reset(raw);
    }
    fm_context *get() const noexcept { return ctx_.get(); }
    int32_t n_vocab() const noexcept { return fm_n_vocab(ctx_.get()); }
    const fm_tokenizer *tokenizer() const {
        const fm_tokenizer *t = fm_context_tokenizer(ctx_.get());
        if (!t) throw Error(FM_ERR_UNSUPPORTED, "the model directory has no tokenizer.json");
        return t;
    }
    std::vector<int32_t> tokenize(std::string_view text, bool add_special = true) const {
        size_t n = 0;
        fm_status st = fm_tokenizer_encode(tokenizer(), text.data(), text.size(), add_special, nullptr, 0, &n);
        if (st != FM_ERR_BUFFER_TOO_SMALL) check(st);
        std::vector<int32_t> ids(n);
        check(fm_tokenizer_encode(tokenizer(), text.data(), text.size(), add_special, ids.data(), ids.size(), &n));
        return ids;
    }

  private:
    ContextPtr ctx_;
};

class Session {
  public:
    explicit Session(const Model &m) {
        fm_session *raw = nullptr;
        check(fm_session_open(m.get(), nullptr, &raw));
        s_.reset(raw);
    }
    fm_session *get() const noexcept { return s_.get(); }
    uint64_t n_tokens() const noexcept { return fm_session_n_tokens(s_.get()); }
    void feed(const std::vector<int32_t> &ids) { check(fm_session_feed(s_.get(), ids.data(), ids.size(), nullptr)); }
    Session fork() const {
        fm_session *raw = nullptr;
        check(fm_session_fork(s_.get(), &raw));
        return Session(raw);
    }
    std::vector<unsigned char> save() const {
        std::vector<unsigned char> blob(fm_session_state_size(s_.get()));
        size_t n = 0;
        check(fm_session_state_save(s_.get(), blob.data(), blob.size(), &n));
        blob.resize(n);
        return blob;
    }
    void load(const std::vector<unsigned char> &blob) { check(fm_session_state_load(s_.get(), blob.data(), blob.size())); }

    // Generate from the session's state; on_piece gets each piece of text and returns false to stop.
    // An exception thrown by on_piece is carried across the C callback and rethrown here.
    using PieceFn = std::function<bool(std::string_view)>;
    fm_generate_stats generate(const std::string &prompt, int max_new_tokens, const PieceFn &on_piece,
                               float temperature = 0.8f, uint64_t seed = 0) {
        fm_sampler_params sp;
        fm_sampler_params_init(&sp);
        sp.temperature = temperature;
        sp.seed = seed;
        fm_generate_stats stats{};
        stats.struct_size = sizeof stats;
        fm_generate_params gp;
        fm_generate_params_init(&gp);
        gp.max_new_tokens = max_new_tokens;
        gp.sampler = &sp;
        gp.stats = &stats;
        Bridge b{&on_piece, nullptr};
        fm_status st = fm_generate(s_.get(), prompt.c_str(), &gp, &Bridge::call, &b);
        if (b.error) std::rethrow_exception(b.error); // never let an exception unwind through C frames
        check(st);
        return stats;
    }

  private:
    explicit Session(fm_session *raw) : s_(raw) {}
    struct Bridge {
        const PieceFn *fn;
        std::exception_ptr error;
        static int call(const char *piece, size_t len, int32_t, void *user) noexcept {
            auto *self = static_cast<Bridge *>(user);
            try {
                return (*self->fn)(std::string_view(piece, len)) ? 0 : 1;
            } catch (...) {
                self->error = std::current_exception();
                return 1; // stop the generation; rethrown after fm_generate returns
            }
        }
    };
    SessionPtr s_;
};

} // namespace fm

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL_DIR [PROMPT]\n", argv[0]);
        return 2;
    }
    try {
        // A failure is an exception with the library's message.
        try {
            fm::Model missing("/nonexistent/model/dir");
            std::fprintf(stderr, "error: opening a missing directory did not throw\n");
            return 1;
        } catch (const fm::Error &e) {
            std::printf("expected failure: %s\n", e.what());
        }

        fm::Model model(argv[1]);
        fm::Session chat(model);
        std::string prompt = argc > 2 ? argv[2] : "Hello, my name is";
        std::string text;
        fm_generate_stats st = chat.generate(prompt, 32, [&](std::string_view piece) {
            text += piece;
            return true; // keep going
        }, 0.8f, 11);
        std::printf("%s%s\n", prompt.c_str(), text.c_str());

        // Branch: a fork continues independently; a saved blob restores the state exactly.
        fm::Session branch = chat.fork();
        auto blob = chat.save();
        branch.feed(model.tokenize(" And then", false));
        branch.load(blob);
        if (branch.n_tokens() != chat.n_tokens()) throw std::runtime_error("state load did not restore n_tokens");

        // A callback that throws stops the generation, and the exception reaches the caller.
        try {
            chat.generate(" More:", 16, [](std::string_view) -> bool { throw std::out_of_range("enough"); });
        } catch (const std::out_of_range &e) {
            std::printf("callback exception carried through: %s\n", e.what());
        }
        std::printf("cpp_raii OK: %llu prompt + %llu generated tokens, session at %llu tokens\n",
                    (unsigned long long)st.n_prompt_tokens, (unsigned long long)st.n_generated_tokens,
                    (unsigned long long)chat.n_tokens());
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
