// Fuzzes the domain manifest parser (manifest/domain_manifest.h) with the file's text: JSON
// syntax and duplicate keys (parse_json_text, as load_manifest_file does), then every field rule
// (parse_manifest). A ManifestError is the expected answer to bad input; anything else escaping
// is a bug. An accepted manifest must round-trip: to_json is documented to yield a document
// parse_manifest accepts and that gives the same manifest back.
//
// The files a manifest names must exist: LLVMFuzzerInitialize creates a base directory holding
// the names the seeds use (kernel, initrd, disk.img), so inputs get past the path checks.
#include "common/error.h"
#include "manifest/domain_manifest.h"
#include "manifest/json_fields.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace {

std::string g_base_dir;

[[noreturn]] void fail(const char* what, const std::string& detail) {
    std::fprintf(stderr, "manifest_fuzz: %s: %s\n", what, detail.c_str());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const auto dir = std::filesystem::temp_directory_path() / ("vmm-manifest-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    for (const char* name : {"kernel", "initrd", "disk.img", "disk2.img"}) {
        std::ofstream(dir / name) << "x";
    }
    g_base_dir = dir.string();
    // The directory is small and per-process; removing it at exit would race with forks of -jobs.
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    vmm::DomainManifest manifest;
    try {
        const nlohmann::json doc = vmm::manifest::parse_json_text(text, "fuzz.json");
        manifest = vmm::parse_manifest(doc, g_base_dir);
    } catch (const vmm::ManifestError&) {
        return 0;
    }

    const nlohmann::json written = vmm::to_json(manifest);
    nlohmann::json rewritten;
    try {
        rewritten = vmm::to_json(vmm::parse_manifest(written, g_base_dir));
    } catch (const vmm::ManifestError& e) {
        fail("to_json output rejected", std::string(e.what()) + "\n" + written.dump());
    }
    if (rewritten != written) {
        fail("round trip changed the manifest", written.dump() + "\n" + rewritten.dump());
    }
    return 0;
}
