// The xen hypervisor: the xl config written from a manifest, field by field, and the xl calls
// made for a domain's life, against a fake `xl` on PATH that records its calls (no Xen here).
#include "hypervisor/xen/xen_hypervisor.h"
#include "hypervisor/xen/xl_config.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace vmm::hv::xen {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// "key = value" lines of an xl config.
std::map<std::string, std::string> parse_cfg(const std::string& text) {
    std::map<std::string, std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        const auto eq = line.find(" = ");
        EXPECT_NE(eq, std::string::npos) << line;
        out[line.substr(0, eq)] = line.substr(eq + 3);
    }
    return out;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

class XenTest : public ::testing::Test {
protected:
    void SetUp() override {
        kernel_ = root_ + "/vmlinuz";
        std::ofstream(kernel_) << "kernel";
        std::ofstream(root_ + "/initrd.img") << "initrd";
    }
    void TearDown() override {
        if (!old_path_.empty()) ::setenv("PATH", old_path_.c_str(), 1);
        fs::remove_all(root_);
    }
    DomainManifest manifest(nlohmann::json extra = nlohmann::json::object()) {
        nlohmann::json doc = {{"name", "web"}, {"hypervisor", "xen"}, {"vcpus", 2}, {"memory_mb", 256}, {"kernel", kernel_}};
        doc.update(extra);
        return parse_manifest(doc, root_);
    }
    // A fake xl on PATH: appends its arguments to calls.log; keeps domains as files in doms/
    // (create -> "r-----", pause/unpause, shutdown/destroy remove; a file "ignore-shutdown"
    // makes shutdown a no-op); list prints them as xl does.
    void install_fake_xl() {
        const std::string bin = root_ + "/bin";
        fs::create_directories(bin);
        fs::create_directories(root_ + "/doms");
        const std::string script = R"(#!/bin/bash
S=")" + root_ + R"SH("
echo "$*" >> "$S/calls.log"
cmd=$1; shift
case "$cmd" in
  create) [ "$1" = -p ] && { st="--p---"; shift; } || st="r-----"
          cp "$1" "$S/created.cfg"
          n=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$1"); echo "$st" > "$S/doms/$n" ;;
  domid) echo 7 ;;
  list) printf 'Name                                        ID   Mem VCPUs\tState\tTime(s)\n'
        printf 'Domain-0                                     0  1024     2     r-----      12.5\n'
        for f in "$S"/doms/*; do [ -e "$f" ] || continue
          printf '%-40s %5d %5d %5d     %s %9.1f\n' "$(basename "$f")" 7 256 2 "$(cat "$f")" 3.5; done ;;
  shutdown) [ -e "$S/ignore-shutdown" ] || rm -f "$S/doms/$1" ;;
  destroy) rm -f "$S/doms/$1" ;;
  pause) echo "--p---" > "$S/doms/$1" ;;
  unpause) echo "r-----" > "$S/doms/$1" ;;
  pci-assignable-add|pci-assignable-remove) ;;
  *) echo "fake xl: unknown command $cmd" >&2; exit 1 ;;
esac
)SH";
        std::ofstream(bin + "/xl") << script;
        ::chmod((bin + "/xl").c_str(), 0755);
        old_path_ = std::getenv("PATH") ? std::getenv("PATH") : "";
        ::setenv("PATH", (bin + ":" + old_path_).c_str(), 1);
    }
    std::vector<std::string> calls() {
        std::vector<std::string> out;
        std::istringstream in(read_file(root_ + "/calls.log"));
        std::string line;
        while (std::getline(in, line)) out.push_back(line);
        return out;
    }
    // Runs the io_context until `pred` or 5 s.
    template <typename Pred> bool run_until(Pred pred) {
        for (int i = 0; i < 500 && !pred(); ++i) {
            io_.restart();
            io_.run_for(std::chrono::milliseconds(10));
        }
        return pred();
    }

    std::string root_ = test::make_temp_dir("hvxen");
    std::string kernel_, old_path_;
    boost::asio::io_context io_;
};

TEST_F(XenTest, ConfigCarriesEveryManifestFieldXlNeeds) {
    const auto m = manifest({{"initrd", "initrd.img"}, {"cmdline", "console=hvc0 root=\"/dev/xvda\""},
                             {"on_poweroff", "pause"}, {"on_reboot", "restart"}});
    const auto cfg = parse_cfg(make_xl_config(m));
    EXPECT_EQ(cfg.at("name"), "\"web\"");
    EXPECT_EQ(cfg.at("type"), "\"pvh\"");
    EXPECT_EQ(cfg.at("memory"), "256");
    EXPECT_EQ(cfg.at("maxmem"), "256");
    EXPECT_EQ(cfg.at("vcpus"), "2");
    EXPECT_EQ(cfg.at("kernel"), "\"" + fs::canonical(kernel_).string() + "\"");
    EXPECT_EQ(cfg.at("ramdisk"), "\"" + fs::canonical(root_ + "/initrd.img").string() + "\"");
    EXPECT_EQ(cfg.at("cmdline"), R"("console=hvc0 root=\"/dev/xvda\"")") << "quotes are escaped";
    EXPECT_EQ(cfg.at("on_poweroff"), "\"preserve\"");
    EXPECT_EQ(cfg.at("on_reboot"), "\"restart\"");
    EXPECT_EQ(cfg.at("on_crash"), "\"preserve\"");
    EXPECT_EQ(cfg.count("disk"), 0u);
    EXPECT_EQ(cfg.count("pci"), 0u);
}

TEST_F(XenTest, DefaultsDestroyOnPowerOffAndRebootAndLeaveOutOptionalFields) {
    const auto cfg = parse_cfg(make_xl_config(manifest()));
    EXPECT_EQ(cfg.at("on_poweroff"), "\"destroy\"");
    EXPECT_EQ(cfg.at("on_reboot"), "\"destroy\"");
    EXPECT_EQ(cfg.count("ramdisk"), 0u);
    EXPECT_EQ(cfg.count("cmdline"), 0u);
    EXPECT_EQ(cfg.count("cap"), 0u) << "no cpu_quota: no cap";
    EXPECT_EQ(parse_cfg(make_xl_config(manifest({{"cpu_quota", 1.5}}))).at("cap"), "150") << "percent of one CPU";
}

TEST_F(XenTest, WhatXenCannotDoNamesTheField) {
    std::ofstream(root_ + "/flat.bin") << "x";
    try {
        make_xl_config(parse_manifest({{"name", "f"}, {"kernel", "flat.bin"},
                                       {"flat", {{"load_address", "0x100000"}, {"mode", "protected32"}}}}, root_));
        FAIL() << "a flat binary cannot boot on xen";
    } catch (const ManifestError& e) {
        EXPECT_EQ(e.field, "flat");
    }
    try {
        make_xl_config(manifest({{"hide_hypervisor", true}}));
        FAIL();
    } catch (const ManifestError& e) {
        EXPECT_EQ(e.field, "hide_hypervisor");
    }
    try {
        make_xl_config(manifest({{"jail", {{"uid", 20001}}}}));
        FAIL() << "a kvm anchor's jail identity was taken for a xen domain";
    } catch (const ManifestError& e) {
        EXPECT_EQ(e.field, "jail");
    }
}

TEST_F(XenTest, ParsesXlList) {
    const auto doms = parse_xl_list("Name  ID   Mem VCPUs\tState\tTime(s)\n"
                                    "Domain-0   0  1024  2  r-----  12.5\n"
                                    "web        7   256  2  --p---   3.5\n");
    ASSERT_EQ(doms.size(), 2u);
    EXPECT_EQ(doms[1].name, "web");
    EXPECT_EQ(doms[1].domid, 7);
    EXPECT_EQ(doms[1].memory_mb, 256u);
    EXPECT_EQ(doms[1].vcpus, 2u);
    EXPECT_EQ(doms[1].state, "--p---");
    EXPECT_DOUBLE_EQ(doms[1].cpu_seconds, 3.5);
}

TEST_F(XenTest, DrivesXlThroughADomainsLife) {
    install_fake_xl();
    XenHypervisor xen(io_, {"xl", root_ + "/run", std::chrono::milliseconds(10000)});
    std::vector<DomainEvent> events;
    xen.set_event_sink([&](const DomainEvent& e) { events.push_back(e); });

    const auto m = manifest();
    xen.setup(m);
    EXPECT_EQ(read_file(xen.config_file("web")), make_xl_config(m));
    xen.start("web");
    ASSERT_TRUE(run_until([&] { return !events.empty(); }));
    EXPECT_EQ(events[0].kind, DomainEvent::Kind::Running);
    EXPECT_EQ(events[0].pid, 7) << "the domid";
    EXPECT_EQ(read_file(root_ + "/created.cfg"), make_xl_config(m)) << "xl create got the generated config";

    const DomainUsage u = xen.usage("web");
    EXPECT_EQ(u.cpu_total_ns, 3500000000u);
    EXPECT_EQ(u.used_memory_mb, 256u);

    xen.pause("web");
    EXPECT_TRUE(xen.info("web").paused);
    xen.resume("web");
    xen.pci_reserve("0000:03:00.0");
    EXPECT_THROW(xen.pci_reserve("0000:03:00.0"), Error);
    xen.pci_release("0000:03:00.0");

    xen.stop("web", {false, std::chrono::milliseconds(5000)});
    ASSERT_TRUE(run_until([&] { return events.size() == 2; }));
    EXPECT_EQ(events[1].kind, DomainEvent::Kind::Exited);
    EXPECT_FALSE(events[1].exit.crashed);

    const std::string cfg = xen.config_file("web");
    EXPECT_THAT(calls(), ElementsAre("create " + cfg, "domid web", "list web", "pause web", "unpause web",
                                     "pci-assignable-add 0000:03:00.0", "pci-assignable-remove 0000:03:00.0",
                                     "shutdown web", "list"));
}

TEST_F(XenTest, ShutdownIgnoredIsFollowedByDestroyAfterTheTimeout) {
    install_fake_xl();
    std::ofstream(root_ + "/ignore-shutdown") << "";
    XenHypervisor xen(io_, {"xl", root_ + "/run", std::chrono::milliseconds(20)});
    std::vector<DomainEvent> events;
    xen.set_event_sink([&](const DomainEvent& e) { events.push_back(e); });
    xen.setup(manifest({{"start_paused", true}}));
    xen.start("web");
    xen.stop("web", {false, std::chrono::milliseconds(100)});
    ASSERT_TRUE(run_until([&] { return events.size() == 2; }));
    const auto c = calls();
    EXPECT_EQ(c.front(), "create -p " + xen.config_file("web")) << "start_paused creates it paused";
    EXPECT_NE(std::find(c.begin(), c.end(), "shutdown web"), c.end());
    EXPECT_NE(std::find(c.begin(), c.end(), "destroy web"), c.end());
}

TEST_F(XenTest, AdoptsItsOwnRunningDomains) {
    install_fake_xl();
    {
        XenHypervisor xen(io_, {"xl", root_ + "/run", std::chrono::milliseconds(20)});
        xen.setup(manifest());
        xen.start("web");
    }
    XenHypervisor again(io_, {"xl", root_ + "/run", std::chrono::milliseconds(20)});
    const auto found = again.adopt();
    ASSERT_EQ(found.size(), 1u) << "Domain-0 is not adopted, web is";
    EXPECT_EQ(found[0].manifest.name, "web");
    EXPECT_EQ(found[0].manifest.memory_mb, 256u);
}

}  // namespace
}  // namespace vmm::hv::xen
