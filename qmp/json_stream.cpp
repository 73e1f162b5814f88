// JsonStream: lexer + streamer + parser (see json_stream.h). Called on the owning connection's
// thread only.
#include "qmp/json_stream.h"

#include <charconv>
#include <cstdlib>
#include <stdexcept>

namespace vmm::qmp {

namespace {

bool is_structural(unsigned char c) {
    return c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',';
}
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_hex(unsigned char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int hex_value(unsigned char c) {
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c - 'A' + 10;
}

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Length of the valid UTF-8 sequence at s[i] (strict: no overlongs, no surrogates, at most
// U+10FFFF), or 0 if it is not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = b(0);
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + len > s.size()) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        if ((b(k) & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (b(k) & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return len;
}

}  // namespace

// Recursive descent over one message's tokens (QEMU's json-parser.c grammar and messages).
// Depth is bounded by the streamer's nesting limit. The first error wins.
class JsonTokenParser {
public:
    using Token = JsonStream::Token;
    using TokenType = JsonStream::TokenType;

    explicit JsonTokenParser(const std::vector<Token>& tokens) : tokens_(tokens) {}

    JsonStream::Item parse() {
        JsonStream::Item item;
        Json v;
        if (parse_value(v) && error_.empty()) {
            item.value = std::move(v);
        } else {
            item.error = "JSON parse error, " + (error_.empty() ? "expecting value" : error_);
        }
        return item;
    }

private:
    const Token* pop() { return pos_ < tokens_.size() ? &tokens_[pos_++] : nullptr; }
    const Token* peek() const { return pos_ < tokens_.size() ? &tokens_[pos_] : nullptr; }
    bool fail(std::string message) {
        if (error_.empty()) error_ = std::move(message);
        return false;
    }

    bool parse_value(Json& out) {
        const Token* t = pop();
        if (!t) return fail("expecting value");
        switch (t->type) {
        case TokenType::lcurly: return parse_object(out);
        case TokenType::lsquare: return parse_array(out);
        case TokenType::string: {
            std::string s;
            if (!decode_string(t->text, s)) return false;
            out = std::move(s);
            return true;
        }
        case TokenType::integer: return parse_integer(t->text, out);
        case TokenType::floating: out = parse_double(t->text); return true;
        case TokenType::keyword:
            if (t->text == "true") out = true;
            else if (t->text == "false") out = false;
            else if (t->text == "null") out = nullptr;
            else return fail("invalid keyword '" + t->text + "'");
            return true;
        default: return fail("expecting value");
        }
    }

    bool parse_pair(Json& object) {
        Json key;
        if (!parse_value(key) || !key.is_string()) return fail("key is not a string in object");
        const Token* t = pop();
        if (!t) return fail("premature EOI");
        if (t->type != TokenType::colon) return fail("missing : in object pair");
        Json value;
        if (!parse_value(value)) return fail("Missing value in dict");
        const auto& k = key.get_ref<const std::string&>();
        if (object.contains(k)) return fail("duplicate key");
        object[k] = std::move(value);
        return true;
    }

    bool parse_object(Json& out) {
        out = Json::object();
        const Token* t = peek();
        if (!t) return fail("premature EOI");
        if (t->type == TokenType::rcurly) {
            ++pos_;
            return true;
        }
        if (!parse_pair(out)) return false;
        for (;;) {
            t = pop();
            if (!t) return fail("premature EOI");
            if (t->type == TokenType::rcurly) return true;
            if (t->type != TokenType::comma) return fail("expected separator in dict");
            if (!parse_pair(out)) return false;
        }
    }

    bool parse_array(Json& out) {
        out = Json::array();
        const Token* t = peek();
        if (!t) return fail("premature EOI");
        if (t->type == TokenType::rsquare) {
            ++pos_;
            return true;
        }
        for (;;) {
            Json element;
            if (!parse_value(element)) return fail("expecting value");
            out.push_back(std::move(element));
            t = pop();
            if (!t) return fail("premature EOI");
            if (t->type == TokenType::rsquare) return true;
            if (t->type != TokenType::comma) return fail("expected separator in list");
        }
    }

    bool parse_integer(const std::string& text, Json& out) {
        const char* first = text.data();
        const char* last = text.data() + text.size();
        std::int64_t i = 0;
        if (auto r = std::from_chars(first, last, i); r.ec == std::errc() && r.ptr == last) {
            out = i;
            return true;
        }
        std::uint64_t u = 0;
        if (text[0] != '-') {
            if (auto r = std::from_chars(first, last, u); r.ec == std::errc() && r.ptr == last) {
                out = u;
                return true;
            }
        }
        out = parse_double(text);  // too large for 64 bits: a double, as QEMU does
        return true;
    }

    static double parse_double(const std::string& text) {
        double d = 0;
        auto r = std::from_chars(text.data(), text.data() + text.size(), d);
        if (r.ec == std::errc()) return d;
        return std::strtod(text.c_str(), nullptr);  // out of range: ±HUGE_VAL or 0
    }

    // `text` is the whole token, quotes included; the lexer has already checked that escapes
    // are well-formed up to \u's digits and that there are no control characters.
    bool decode_string(const std::string& text, std::string& out) {
        const std::string_view s(text.data() + 1, text.size() - 2);
        for (std::size_t i = 0; i < s.size();) {
            const unsigned char c = static_cast<unsigned char>(s[i]);
            if (c != '\\') {
                const std::size_t n = utf8_sequence(s, i);
                if (n == 0) return fail("invalid UTF-8 sequence in string");
                out.append(s.substr(i, n));
                i += n;
                continue;
            }
            const char e = s[i + 1];
            switch (e) {
            case '"': out += '"'; break;
            case '\'': out += '\''; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                const std::size_t begin = i;
                std::uint32_t cp = 0;
                if (!read_u4(s, i + 2, cp)) return bad_codepoint(s, begin, i + 6);
                i += 6;
                if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < s.size() && s[i] == '\\' &&
                    s[i + 1] == 'u') {
                    std::uint32_t low = 0;
                    if (read_u4(s, i + 2, low) && low >= 0xDC00 && low <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        i += 6;
                    }
                }
                if (cp >= 0xD800 && cp <= 0xDFFF) return bad_codepoint(s, begin, i);
                if (cp == 0) return fail("\\u0000 is not supported");
                append_utf8(out, cp);
                continue;
            }
            default: return fail("invalid escape sequence in string");
            }
            i += 2;
        }
        return true;
    }

    static bool read_u4(std::string_view s, std::size_t at, std::uint32_t& cp) {
        if (at + 4 > s.size()) return false;
        cp = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const auto h = static_cast<unsigned char>(s[at + k]);
            if (!is_hex(h)) return false;
            cp = (cp << 4) | static_cast<std::uint32_t>(hex_value(h));
        }
        return true;
    }

    bool bad_codepoint(std::string_view s, std::size_t begin, std::size_t end) {
        end = std::min(end, s.size());
        return fail(std::string(s.substr(begin, end - begin)) +
                    " is not a valid Unicode character");
    }

    const std::vector<Token>& tokens_;
    std::size_t pos_ = 0;
    std::string error_;
};

JsonStream::JsonStream(JsonLimits limits) : limits_(limits) {}

std::vector<JsonStream::Item> JsonStream::feed(std::string_view bytes) {
    std::vector<Item> out;
    feed(bytes, out);
    return out;
}

void JsonStream::feed(std::string_view bytes, std::vector<Item>& out) {
    for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        while (!step(c, out)) {
        }
        // One token still being lexed counts against the message size too (a client that
        // sends an endless string must not grow our buffer without bound).
        if (message_bytes_ + token_.size() > limits_.max_message_bytes) {
            emit_error("JSON token size limit exceeded", out);
            reset_message();
            token_.clear();
            state_ = State::recovery;
        }
    }
}

void JsonStream::finish(std::vector<Item>& out) {
    switch (state_) {
    case State::zero:
    case State::integer: end_token(TokenType::integer, out); break;
    case State::fraction:
    case State::exp_digits: end_token(TokenType::floating, out); break;
    case State::keyword: end_token(TokenType::keyword, out); break;
    case State::start:
    case State::recovery: break;
    default: lex_error(out); break;
    }
    state_ = State::start;
    token_.clear();
    if (!tokens_.empty()) parse_pending(out);
}

bool JsonStream::step(unsigned char c, std::vector<Item>& out) {
    const auto take = [&](State next) {
        token_ += static_cast<char>(c);
        state_ = next;
        return true;
    };
    const auto error = [&] {
        token_ += static_cast<char>(c);
        lex_error(out);
        return true;
    };
    // Ends a number or keyword before `c`, which is then lexed again from `start`.
    const auto end_before = [&](TokenType type) {
        end_token(type, out);
        return false;
    };

    switch (state_) {
    case State::start:
        switch (c) {
        case ' ': case '\t': case '\r': case '\n': return true;
        case '{': token_ = "{"; end_token(TokenType::lcurly, out); return true;
        case '}': token_ = "}"; end_token(TokenType::rcurly, out); return true;
        case '[': token_ = "["; end_token(TokenType::lsquare, out); return true;
        case ']': token_ = "]"; end_token(TokenType::rsquare, out); return true;
        case ':': token_ = ":"; end_token(TokenType::colon, out); return true;
        case ',': token_ = ","; end_token(TokenType::comma, out); return true;
        case '"': return take(State::dq_string);
        case '\'': return take(State::sq_string);
        case '-': return take(State::minus);
        case '0': return take(State::zero);
        default:
            if (c >= '1' && c <= '9') return take(State::integer);
            if (c >= 'a' && c <= 'z') return take(State::keyword);
            return error();
        }
    case State::recovery:
        if ((c < 0x20 && c != '\t') || c >= 0xFE || is_structural(c)) {
            state_ = State::start;
            return false;
        }
        return true;
    case State::dq_string:
    case State::sq_string: {
        const bool dq = state_ == State::dq_string;
        if (c == (dq ? '"' : '\'')) {
            token_ += static_cast<char>(c);
            end_token(TokenType::string, out);
            return true;
        }
        if (c == '\\') return take(dq ? State::dq_escape : State::sq_escape);
        if (c < 0x20 || c >= 0xFE) return error();
        return take(state_);
    }
    case State::dq_escape:
    case State::sq_escape: {
        const State back = state_ == State::dq_escape ? State::dq_string : State::sq_string;
        switch (c) {
        case 'b': case 'f': case 'n': case 'r': case 't': case '/': case '\\': case '\'':
        case '"': case 'u':
            return take(back);
        default: return error();
        }
    }
    case State::minus:
        if (c == '0') return take(State::zero);
        if (c >= '1' && c <= '9') return take(State::integer);
        return error();
    case State::zero:
        if (c == '.') return take(State::dot);
        if (c == 'e' || c == 'E') return take(State::exp);
        if (is_digit(c)) return error();
        return end_before(TokenType::integer);
    case State::integer:
        if (is_digit(c)) return take(State::integer);
        if (c == '.') return take(State::dot);
        if (c == 'e' || c == 'E') return take(State::exp);
        return end_before(TokenType::integer);
    case State::dot:
        if (is_digit(c)) return take(State::fraction);
        return error();
    case State::fraction:
        if (is_digit(c)) return take(State::fraction);
        if (c == 'e' || c == 'E') return take(State::exp);
        return end_before(TokenType::floating);
    case State::exp:
        if (c == '+' || c == '-') return take(State::exp_sign);
        if (is_digit(c)) return take(State::exp_digits);
        return error();
    case State::exp_sign:
        if (is_digit(c)) return take(State::exp_digits);
        return error();
    case State::exp_digits:
        if (is_digit(c)) return take(State::exp_digits);
        return end_before(TokenType::floating);
    case State::keyword:
        if (c >= 'a' && c <= 'z') return take(State::keyword);
        return end_before(TokenType::keyword);
    }
    return true;
}

void JsonStream::end_token(TokenType type, std::vector<Item>& out) {
    std::string text = std::move(token_);
    token_.clear();
    state_ = State::start;
    switch (type) {
    case TokenType::lcurly: ++braces_; break;
    case TokenType::rcurly: --braces_; break;
    case TokenType::lsquare: ++brackets_; break;
    case TokenType::rsquare: --brackets_; break;
    default: break;
    }
    // As QEMU's json-streamer: bound memory and recursion per message.
    const char* limit_error = nullptr;
    if (message_bytes_ + text.size() + 1 > limits_.max_message_bytes) {
        limit_error = "JSON token size limit exceeded";
    } else if (tokens_.size() + 1 > limits_.max_tokens) {
        limit_error = "JSON token count limit exceeded";
    } else if (braces_ + brackets_ > limits_.max_nesting) {
        limit_error = "JSON nesting depth limit exceeded";
    }
    if (limit_error) {
        emit_error(limit_error, out);
        reset_message();
        return;
    }
    message_bytes_ += text.size() + 1;
    tokens_.push_back(Token{type, std::move(text)});
    if ((braces_ > 0 || brackets_ > 0) && braces_ >= 0 && brackets_ >= 0) return;
    parse_pending(out);
}

void JsonStream::lex_error(std::vector<Item>& out) {
    emit_error("JSON parse error, stray '" + token_ + "'", out);
    reset_message();
    token_.clear();
    state_ = State::recovery;
}

void JsonStream::emit_error(std::string message, std::vector<Item>& out) {
    Item item;
    item.error = std::move(message);
    out.push_back(std::move(item));
}

void JsonStream::reset_message() {
    tokens_.clear();
    message_bytes_ = 0;
    braces_ = 0;
    brackets_ = 0;
}

void JsonStream::parse_pending(std::vector<Item>& out) {
    out.push_back(JsonTokenParser(tokens_).parse());
    reset_message();
}

}  // namespace vmm::qmp
