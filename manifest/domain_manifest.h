// DomainManifest: the JSON document that describes one domain (VM), parsed and validated.
//
// Called by vmmd when a domain is defined or started (API thread) and by vmm-anchor at start-up
// (main thread). Pure apart from load_manifest_file reading the file and parse_manifest checking
// that kernel/initrd exist; no state, thread-safe.
//
// Every violation throws ManifestError naming the field (a JSON path such as "vcpus",
// "flat.mode" or "disks[1].path"), what is wrong and what is accepted, so the message can be
// shown to the user unchanged.
//
// Fields are handled by a table in domain_manifest.cpp (kFields): adding a field is one entry
// with its parser and its to_json writer.
#pragma once

#include "common/error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmm {

struct ManifestError : vmm::Error {
    // what(): `manifest field "<field>": <problem>`, or `manifest: <problem>` when field is
    // empty (the document as a whole, e.g. not an object or a JSON syntax error).
    ManifestError(std::string field, const std::string& problem);
    std::string field;
};

// Start in a given CPU mode at `entry` with a raw image loaded at `load_address` (test guests,
// firmware). No boot protocol.
struct FlatBootSpec {
    std::uint64_t load_address = 0;
    std::uint64_t entry = 0;
    std::string mode;  // "real16" | "protected32" | "long64"
    bool operator==(const FlatBootSpec&) const = default;
};

// A virtio-blk disk. `path` is a regular file or a block device; with `partuuid` the guest
// sees only that GPT partition of it (the window is found when the anchor opens the disk).
struct DiskSpec {
    std::string path;  // absolute
    bool readonly = false;
    std::string partuuid;  // "" or a canonical lower-case UUID
    std::string serial;    // VIRTIO_BLK_T_GET_ID answer, at most 20 bytes ("" = derived from the path)
    bool operator==(const DiskSpec&) const = default;
};

// A virtio-net NIC on a host tap device.
struct NicSpec {
    std::string tap;  // interface name (at most 15 characters)
    std::string mac;  // "52:54:00:12:34:56" (lower case); "" = derived from the domain name
    bool operator==(const NicSpec&) const = default;
};

// A virtio-console device's port 0 and its backend.
struct ConsoleSpec {
    std::string kind = "pty";  // "pty" | "socket" (a unix socket the anchor listens on)
    std::string path;          // socket path (kind "socket")
    // "" : the port is the guest's console (hvc). A name (e.g. "org.qemu.guest_agent.0"): a
    // named port (virtio MULTIPORT, as QEMU's virtserialport), /dev/virtio-ports/<name> in the guest.
    std::string name;
    bool operator==(const ConsoleSpec&) const = default;
};

// A host PCI device to pass through with VFIO: by address or (as L4Re's io) by IDs + index.
struct PciSpec {
    std::string bdf;             // "0000:03:00.0" (normalised), or "" when chosen by IDs
    std::uint16_t vendor = 0;    // with device: the index-th device with these IDs
    std::uint16_t device = 0;
    unsigned index = 0;
    bool operator==(const PciSpec&) const = default;
};

struct DomainManifest {
    std::string name;
    std::string hypervisor = "kvm";  // "kvm" | "xen" | "null"
    unsigned vcpus = 1;
    std::uint64_t memory_mb = 128;
    std::string kernel, initrd, cmdline;  // kernel/initrd: absolute (resolved) paths
    std::optional<FlatBootSpec> flat;
    bool hide_hypervisor = false, hugepages = false, start_paused = false;
    bool thp = true;  // guest RAM in transparent huge pages where the host has them
    std::string on_poweroff = "exit";  // "exit" | "pause"
    std::string on_reboot = "exit";    // "exit" | "restart"
    std::string on_crash = "exit";     // "exit" | "pause" (run-state internal-error / guest-panicked until quit)
    // CPU time the domain may use, in CPUs' worth (1.5 = one and a half CPUs): the cpu.max of the
    // anchor's cgroup when vmmd places anchors in cgroups (jail/cgroup.h), xl's `cap` on xen.
    // nullopt: no limit.
    std::optional<double> cpu_quota;
    // "jail": {"uid": N, "gid": M}: this domain's anchor runs in its file-system jail as uid N,
    // gid M (default N), whether or not vmmd jails every anchor (docs/SECURITY.md, "The mount
    // jail"). The controller picks a uid per domain and makes the domain's files open to it.
    struct JailIdentitySpec {
        unsigned uid = 0, gid = 0;
        bool operator==(const JailIdentitySpec&) const = default;
    };
    std::optional<JailIdentitySpec> jail;
    std::vector<DiskSpec> disks;
    std::vector<NicSpec> nics;
    std::vector<ConsoleSpec> consoles;
    std::vector<PciSpec> pci;
    nlohmann::json raw;                // the document as given
};

// Limits, exported for tests and for messages elsewhere.
// 64 vCPUs is the largest guest we test (topology, CPUID normalisation, ACPI MADT). KVM's own
// limit (KVM_CAP_MAX_VCPUS, often 1024 or more) is checked by the anchor at run time.
inline constexpr unsigned kMaxVcpus = 64;
inline constexpr std::uint64_t kMinMemoryMb = 2;
inline constexpr std::uint64_t kMaxMemoryMb = std::uint64_t{1} << 20;  // 1 TiB
// cpu_quota: the kernel's smallest cpu.max quota is 1 ms per 100 ms period (0.01 CPUs). The
// anchor's I/O threads share the quota with the vCPUs, so it may exceed `vcpus`, up to the
// largest guest's vCPU count.
inline constexpr double kMinCpuQuota = 0.01;
inline constexpr double kMaxCpuQuota = kMaxVcpus;
inline constexpr std::size_t kMaxNameLength = 64;
// Linux's COMMAND_LINE_SIZE on x86 is 2048 (older kernels) or 4096 including the NUL; the
// boot protocol's cmdline_size says what a given kernel accepts, checked at load time.
inline constexpr std::size_t kMaxCmdlineLength = 4095;
// Devices per kind: 31 PCI slots on bus 0, one for the host bridge.
inline constexpr std::size_t kMaxDisks = 16, kMaxNics = 8, kMaxConsoles = 4, kMaxPciDevices = 8;

// "0000:03:00.0" from "0000:03:00.0" or "03:00.0" (any case); throws ManifestError(field).
std::string normalize_bdf(const std::string& field, const std::string& text);

// Validates and converts `doc`. Relative kernel/initrd paths resolve against `base_dir`; the
// result holds absolute paths. The files must exist (regular file or block device).
DomainManifest parse_manifest(const nlohmann::json& doc, const std::string& base_dir);

// Reads the file and parses it; relative paths resolve against the file's directory. Errors
// (missing file, JSON syntax with line/column, duplicate keys, field rules) are ManifestError.
DomainManifest load_manifest_file(const std::string& path);

// 1..64 characters of [A-Za-z0-9._-], not starting with '-' or '.': names become file and
// directory names (run/<name>/) and command-line arguments. Throws ManifestError("name").
void validate_domain_name(const std::string& name);

// The manifest as a document parse_manifest accepts and that yields an equal DomainManifest
// (with absolute paths, so base_dir no longer matters). Optional fields that are unset
// (initrd, cmdline, flat) are left out; the others are written even when default.
nlohmann::json to_json(const DomainManifest& manifest);

}  // namespace vmm
