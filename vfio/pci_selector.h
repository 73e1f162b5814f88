// PciSelector: how a domain manifest names a host PCI function to pass through, by address or,
// as L4Re's io server does, by vendor/device ID and the index among the matches (in address
// order), which survives slot changes on identical hardware:
//
//   "pci": [ {"bdf": "0000:03:00.0"}, {"vendor": "1d0f", "device": "0065", "index": 0} ]
//
// parse_pci_selector() validates one entry (called by the manifest parser, any thread);
// resolve_pci_selector() finds the device in a topology snapshot (vmmd / anchor at start-up).
#pragma once

#include "common/error.h"
#include "vfio/pci_topology.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace vmm::vfio {

struct PciSelector {
    std::optional<std::string> bdf;  // normalized; when set, vendor/device/index are unused
    std::uint16_t vendor = 0, device = 0;
    unsigned index = 0;

    // "0000:03:00.0" or "1d0f:0065 #0", for messages.
    std::string to_string() const;
    bool operator==(const PciSelector&) const = default;
};

// `field` is the full JSON path of the offending field (e.g. "pci[1].vendor"), `problem` the
// rest; what() is `field "<field>": <problem>`, in the manifest's style.
struct PciSelectorError : vmm::Error {
    PciSelectorError(std::string field, const std::string& problem);
    std::string field;
    std::string problem;
};

// `where` is the entry's own path ("pci[1]"), prefixed to field names in errors. Unknown keys,
// both or neither of bdf and vendor/device, bad hex, vendor ffff and negative or non-integer
// index are errors. vendor/device are 4 hex digits, with or without "0x".
PciSelector parse_pci_selector(const nlohmann::json& entry, const std::string& where = "pci[0]");
nlohmann::json to_json(const PciSelector& selector);

// The BDF of the selected device. Throws vmm::Error naming the selector when nothing matches
// (with how many devices did match, for an index out of range).
std::string resolve_pci_selector(const PciTopology& topology, const PciSelector& selector);

}  // namespace vmm::vfio
