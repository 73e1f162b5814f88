#include "jail/uid_range.h"

#include "common/error.h"

#include <charconv>

namespace vmm::jail {

namespace {

unsigned parse_uid(const std::string& text, const std::string& whole) {
    unsigned long long v = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc() || ptr != end)
        throw Error("uid range '" + whole + "': '" + text + "' is not a uid (FIRST-LAST, e.g. 100000-100999)");
    if (v == 0) throw Error("uid range '" + whole + "': uid 0 is root, not a jail identity");
    if (v >= 0xffffffffULL) throw Error("uid range '" + whole + "': " + text + " is above the largest uid (4294967294)");
    return static_cast<unsigned>(v);
}

}  // namespace

UidRange parse_uid_range(const std::string& text) {
    const auto dash = text.find('-');
    UidRange r;
    r.first = parse_uid(text.substr(0, dash), text);
    r.last = dash == std::string::npos ? r.first : parse_uid(text.substr(dash + 1), text);
    if (r.first > r.last)
        throw Error("uid range '" + text + "': the first uid is above the last");
    return r;
}

std::optional<unsigned> lowest_free_uid(const UidRange& range, const std::set<unsigned>& taken) {
    // `taken` is ordered: walk it from the range's start until a gap shows.
    unsigned candidate = range.first;
    for (auto it = taken.lower_bound(range.first); it != taken.end() && *it == candidate; ++it) {
        if (candidate == range.last) return std::nullopt;
        ++candidate;
    }
    return candidate;
}

}  // namespace vmm::jail
