// UidRange: the uids vmmd hands to jailed anchors, one per running kvm domain
// (vmmd --jail-uids FIRST-LAST, docs/SECURITY.md "One uid per domain").
#pragma once

#include <optional>
#include <set>
#include <string>

namespace vmm::jail {

struct UidRange {
    unsigned first = 0, last = 0;  // inclusive
    bool contains(unsigned uid) const { return uid >= first && uid <= last; }
    unsigned long size() const { return static_cast<unsigned long>(last) - first + 1; }
    std::string text() const { return std::to_string(first) + "-" + std::to_string(last); }
    bool operator==(const UidRange&) const = default;
};

// "FIRST-LAST" (or a lone "UID"); throws vmm::Error naming what is wrong: not numbers, FIRST
// above LAST, uid 0 (root is no jail identity) or 4294967295 ((uid_t)-1, "unchanged" to
// setresuid).
UidRange parse_uid_range(const std::string& text);

// The lowest uid of `range` not in `taken`; nullopt when every one is taken.
std::optional<unsigned> lowest_free_uid(const UidRange& range, const std::set<unsigned>& taken);

}  // namespace vmm::jail
