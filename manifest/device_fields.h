// Parsers for the manifest's device lists (disks, nics, consoles, pci): each entry is checked
// and every error names its field as "disks[1].path". Pure apart from checking that disk
// paths exist; thread-safe.
#pragma once

#include "manifest/domain_manifest.h"

#include <filesystem>
#include <nlohmann/json.hpp>

namespace vmm::manifest {

std::vector<DiskSpec> parse_disks(const std::string& field, const nlohmann::json& value,
                                  const std::filesystem::path& base_dir);
std::vector<NicSpec> parse_nics(const std::string& field, const nlohmann::json& value);
std::vector<ConsoleSpec> parse_consoles(const std::string& field, const nlohmann::json& value,
                                        const std::filesystem::path& base_dir);
std::vector<PciSpec> parse_pci(const std::string& field, const nlohmann::json& value);

nlohmann::json to_json(const DiskSpec& d);
nlohmann::json to_json(const NicSpec& n);
nlohmann::json to_json(const ConsoleSpec& c);
nlohmann::json to_json(const PciSpec& p);

// Checks and resolves a path that must name an existing regular file or block device.
std::string resolve_existing_file(const std::string& field, const nlohmann::json& value,
                                  const std::filesystem::path& base_dir);

}  // namespace vmm::manifest
