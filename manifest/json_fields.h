// Typed accessors for manifest fields: each checks the JSON type and range and throws
// ManifestError naming the field, the problem and what is accepted. Used by the field table in
// domain_manifest.cpp and by future sub-objects (disks[i], nics[i], ...). Pure, thread-safe.
#pragma once

#include "manifest/domain_manifest.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::manifest {

// A value for an error message: JSON text, strings quoted, truncated to ~60 characters,
// invalid UTF-8 replaced, so whatever the user wrote is shown safely.
std::string describe(const nlohmann::json& value);
// "0x1000"
std::string hex(std::uint64_t value);

// `what` names the expected content in the message ("a file path").
std::string expect_string(const std::string& field, const nlohmann::json& value,
                          std::string_view what);
bool expect_bool(const std::string& field, const nlohmann::json& value);
// One of `accepted`; the message lists them.
std::string expect_enum(const std::string& field, const nlohmann::json& value,
                        std::initializer_list<std::string_view> accepted);
// A JSON integer in [min, max]: floats (even 2.0), negative numbers, strings and booleans are
// rejected. `unit` is appended to the range in the message (" (MiB)").
std::uint64_t expect_integer(const std::string& field, const nlohmann::json& value,
                             std::uint64_t min, std::uint64_t max, std::string_view unit);
// A 64-bit address: a non-negative JSON integer, a hex string "0x1000" or a decimal string
// "4096". No sign, no spaces, no overflow.
std::uint64_t expect_address(const std::string& field, const nlohmann::json& value);

// Throws for the first member of `object` not in `known`, naming it as "<prefix>.<key>" (or
// "<key>" at the top level) and listing the known fields.
void reject_unknown_fields(const std::string& prefix, const nlohmann::json& object,
                           const std::vector<std::string_view>& known);

// Parses JSON text. Syntax errors give `source`, line, column and byte offset and the parser's
// message; a key repeated in one object is an error (nlohmann would silently keep the last).
nlohmann::json parse_json_text(const std::string& text, const std::string& source);

}  // namespace vmm::manifest
