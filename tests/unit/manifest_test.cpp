// DomainManifest parsing: every rule broken once, path resolution, file errors, round trip.
#include "manifest/domain_manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace vmm {
namespace {

using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class ManifestTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/manifest_test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        write("vmlinuz", "kernel");
        write("initrd.img", "initrd");
        std::filesystem::create_directory(dir_ / "boot");
        write("boot/guest.bin", "\xf4");
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string write(const std::string& rel, const std::string& content) {
        const auto path = dir_ / rel;
        std::ofstream(path, std::ios::binary) << content;
        return path.string();
    }
    std::string path(const std::string& rel) const { return (dir_ / rel).string(); }

    json minimal() const { return {{"name", "vm1"}, {"kernel", path("vmlinuz")}}; }
    json with(const std::string& key, const json& value) const {
        json doc = minimal();
        doc[key] = value;
        return doc;
    }

    // Parses `doc`, expects a ManifestError for `field` and returns its message.
    std::string error_of(const json& doc, const std::string& field) {
        try {
            parse_manifest(doc, dir_.string());
        } catch (const ManifestError& e) {
            EXPECT_EQ(e.field, field) << e.what();
            return e.what();
        }
        ADD_FAILURE() << "accepted: " << doc.dump();
        return {};
    }

    std::filesystem::path dir_;
};

TEST_F(ManifestTest, MinimalGetsDefaults) {
    const DomainManifest m = parse_manifest(minimal(), dir_.string());
    EXPECT_EQ(m.name, "vm1");
    EXPECT_EQ(m.kernel, path("vmlinuz"));
    EXPECT_EQ(m.hypervisor, "kvm");
    EXPECT_EQ(m.vcpus, 1u);
    EXPECT_EQ(m.memory_mb, 128u);
    EXPECT_EQ(m.initrd, "");
    EXPECT_EQ(m.cmdline, "");
    EXPECT_FALSE(m.flat.has_value());
    EXPECT_FALSE(m.hide_hypervisor || m.hugepages || m.start_paused);
    EXPECT_TRUE(m.thp);
    EXPECT_EQ(m.on_poweroff, "exit");
    EXPECT_EQ(m.on_reboot, "exit");
    EXPECT_EQ(m.raw, minimal());
}

json full_doc() {
    return {{"name", "web-01.prod_x"},
            {"hypervisor", "null"},
            {"vcpus", 64},
            {"memory_mb", 1 << 20},
            {"kernel", "boot/guest.bin"},
            {"initrd", "./initrd.img"},
            {"cmdline", "console=ttyS0 quiet"},
            {"flat", {{"load_address", "0x100000"}, {"entry", "1048592"}, {"mode", "long64"}}},
            {"hide_hypervisor", true},
            {"hugepages", true},
            {"thp", false},
            {"start_paused", true},
            {"on_poweroff", "pause"},
            {"on_reboot", "restart"},
            {"on_crash", "pause"},
            {"cpu_quota", 1.5},
            {"disks", {{{"path", "initrd.img"}, {"readonly", true}},
                       {{"path", "vmlinuz"}, {"partuuid", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}, {"serial", "disk-1"}}}},
            {"nics", {{{"tap", "tap0"}, {"mac", "52:54:00:AB:cd:01"}}, {{"tap", "vif1.0"}}}},
            {"consoles", {{{"kind", "pty"}}, {{"kind", "socket"}, {"path", "con.sock"}, {"name", "org.qemu.guest_agent.0"}}}},
            {"pci", {{{"bdf", "03:00.0"}}, {{"vendor", "1D0F"}, {"device", "0x0065"}, {"index", 1}}}}};
}

TEST_F(ManifestTest, FullManifest) {
    const DomainManifest m = parse_manifest(full_doc(), dir_.string());
    EXPECT_EQ(m.name, "web-01.prod_x");
    EXPECT_EQ(m.hypervisor, "null");
    EXPECT_EQ(m.vcpus, 64u);
    EXPECT_EQ(m.memory_mb, 1u << 20);
    EXPECT_EQ(m.kernel, path("boot/guest.bin"));
    EXPECT_EQ(m.initrd, path("initrd.img"));
    EXPECT_EQ(m.cmdline, "console=ttyS0 quiet");
    ASSERT_TRUE(m.flat.has_value());
    EXPECT_EQ(*m.flat, (FlatBootSpec{0x100000, 0x100010, "long64"}));
    EXPECT_TRUE(m.hide_hypervisor && m.hugepages && m.start_paused);
    EXPECT_FALSE(m.thp);
    EXPECT_EQ(m.on_poweroff, "pause");
    EXPECT_EQ(m.on_reboot, "restart");
    EXPECT_EQ(m.on_crash, "pause");
    EXPECT_EQ(m.cpu_quota, 1.5);
    ASSERT_EQ(m.disks.size(), 2u);
    EXPECT_EQ(m.disks[0], (DiskSpec{path("initrd.img"), true, "", ""}));
    EXPECT_EQ(m.disks[1], (DiskSpec{path("vmlinuz"), false, "0fc63daf-8483-4772-8e79-3d69d8477de4", "disk-1"}));
    ASSERT_EQ(m.nics.size(), 2u);
    EXPECT_EQ(m.nics[0], (NicSpec{"tap0", "52:54:00:ab:cd:01"}));
    EXPECT_EQ(m.nics[1], (NicSpec{"vif1.0", ""}));
    ASSERT_EQ(m.consoles.size(), 2u);
    EXPECT_EQ(m.consoles[0], (ConsoleSpec{"pty", "", ""}));
    EXPECT_EQ(m.consoles[1], (ConsoleSpec{"socket", path("con.sock"), "org.qemu.guest_agent.0"}));
    ASSERT_EQ(m.pci.size(), 2u);
    EXPECT_EQ(m.pci[0].bdf, "0000:03:00.0");
    EXPECT_EQ(m.pci[1], (PciSpec{"", 0x1d0f, 0x0065, 1}));
}

TEST_F(ManifestTest, DeviceEntriesAreCheckedFieldByField) {
    const auto disk = [&](json entry) { return with("disks", json::array({entry})); };
    EXPECT_THAT(error_of(with("disks", "x"), "disks"), HasSubstr("must be an array"));
    EXPECT_THAT(error_of(disk({{"readonly", true}}), "disks[0].path"), HasSubstr("is required"));
    EXPECT_THAT(error_of(disk({{"path", "nope.img"}}), "disks[0].path"), HasSubstr("No such file"));
    EXPECT_THAT(error_of(disk({{"path", "vmlinuz"}, {"size", 1}}), "disks[0].size"), HasSubstr("unknown field"));
    EXPECT_THAT(error_of(disk({{"path", "vmlinuz"}, {"partuuid", "1234"}}), "disks[0].partuuid"), HasSubstr("UUID"));
    EXPECT_THAT(error_of(disk({{"path", "vmlinuz"}, {"serial", std::string(21, 'x')}}), "disks[0].serial"),
                HasSubstr("20 bytes"));
    EXPECT_THAT(error_of(with("disks", {{{"path", "vmlinuz"}}, {{"path", "./vmlinuz"}}}), "disks[1].path"),
                HasSubstr("already used"));
    std::vector<json> many(kMaxDisks + 1, json{{"path", "vmlinuz"}});
    EXPECT_THAT(error_of(with("disks", many), "disks"), HasSubstr("at most 16"));

    const auto nic = [&](json entry) { return with("nics", json::array({entry})); };
    EXPECT_THAT(error_of(nic({{"mac", "52:54:00:00:00:01"}}), "nics[0].tap"), HasSubstr("is required"));
    EXPECT_THAT(error_of(nic({{"tap", "a/b"}}), "nics[0].tap"), HasSubstr("interface name"));
    EXPECT_THAT(error_of(nic({{"tap", "0123456789abcdef"}}), "nics[0].tap"), HasSubstr("1 to 15"));
    EXPECT_THAT(error_of(nic({{"tap", "t0"}, {"mac", "52:54:00:00:01"}}), "nics[0].mac"), HasSubstr("MAC address"));
    EXPECT_THAT(error_of(nic({{"tap", "t0"}, {"mac", "01:00:5e:00:00:01"}}), "nics[0].mac"), HasSubstr("unicast"));
    EXPECT_THAT(error_of(with("nics", {{{"tap", "t0"}}, {{"tap", "t0"}}}), "nics[1].tap"), HasSubstr("already used"));

    const auto con = [&](json entry) { return with("consoles", json::array({entry})); };
    EXPECT_THAT(error_of(con({{"kind", "file"}}), "consoles[0].kind"), HasSubstr("\"pty\""));
    EXPECT_THAT(error_of(con({{"kind", "socket"}}), "consoles[0].path"), HasSubstr("is required"));
    EXPECT_THAT(error_of(con({{"kind", "pty"}, {"path", "/tmp/x"}}), "consoles[0].path"), HasSubstr("only for kind"));
    EXPECT_THAT(error_of(con({{"name", ""}}), "consoles[0].name"), HasSubstr("1 to 127 characters"));
    EXPECT_THAT(error_of(con({{"name", "a/b"}}), "consoles[0].name"), HasSubstr("not a port name"));
    EXPECT_THAT(error_of(con({{"name", std::string(128, 'a')}}), "consoles[0].name"), HasSubstr("not a port name"));
    EXPECT_THAT(error_of(con({{"name", 7}}), "consoles[0].name"), HasSubstr("port name"));
    EXPECT_THAT(error_of(with("consoles", {{{"name", "org.qemu.guest_agent.0"}}, {{"name", "org.qemu.guest_agent.0"}}}), "consoles[1].name"),
                HasSubstr("already used"));

    const auto pci = [&](json entry) { return with("pci", json::array({entry})); };
    EXPECT_THAT(error_of(pci({{"bdf", "0000:03:20.0"}}), "pci[0].bdf"), HasSubstr("device 00-1f"));
    EXPECT_THAT(error_of(pci({{"bdf", "03:00.8"}}), "pci[0].bdf"), HasSubstr("PCI address"));
    EXPECT_THAT(error_of(pci({{"bdf", "zz:00.0"}}), "pci[0].bdf"), HasSubstr("PCI address"));
    EXPECT_THAT(error_of(pci({{"vendor", "1d0f"}}), "pci[0]"), HasSubstr("both \"vendor\" and \"device\""));
    EXPECT_THAT(error_of(pci({{"vendor", "1d0f"}, {"device", "65"}}), "pci[0].device"), HasSubstr("4-digit"));
    EXPECT_THAT(error_of(pci({{"bdf", "03:00.0"}, {"vendor", "1d0f"}}), "pci[0]"), HasSubstr("not both"));
    EXPECT_THAT(error_of(with("pci", {{{"bdf", "03:00.0"}}, {{"bdf", "0000:03:00.0"}}}), "pci[1]"), HasSubstr("same device"));
}

TEST_F(ManifestTest, DocumentMustBeObject) {
    EXPECT_THAT(error_of(json::array({1}), ""),
                AllOf(StartsWith("manifest: "), HasSubstr("must be a JSON object, got array")));
}

TEST_F(ManifestTest, UnknownTopLevelFieldListsKnownOnes) {
    EXPECT_THAT(error_of(with("vcpu", 2), "vcpu"),
                AllOf(HasSubstr("manifest field \"vcpu\": unknown field"),
                      HasSubstr("name, hypervisor, vcpus, memory_mb, kernel")));
}

TEST_F(ManifestTest, RequiredFields) {
    json doc = minimal();
    doc.erase("name");
    EXPECT_THAT(error_of(doc, "name"), HasSubstr("is required"));
    doc = minimal();
    doc.erase("kernel");
    EXPECT_THAT(error_of(doc, "kernel"), HasSubstr("is required: the path of the kernel image"));
}

class BadName : public ManifestTest, public ::testing::WithParamInterface<const char*> {};
INSTANTIATE_TEST_SUITE_P(Names, BadName,
                         ::testing::Values("", "a/b", "..", ".", "-x", ".hidden", "a b", "é",
                                           "tab\there",
                                           // 65 characters
                                           "a2345678901234567890123456789012345678901234567890"
                                           "123456789012345"));

TEST_P(BadName, Rejected) {
    EXPECT_THAT(error_of(with("name", GetParam()), "name"),
                AllOf(StartsWith("manifest field \"name\": "),
                      HasSubstr("A-Z a-z 0-9 . _ -")));
    EXPECT_THROW(validate_domain_name(GetParam()), ManifestError);
}

TEST_F(ManifestTest, NameMessagesSayWhatIsWrong) {
    EXPECT_THAT(error_of(with("name", ""), "name"), HasSubstr("must not be empty"));
    EXPECT_THAT(error_of(with("name", std::string(65, 'a')), "name"),
                HasSubstr("is 65 characters long, at most 64"));
    EXPECT_THAT(error_of(with("name", "a/b"), "name"),
                HasSubstr("forbidden character at position 1 in \"a/b\""));
    EXPECT_THAT(error_of(with("name", "-x"), "name"), HasSubstr("must not start with '-'"));
    EXPECT_THAT(error_of(with("name", ".."), "name"), HasSubstr("must not be \".\" or \"..\""));
    EXPECT_THAT(error_of(with("name", 7), "name"), HasSubstr("must be a string"));
}

TEST_F(ManifestTest, GoodNames) {
    const std::vector<std::string> names = {"a", "A.b_c-9", "vm..x", std::string(64, 'z')};
    for (const std::string& name : names) {
        EXPECT_NO_THROW(validate_domain_name(name)) << name;
    }
}

TEST_F(ManifestTest, Vcpus) {
    EXPECT_EQ(error_of(with("vcpus", "two"), "vcpus"),
              "manifest field \"vcpus\": must be an integer from 1 to 64, got \"two\"");
    for (const json& bad : {json(0), json(65), json(-1), json(2.0), json(true), json(nullptr)}) {
        EXPECT_THAT(error_of(with("vcpus", bad), "vcpus"),
                    HasSubstr("must be an integer from 1 to 64, got " + bad.dump()));
    }
    EXPECT_EQ(parse_manifest(with("vcpus", 64), dir_.string()).vcpus, 64u);
}

TEST_F(ManifestTest, MemoryMb) {
    for (const json& bad : {json(1), json((1 << 20) + 1), json(-128), json(1.5), json("128"),
                            json(1e3)}) {
        EXPECT_THAT(error_of(with("memory_mb", bad), "memory_mb"),
                    HasSubstr("must be an integer from 2 to 1048576 (MiB), got "));
    }
    EXPECT_EQ(parse_manifest(with("memory_mb", 2), dir_.string()).memory_mb, 2u);
}

TEST_F(ManifestTest, CpuQuota) {
    EXPECT_FALSE(parse_manifest(minimal(), dir_.string()).cpu_quota.has_value()) << "no limit by default";
    EXPECT_EQ(parse_manifest(with("cpu_quota", 0.01), dir_.string()).cpu_quota, 0.01);
    EXPECT_EQ(parse_manifest(with("cpu_quota", 2), dir_.string()).cpu_quota, 2.0) << "an integer is a number";
    EXPECT_EQ(parse_manifest(with("cpu_quota", 64), dir_.string()).cpu_quota, 64.0)
        << "more than vcpus: the anchor's I/O threads share the quota";
    EXPECT_EQ(error_of(with("cpu_quota", "1.5"), "cpu_quota"),
              "manifest field \"cpu_quota\": must be a number of CPUs from 0.01 to 64 (1.5 = one and a half "
              "CPUs), got \"1.5\"");
    for (const json& bad : {json(0), json(0.009), json(-1), json(64.5), json(1e9), json(true), json(nullptr),
                            json::array({1})}) {
        EXPECT_THAT(error_of(with("cpu_quota", bad), "cpu_quota"),
                    HasSubstr("must be a number of CPUs from 0.01 to 64"))
            << bad.dump();
    }
}

TEST_F(ManifestTest, KernelAndInitrdMustExist) {
    EXPECT_THAT(error_of(with("kernel", 5), "kernel"), HasSubstr("must be a string"));
    EXPECT_THAT(error_of(with("kernel", ""), "kernel"), HasSubstr("non-empty"));
    EXPECT_THAT(error_of(with("kernel", "nope/bzImage"), "kernel"),
                AllOf(HasSubstr(path("nope/bzImage")), HasSubstr("No such file or directory")));
    EXPECT_THAT(error_of(with("kernel", "boot"), "kernel"),
                HasSubstr("is not a regular file or block device"));
    EXPECT_THAT(error_of(with("initrd", path("missing.img")), "initrd"),
                AllOf(HasSubstr(path("missing.img")), HasSubstr("No such file or directory")));
    EXPECT_THAT(error_of(with("initrd", json::array()), "initrd"), HasSubstr("must be a string"));
    // stat() would stop at the NUL and check "vmlinuz" instead of the path given.
    EXPECT_THAT(error_of(with("kernel", path("vmlinuz") + std::string("\0.bak", 5)), "kernel"),
                HasSubstr("without NUL bytes"));
}

TEST_F(ManifestTest, RelativePathsResolveAgainstBaseDir) {
    json doc = minimal();
    doc["kernel"] = "boot/../vmlinuz";
    doc["initrd"] = "initrd.img";
    const DomainManifest m = parse_manifest(doc, dir_.string());
    EXPECT_EQ(m.kernel, path("vmlinuz"));
    EXPECT_EQ(m.initrd, path("initrd.img"));
    EXPECT_EQ(m.raw["kernel"], "boot/../vmlinuz") << "raw keeps the document as given";
    // Relative to base_dir, not to the current directory; the error says which base.
    try {
        parse_manifest(doc, "/nonexistent-base");
        FAIL() << "no error";
    } catch (const ManifestError& e) {
        EXPECT_EQ(e.field, "kernel");
        EXPECT_THAT(e.what(), AllOf(HasSubstr("\"/nonexistent-base/vmlinuz\""),
                                    HasSubstr("resolved against \"/nonexistent-base\"")));
    }
}

TEST_F(ManifestTest, Cmdline) {
    EXPECT_NO_THROW(parse_manifest(with("cmdline", std::string(4095, 'x')), dir_.string()));
    EXPECT_THAT(error_of(with("cmdline", std::string(4096, 'x')), "cmdline"),
                HasSubstr("at most 4095 bytes, got 4096 bytes"));
    EXPECT_THAT(error_of(with("cmdline", std::string("a\0b", 3)), "cmdline"),
                HasSubstr("NUL"));
    EXPECT_THAT(error_of(with("cmdline", json::array({"a"})), "cmdline"),
                HasSubstr("must be a string"));
}

TEST_F(ManifestTest, FlatAddressesAndDefaults) {
    auto flat_of = [&](const json& flat) {
        return *parse_manifest(with("flat", flat), dir_.string()).flat;
    };
    EXPECT_EQ(flat_of({{"load_address", 4096}, {"mode", "protected32"}}),
              (FlatBootSpec{4096, 4096, "protected32"}))
        << "entry defaults to load_address";
    EXPECT_EQ(flat_of({{"load_address", "0X7C00"}, {"entry", "31744"}, {"mode", "real16"}}),
              (FlatBootSpec{0x7c00, 0x7c00, "real16"}));
    EXPECT_EQ(flat_of({{"load_address", "0xffffffffffffffff"}, {"mode", "long64"}}).entry,
              0xffffffffffffffffull);
}

TEST_F(ManifestTest, FlatErrors) {
    const auto flat_error = [&](const json& flat, const std::string& field) {
        return error_of(with("flat", flat), field);
    };
    EXPECT_THAT(flat_error("real16", "flat"), HasSubstr("must be an object"));
    EXPECT_THAT(flat_error({{"load_address", 0}, {"mode", "long64"}, {"foo", 1}}, "flat.foo"),
                AllOf(HasSubstr("manifest field \"flat.foo\": unknown field"),
                      HasSubstr("load_address, entry, mode")));
    EXPECT_THAT(flat_error({{"load_address", 0}}, "flat.mode"),
                HasSubstr("is required: one of \"real16\", \"protected32\", \"long64\""));
    EXPECT_THAT(flat_error({{"mode", "long64"}}, "flat.load_address"), HasSubstr("is required"));
    EXPECT_THAT(flat_error({{"load_address", 0}, {"mode", "vm86"}}, "flat.mode"),
                HasSubstr("must be one of \"real16\", \"protected32\", \"long64\", got \"vm86\""));
    for (const json& bad : {json("0x"), json("-1"), json("12abc"), json(" 1"), json(1.5),
                            json(-4096), json("0x10000000000000000"), json(nullptr)}) {
        EXPECT_THAT(flat_error({{"load_address", bad}, {"mode", "long64"}}, "flat.load_address"),
                    HasSubstr("must be an address")) << bad.dump();
    }
    EXPECT_THAT(flat_error({{"load_address", 0}, {"entry", "0x"}, {"mode", "long64"}},
                           "flat.entry"),
                HasSubstr("got \"0x\""));
    EXPECT_THAT(flat_error({{"load_address", 0x7c00}, {"entry", 0x100000}, {"mode", "real16"}},
                           "flat.entry"),
                HasSubstr("below 0x100000 (1 MiB) in mode \"real16\", got 0x100000"));
    EXPECT_THAT(flat_error({{"load_address", "0x100000000"}, {"mode", "protected32"}},
                           "flat.load_address"),
                HasSubstr("below 4 GiB"));
}

TEST_F(ManifestTest, EnumsAndBooleans) {
    EXPECT_THAT(error_of(with("hypervisor", "qemu"), "hypervisor"),
                HasSubstr("must be one of \"kvm\", \"xen\", \"null\", got \"qemu\""));
    EXPECT_THAT(error_of(with("on_poweroff", "restart"), "on_poweroff"),
                HasSubstr("must be one of \"exit\", \"pause\""));
    EXPECT_THAT(error_of(with("on_reboot", "pause"), "on_reboot"),
                HasSubstr("must be one of \"exit\", \"restart\""));
    EXPECT_THAT(error_of(with("on_reboot", 1), "on_reboot"), HasSubstr("got 1"));
    for (const char* field : {"hide_hypervisor", "hugepages", "thp", "start_paused"}) {
        EXPECT_THAT(error_of(with(field, "yes"), field),
                    HasSubstr("must be true or false, got \"yes\""));
        EXPECT_THAT(error_of(with(field, 1), field), HasSubstr("must be true or false, got 1"));
    }
}

TEST_F(ManifestTest, LoadFileResolvesAgainstFileDirectory) {
    json doc = minimal();
    doc["kernel"] = "../vmlinuz";
    doc["initrd"] = "guest.bin";
    const std::string file = write("boot/vm1.json", doc.dump(2));
    const DomainManifest m = load_manifest_file(file);
    EXPECT_EQ(m.kernel, path("vmlinuz"));
    EXPECT_EQ(m.initrd, path("boot/guest.bin"));
    EXPECT_EQ(m.raw, doc);
}

TEST_F(ManifestTest, LoadMissingFileNamesPathAndErrno) {
    try {
        load_manifest_file(path("absent.json"));
        FAIL() << "no error";
    } catch (const ManifestError& e) {
        EXPECT_THAT(e.what(), AllOf(HasSubstr(path("absent.json")),
                                    HasSubstr("No such file or directory")));
    }
    EXPECT_THROW(load_manifest_file(path("boot")), ManifestError) << "a directory";
}

TEST_F(ManifestTest, LoadSyntaxErrorNamesPosition) {
    const std::string file = write(
        "bad.json", "{\n  \"name\": \"vm1\",\n  \"vcpus\": ,\n  \"kernel\": \"vmlinuz\"\n}\n");
    try {
        load_manifest_file(file);
        FAIL() << "no error";
    } catch (const ManifestError& e) {
        EXPECT_THAT(e.what(), AllOf(HasSubstr(file), HasSubstr("not valid JSON"),
                                    HasSubstr("line 3, column 12"), HasSubstr("byte 31"),
                                    HasSubstr("unexpected ','")));
        EXPECT_THAT(e.what(), ::testing::Not(HasSubstr("json.exception")));
    }
    EXPECT_THROW(load_manifest_file(write("empty.json", "")), ManifestError);
    // Found by fuzz/manifest_fuzz: a number too large for a double is valid syntax the parser
    // cannot hold; still a ManifestError naming the file.
    const std::string huge = write("huge.json", R"({"name":"a","kernel":"k","vcpus":1e400})");
    try {
        load_manifest_file(huge);
        FAIL() << "no error";
    } catch (const ManifestError& e) {
        EXPECT_THAT(e.what(), AllOf(HasSubstr(huge), HasSubstr("not valid JSON"), HasSubstr("1e400")));
    }
}

TEST_F(ManifestTest, DuplicateKeysRejected) {
    const std::string file = write(
        "dup.json", R"({"name": "vm1", "kernel": "vmlinuz", "flat": {"mode": "long64",
                        "load_address": 0, "mode": "real16"}})");
    try {
        load_manifest_file(file);
        FAIL() << "no error";
    } catch (const ManifestError& e) {
        EXPECT_EQ(e.field, "flat.mode");
        EXPECT_THAT(e.what(), HasSubstr("appears twice"));
    }
    try {
        load_manifest_file(write("dup2.json", R"({"name": "a", "x": [1, {"k": 1, "k": 2}]})"));
        FAIL() << "no error";
    } catch (const ManifestError& e) {
        EXPECT_EQ(e.field, "x[1].k");
    }
}

TEST_F(ManifestTest, JailIdentity) {
    EXPECT_FALSE(parse_manifest(minimal(), dir_.string()).jail.has_value()) << "no identity by default";
    const auto uid_only = parse_manifest(with("jail", {{"uid", 20001}}), dir_.string()).jail;
    ASSERT_TRUE(uid_only);
    EXPECT_EQ(uid_only->uid, 20001u);
    EXPECT_EQ(uid_only->gid, 20001u) << "the gid defaults to the uid";
    const auto both = parse_manifest(with("jail", {{"uid", 20001}, {"gid", 300}}), dir_.string()).jail;
    ASSERT_TRUE(both);
    EXPECT_EQ(both->gid, 300u);
    EXPECT_EQ(parse_manifest(with("jail", {{"uid", 0xfffffffeu}}), dir_.string()).jail->uid, 0xfffffffeu);
    EXPECT_EQ(error_of(with("jail", 20001), "jail"),
              "manifest field \"jail\": must be an object {\"uid\": N, \"gid\": M}, got 20001");
    EXPECT_EQ(error_of(with("jail", {{"gid", 5}}), "jail.uid"),
              "manifest field \"jail.uid\": is required: the uid the jailed anchor runs as");
    EXPECT_THAT(error_of(with("jail", {{"uid", 5}, {"user", "x"}}), "jail.user"), HasSubstr("uid"));
    EXPECT_THAT(error_of(with("jail", {{"uid", -1}}), "jail.uid"), HasSubstr("jail.uid"));
    EXPECT_THAT(error_of(with("jail", {{"uid", 0xffffffffu}}), "jail.uid"), HasSubstr("jail.uid"))
        << "(uid_t)-1 is no identity";
    EXPECT_THAT(error_of(with("jail", {{"uid", 5}, {"gid", "5"}}), "jail.gid"), HasSubstr("jail.gid"));
    const json out = to_json(parse_manifest(with("jail", {{"uid", 7}}), dir_.string()));
    EXPECT_EQ(out.at("jail"), json({{"uid", 7}, {"gid", 7}}));
}

TEST_F(ManifestTest, ToJsonRoundTrips) {
    for (const json& doc : {minimal(), full_doc()}) {
        const DomainManifest m = parse_manifest(doc, dir_.string());
        const json out = to_json(m);
        // Absolute paths: the document no longer depends on base_dir.
        const DomainManifest again = parse_manifest(out, "/");
        EXPECT_EQ(to_json(again), out);
        EXPECT_EQ(again.name, m.name);
        EXPECT_EQ(again.kernel, m.kernel);
        EXPECT_EQ(again.initrd, m.initrd);
        EXPECT_EQ(again.cmdline, m.cmdline);
        EXPECT_EQ(again.flat, m.flat);
        EXPECT_EQ(again.vcpus, m.vcpus);
        EXPECT_EQ(again.memory_mb, m.memory_mb);
        EXPECT_EQ(again.hypervisor, m.hypervisor);
        EXPECT_EQ(std::tie(again.hide_hypervisor, again.hugepages, again.thp, again.start_paused,
                           again.on_poweroff, again.on_reboot, again.on_crash),
                  std::tie(m.hide_hypervisor, m.hugepages, m.thp, m.start_paused, m.on_poweroff,
                           m.on_reboot, m.on_crash));
        EXPECT_EQ(again.raw, out);
        EXPECT_EQ(again.disks, m.disks);
        EXPECT_EQ(again.nics, m.nics);
        EXPECT_EQ(again.consoles, m.consoles);
        EXPECT_EQ(again.pci, m.pci);
        EXPECT_EQ(again.cpu_quota, m.cpu_quota);
    }
    const json out = to_json(parse_manifest(minimal(), dir_.string()));
    EXPECT_FALSE(out.contains("initrd") || out.contains("cmdline") || out.contains("flat") ||
                 out.contains("cpu_quota"));
    EXPECT_EQ(out["vcpus"], 1);
}

}  // namespace
}  // namespace vmm
