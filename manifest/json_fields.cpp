#include "manifest/json_fields.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>

namespace vmm::manifest {

using nlohmann::json;

namespace {

// A non-negative JSON integer. Parsed text stores those as number_unsigned, but documents built
// in C++ (json{{"vcpus", 4}}) store them as number_integer; floats (2.0, 1e3) are neither.
std::optional<std::uint64_t> non_negative_integer(const json& value) {
    if (value.is_number_unsigned()) {
        return value.get<std::uint64_t>();
    }
    if (value.is_number_integer() && value.get<std::int64_t>() >= 0) {
        return static_cast<std::uint64_t>(value.get<std::int64_t>());
    }
    return std::nullopt;
}

}  // namespace

std::string describe(const json& value) {
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    constexpr std::size_t kMax = 60;
    if (text.size() > kMax) {
        text = text.substr(0, kMax) + "...";
    }
    return text;
}

std::string hex(std::uint64_t value) {
    char buf[2 + 16];
    const auto res = std::to_chars(buf, buf + sizeof buf, value, 16);
    return "0x" + std::string(buf, res.ptr);
}

std::string expect_string(const std::string& field, const json& value, std::string_view what) {
    if (!value.is_string()) {
        throw ManifestError(field, "must be a string (" + std::string(what) + "), got " +
                                       describe(value));
    }
    return value.get<std::string>();
}

bool expect_bool(const std::string& field, const json& value) {
    if (!value.is_boolean()) {
        throw ManifestError(field, "must be true or false, got " + describe(value));
    }
    return value.get<bool>();
}

std::string expect_enum(const std::string& field, const json& value,
                        std::initializer_list<std::string_view> accepted) {
    std::string list;
    for (std::string_view a : accepted) {
        list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
    }
    if (value.is_string()) {
        const auto& text = value.get_ref<const std::string&>();
        if (std::find(accepted.begin(), accepted.end(), text) != accepted.end()) {
            return text;
        }
    }
    throw ManifestError(field, "must be one of " + list + ", got " + describe(value));
}

std::uint64_t expect_integer(const std::string& field, const json& value, std::uint64_t min,
                             std::uint64_t max, std::string_view unit) {
    const std::optional<std::uint64_t> n = non_negative_integer(value);
    if (!n || *n < min || *n > max) {
        throw ManifestError(field, "must be an integer from " + std::to_string(min) + " to " +
                                       std::to_string(max) + std::string(unit) + ", got " +
                                       describe(value));
    }
    return *n;
}

std::uint64_t expect_address(const std::string& field, const json& value) {
    const auto fail = [&] {
        throw ManifestError(field, "must be an address: a non-negative integer below 2^64, a hex "
                                   "string like \"0x100000\" or a decimal string, got " +
                                       describe(value));
    };
    if (const auto n = non_negative_integer(value)) {
        return *n;
    }
    if (!value.is_string()) {
        fail();
    }
    std::string_view text = value.get_ref<const std::string&>();
    int base = 10;
    if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
        text.remove_prefix(2);
        base = 16;
    }
    // from_chars takes no sign, spaces or prefix, so "-1", " 1", "0x" and "0x-1" all fail.
    std::uint64_t result = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), result, base);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
        fail();
    }
    return result;
}

void reject_unknown_fields(const std::string& prefix, const json& object,
                           const std::vector<std::string_view>& known) {
    for (const auto& [key, unused] : object.items()) {
        if (std::find(known.begin(), known.end(), key) != known.end()) {
            continue;
        }
        std::string list;
        for (std::string_view k : known) {
            list += (list.empty() ? "" : ", ") + std::string(k);
        }
        throw ManifestError(prefix.empty() ? key : prefix + "." + key,
                            "unknown field; known fields" +
                                (prefix.empty() ? std::string() : " of \"" + prefix + "\"") +
                                " are: " + list);
    }
}

namespace {

// Tracks where the parser is, as a field path ("flat.mode", "disks[1].path"), to reject
// duplicate keys by name.
class DuplicateKeyCheck {
public:
    bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
        switch (event) {
        case json::parse_event_t::object_start:
            frames_.push_back({true, {}, {}, 0});
            break;
        case json::parse_event_t::array_start:
            frames_.push_back({false, {}, {}, 0});
            break;
        case json::parse_event_t::key: {
            Frame& top = frames_.back();
            top.key = parsed.get<std::string>();
            if (!top.keys.insert(top.key).second) {
                throw ManifestError(path(), "appears twice in the same object; give each "
                                            "field once");
            }
            break;
        }
        case json::parse_event_t::object_end:
        case json::parse_event_t::array_end:
            frames_.pop_back();
            element_done();
            break;
        case json::parse_event_t::value:
            element_done();
            break;
        }
        return true;
    }

private:
    struct Frame {
        bool object;
        std::set<std::string> keys;
        std::string key;
        std::size_t count;  // arrays: elements completed so far = index of the current one
    };

    void element_done() {
        if (!frames_.empty() && !frames_.back().object) {
            ++frames_.back().count;
        }
    }

    std::string path() const {
        std::string p;
        for (const Frame& f : frames_) {
            if (f.object) {
                p += (p.empty() ? "" : ".") + f.key;
            } else {
                p += "[" + std::to_string(f.count) + "]";
            }
        }
        return p;
    }

    std::vector<Frame> frames_;
};

}  // namespace

json parse_json_text(const std::string& text, const std::string& source) {
    try {
        // The callback sees every event; the parsed document is kept whole.
        return json::parse(text, DuplicateKeyCheck{}, /*allow_exceptions=*/true,
                           /*ignore_comments=*/false);
    } catch (const json::parse_error& e) {
        // e.byte is the 1-based offset of the character that failed (Unicode-unaware).
        const std::size_t upto = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
        const std::size_t line = 1 + std::count(text.begin(), text.begin() + upto, '\n');
        const std::size_t line_start = text.rfind('\n', upto == 0 ? 0 : upto - 1);
        const std::size_t column =
            upto - (line_start == std::string::npos || upto == 0 ? 0 : line_start + 1) + 1;
        // Keep the parser's explanation, without its "[json.exception...] parse error at ...:"
        // prefix (which repeats the position).
        std::string message = e.what();
        if (const auto pos = message.find("] "); pos != std::string::npos) {
            message.erase(0, pos + 2);
        }
        if (message.rfind("parse error", 0) == 0) {
            if (const auto pos = message.find(": "); pos != std::string::npos) {
                message.erase(0, pos + 2);
            }
        }
        // "last read: '...'" may quote raw bytes of a non-UTF-8 file: keep the message printable.
        std::string printable;
        for (const char c : message) {
            const auto byte = static_cast<unsigned char>(c);
            if (byte >= 0x80 || byte < 0x20) {
                printable += "\\x" + hex(byte).substr(2);
            } else {
                printable += c;
            }
        }
        throw ManifestError("", "\"" + source + "\" is not valid JSON: line " +
                                    std::to_string(line) + ", column " + std::to_string(column) +
                                    " (byte " + std::to_string(e.byte) + "): " + printable);
    } catch (const json::exception& e) {
        // Valid syntax the parser still cannot hold, e.g. a number too large for a double
        // ("1e400": out_of_range 406).
        std::string message = e.what();
        if (const auto pos = message.find("] "); pos != std::string::npos) message.erase(0, pos + 2);
        throw ManifestError("", "\"" + source + "\" is not valid JSON: " + message);
    }
}

}  // namespace vmm::manifest
