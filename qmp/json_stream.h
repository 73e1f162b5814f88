// JsonStream: an incremental JSON splitter/parser for QMP, modelled on QEMU's json-lexer,
// json-streamer and json-parser (docs/interop/qmp-spec: "the server ... parses its input as a
// stream of JSON values"). Bytes go in as they arrive; complete top-level values (or parse
// errors) come out in order. A message may arrive in pieces and several may arrive at once.
//
// QEMU-compatible behaviour kept on purpose:
//  - a top-level value is complete when its braces/brackets balance (a bare scalar is a value
//    on its own, which the QMP layer then rejects as "must be a JSON object");
//  - QEMU's extensions: 'single-quoted' strings and the \' escape;
//  - after a lexical error ("stray '...'") the lexer skips input up to a structural character
//    ({ } [ ] : ,), an ASCII control character other than TAB, or the bytes 0xFE/0xFF, which a
//    client may send to force a resync (qmp-spec, "Forcing the JSON parser into known-good
//    state"); after a parse error the pending tokens are dropped;
//  - the limits on message size, token count and nesting depth, reported as QEMU does.
// Error strings are QEMU's ("JSON parse error, ..."); the QMP layer sends them as GenericError.
//
// Not thread-safe: one instance per connection, used by that connection's thread.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::qmp {

// Insertion-ordered, so replies keep the member order QEMU uses and ids echo unchanged.
using Json = nlohmann::ordered_json;

struct JsonLimits {
    // Bytes of one message (all its tokens, including one long token still being lexed).
    std::size_t max_message_bytes = 1u << 20;
    std::size_t max_tokens = 1u << 17;
    int max_nesting = 1024;  // QEMU's MAX_NESTING
};

class JsonStream {
public:
    // Exactly one of value / error is set.
    struct Item {
        std::optional<Json> value;
        std::string error;
        bool ok() const { return value.has_value(); }
    };

    explicit JsonStream(JsonLimits limits = {});

    // Appends every value or error completed by `bytes` to `out`.
    void feed(std::string_view bytes, std::vector<Item>& out);
    std::vector<Item> feed(std::string_view bytes);
    // End of input: a pending scalar or unbalanced message is parsed (QEMU's flush).
    void finish(std::vector<Item>& out);

    // Bytes held for the message in progress (tokens + the token being lexed).
    std::size_t pending_bytes() const { return message_bytes_ + token_.size(); }

private:
    enum class State : std::uint8_t {
        start, recovery, dq_string, dq_escape, sq_string, sq_escape, minus, zero, integer,
        dot, fraction, exp, exp_sign, exp_digits, keyword,
    };
    enum class TokenType : std::uint8_t {
        lcurly, rcurly, lsquare, rsquare, colon, comma, string, integer, floating, keyword,
    };
    struct Token {
        TokenType type;
        std::string text;
    };

    // Consumes `c` in the current state; returns false if it must be re-fed from `start`
    // (the one-character lookahead that ends numbers and keywords).
    bool step(unsigned char c, std::vector<Item>& out);
    void end_token(TokenType type, std::vector<Item>& out);
    void lex_error(std::vector<Item>& out);
    void emit_error(std::string message, std::vector<Item>& out);
    void reset_message();
    void parse_pending(std::vector<Item>& out);

    JsonLimits limits_;
    State state_ = State::start;
    std::string token_;
    std::vector<Token> tokens_;
    std::size_t message_bytes_ = 0;
    int braces_ = 0;
    int brackets_ = 0;

    friend class JsonTokenParser;
};

}  // namespace vmm::qmp
