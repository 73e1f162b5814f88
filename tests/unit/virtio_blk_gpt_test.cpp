// GPT parser (devicemodel/virtio-blk/gpt.h) and GPT-partition windows of DiskImage, on images the
// test writes itself (and, when util-linux's sfdisk is installed, one that sfdisk partitions).
#include "devicemodel/virtio-blk/disk_image.h"
#include "devicemodel/virtio-blk/gpt.h"

#include "common/error.h"
#include "devicemodel/virtio-blk/virtio_blk.h"
#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <linux/virtio_blk.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace vmm::virtio_blk {
namespace {


// Writes a GPT disk image the way UEFI 2.10 §5.3 lays it out: protective MBR, primary header at
// LBA 1, 128 entries of 128 bytes from LBA 2, their copy before the backup header at the last LBA.
class GptImage {
public:
    explicit GptImage(std::uint64_t sectors) : sectors_(sectors) {}
    void add_partition(const std::string& uuid, std::uint64_t first, std::uint64_t last, const std::string& name) {
        parts_.push_back({uuid, first, last, name});
    }
    void write(const std::string& path) const {
        std::vector<std::uint8_t> disk(sectors_ * 512, 0);
        disk[510] = 0x55;
        disk[511] = 0xaa;
        disk[446 + 4] = 0xee;  // protective MBR partition type
        std::vector<std::uint8_t> entries(128 * 128, 0);
        const auto linux_type = *parse_guid("0fc63daf-8483-4772-8e79-3d69d8477de4");
        for (std::size_t i = 0; i < parts_.size(); ++i) {
            std::uint8_t* e = entries.data() + 128 * i;
            std::memcpy(e, linux_type.data(), 16);
            std::memcpy(e + 16, parse_guid(parts_[i].uuid)->data(), 16);
            put(e + 32, parts_[i].first);
            put(e + 40, parts_[i].last);
            for (std::size_t k = 0; k < parts_[i].name.size() && k < 36; ++k) e[56 + 2 * k] = static_cast<std::uint8_t>(parts_[i].name[k]);
        }
        const std::uint32_t entries_crc = crc32(entries);
        const std::uint64_t last = sectors_ - 1;
        auto header = [&](std::uint64_t my, std::uint64_t alt, std::uint64_t entries_lba) {
            std::uint8_t* h = disk.data() + my * 512;
            std::memcpy(h, "EFI PART", 8);
            put(h + 8, std::uint32_t{0x00010000});
            put(h + 12, std::uint32_t{92});
            put(h + 24, my);
            put(h + 32, alt);
            put(h + 40, std::uint64_t{34});
            put(h + 48, last - 33);
            std::memcpy(h + 56, parse_guid("deadbeef-0000-4000-8000-000000000001")->data(), 16);
            put(h + 72, entries_lba);
            put(h + 80, std::uint32_t{128});
            put(h + 84, std::uint32_t{128});
            put(h + 88, entries_crc);
            put(h + 16, crc32({h, 92}));
            std::memcpy(disk.data() + entries_lba * 512, entries.data(), entries.size());
        };
        header(1, last, 2);
        header(last, 1, last - 32);
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(disk.data()), static_cast<std::streamsize>(disk.size()));
    }
    // Flips every bit of the byte at `offset`.
    static void corrupt(const std::string& path, std::uint64_t offset) {
        std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
        f.seekg(static_cast<std::streamoff>(offset));
        char c = 0;
        f.read(&c, 1);
        c = static_cast<char>(~c);
        f.seekp(static_cast<std::streamoff>(offset));
        f.write(&c, 1);
    }

private:
    template <typename T>
    static void put(std::uint8_t* p, T v) { std::memcpy(p, &v, sizeof v); }
    struct Part {
        std::string uuid;
        std::uint64_t first, last;
        std::string name;
    };
    std::uint64_t sectors_;
    std::vector<Part> parts_;
};

TEST(VirtioBlkGptTest, Crc32KnownVector) {
    const std::string s = "123456789";
    EXPECT_EQ(crc32({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}), 0xcbf43926u);
    EXPECT_EQ(crc32({}), 0u);
}

TEST(VirtioBlkGptTest, GuidTextRoundTripsMixedEndian) {
    auto g = parse_guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    ASSERT_TRUE(g);
    EXPECT_EQ((*g)[0], 0xaf) << "first field stored little-endian";
    EXPECT_EQ((*g)[8], 0x8e) << "fourth field stored big-endian";
    EXPECT_EQ(format_guid(*g), "0fc63daf-8483-4772-8e79-3d69d8477de4");
    EXPECT_FALSE(parse_guid("0fc63daf-8483-4772-8e79-3d69d8477de"));
    EXPECT_FALSE(parse_guid("0fc63daf-8483-4772-8e79x3d69d8477de4"));
    EXPECT_FALSE(parse_guid("0fc63daf-8483-4772-8e79-3d69d8477dg4"));
}

struct ImageFile {
    std::string path;
    ImageFile() {
        char tmpl[] = "/tmp/vmm-gpt-XXXXXX";
        int fd = ::mkstemp(tmpl);
        if (fd < 0) throw std::runtime_error("mkstemp");
        ::close(fd);
        path = tmpl;
    }
    ~ImageFile() { ::unlink(path.c_str()); }
    DiskReader reader() const {
        return [p = path](std::uint64_t off, std::span<std::uint8_t> dst) {
            std::ifstream f(p, std::ios::binary);
            f.seekg(static_cast<std::streamoff>(off));
            f.read(reinterpret_cast<char*>(dst.data()), static_cast<std::streamsize>(dst.size()));
            return static_cast<std::size_t>(f.gcount()) == dst.size();
        };
    }
};

constexpr const char* kUuidA = "11111111-2222-3333-4444-555555555555";
constexpr const char* kUuidB = "a1b2c3d4-e5f6-4789-9abc-def012345678";

GptImage two_partitions() {
    GptImage img(4096);  // 2 MiB of 512-byte sectors
    img.add_partition(kUuidA, 64, 1023, "boot");
    img.add_partition(kUuidB, 1024, 3999, "data");
    return img;
}

TEST(VirtioBlkGptTest, ParsesHeaderAndEntries) {
    ImageFile file;
    two_partitions().write(file.path);
    auto t = read_gpt(file.reader(), 4096 * 512, 512, "img");
    EXPECT_FALSE(t.from_backup);
    ASSERT_EQ(t.partitions.size(), 2u);
    EXPECT_EQ(t.partitions[1].unique_guid, kUuidB);
    EXPECT_EQ(t.partitions[1].first_lba, 1024u);
    EXPECT_EQ(t.partitions[1].last_lba, 3999u);
    EXPECT_EQ(t.partitions[1].name, "data");
    auto p = find_partition(t, "A1B2C3D4-E5F6-4789-9ABC-DEF012345678");
    ASSERT_TRUE(p) << "partuuid lookup is case-insensitive";
    EXPECT_EQ(p->index, 1u);
    EXPECT_FALSE(find_partition(t, "00000000-0000-0000-0000-000000000001"));
    EXPECT_FALSE(find_partition(t, "not-a-guid"));
}

TEST(VirtioBlkGptTest, FallsBackToTheBackupHeader) {
    ImageFile file;
    auto img = two_partitions();
    img.write(file.path);
    GptImage::corrupt(file.path, 512 + 40);  // a byte inside the primary header
    auto t = read_gpt(file.reader(), 4096 * 512, 512, "img");
    EXPECT_TRUE(t.from_backup);
    ASSERT_EQ(t.partitions.size(), 2u);
    EXPECT_EQ(t.partitions[0].unique_guid, kUuidA);
}

TEST(VirtioBlkGptTest, RejectsCorruptTables) {
    {
        ImageFile file;
        two_partitions().write(file.path);
        GptImage::corrupt(file.path, 512 + 40);
        GptImage::corrupt(file.path, 4095ull * 512 + 40);
        EXPECT_THROW(read_gpt(file.reader(), 4096 * 512, 512, "img"), Error) << "both headers bad";
    }
    {
        ImageFile file;
        two_partitions().write(file.path);
        GptImage::corrupt(file.path, 2 * 512 + 128 + 40);  // inside entry 1
        EXPECT_THROW(read_gpt(file.reader(), 4096 * 512, 512, "img"), Error) << "entry array CRC mismatch";
    }
    {
        ImageFile file;
        GptImage img(4096);
        img.add_partition(kUuidA, 64, 5000, "too big");  // past last usable LBA
        img.write(file.path);
        EXPECT_THROW(read_gpt(file.reader(), 4096 * 512, 512, "img"), Error);
    }
    {
        ImageFile file;
        std::ofstream(file.path) << std::string(4096 * 512, '\0');
        EXPECT_THROW(read_gpt(file.reader(), 4096 * 512, 512, "img"), Error) << "no GPT at all";
    }
    EXPECT_THROW(read_gpt([](std::uint64_t, std::span<std::uint8_t>) { return false; }, 1024, 512, "tiny"), Error);
}

TEST(VirtioBlkGptTest, DiskImageWindowIsThePartition) {
    ImageFile file;
    two_partitions().write(file.path);
    auto d = DiskImage::open({file.path, std::string(kUuidB), false});
    EXPECT_EQ(d.offset(), 1024u * 512);
    EXPECT_EQ(d.size(), (3999u - 1024 + 1) * 512);
    EXPECT_EQ(d.capacity_sectors(), 3999u - 1024 + 1);
    EXPECT_THROW(DiskImage::open({file.path, std::string("00000000-0000-0000-0000-000000000009"), false}), Error);
    auto whole = DiskImage::open({file.path, std::nullopt, true});
    EXPECT_EQ(whole.offset(), 0u);
    EXPECT_EQ(whole.capacity_sectors(), 4096u);
    EXPECT_TRUE(whole.read_only());
}

TEST(VirtioBlkGptTest, TheDeviceSeesOnlyThePartition) {
    ImageFile file;
    two_partitions().write(file.path);
    VirtioBlkOptions opts;
    opts.name = "gptblk";
    opts.use_io_uring = false;
    VirtioBlk blk(DiskImage::open({file.path, std::string(kUuidA), false}), opts);
    std::uint64_t capacity = 0;
    blk.read_config(0, {reinterpret_cast<std::uint8_t*>(&capacity), 8});
    EXPECT_EQ(capacity, 1023u - 64 + 1);

    test::FakeGuestMemory fake({{0, 0x40000}});
    test::VirtqueueDriver drv(fake, 0x1000, 16);
    auto irq = std::make_shared<test::FakeVirtioInterrupt>();
    blk.activate(fake, blk.device_features(), {drv.config()}, irq);
    using Drv = test::VirtqueueDriver;
    auto request = [&](std::uint32_t type, std::uint64_t sector, std::uint64_t data, std::uint32_t len) {
        virtio_blk_outhdr hdr{type, 0, sector};
        fake.memory().write(0x8000, &hdr, sizeof hdr);
        fake.memory().write_obj<std::uint8_t>(0x9000, 0xff);
        std::vector<Drv::Buf> bufs{Drv::rd(0x8000, 16)};
        if (len) bufs.push_back(type == VIRTIO_BLK_T_IN ? Drv::wr(data, len) : Drv::rd(data, len));
        bufs.push_back(Drv::wr(0x9000, 1));
        const std::uint16_t before = drv.used_idx();
        drv.add_chain(bufs);
        blk.queue_notify(0);
        EXPECT_TRUE(irq->wait_for([&] { return drv.used_idx() != before; }));
        drv.reclaim();
        return *fake.memory().read_obj<std::uint8_t>(0x9000);
    };
    std::vector<std::uint8_t> pattern(512, 0x5a);
    fake.memory().write(0x10000, pattern.data(), 512);
    EXPECT_EQ(request(VIRTIO_BLK_T_OUT, 0, 0x10000, 512), VIRTIO_BLK_S_OK);
    EXPECT_EQ(request(VIRTIO_BLK_T_OUT, 959, 0x10000, 512), VIRTIO_BLK_S_OK) << "last sector of the partition";
    EXPECT_EQ(request(VIRTIO_BLK_T_OUT, 960, 0x10000, 512), VIRTIO_BLK_S_IOERR) << "first sector after it";
    EXPECT_EQ(request(VIRTIO_BLK_T_IN, 959, 0x20000, 1024), VIRTIO_BLK_S_IOERR) << "read crossing the end";
    blk.reset();
    // On the host file the writes landed at LBA 64 and LBA 1023; LBA 1024 (partition B) is untouched.
    std::ifstream f(file.path, std::ios::binary);
    std::vector<char> sector(512);
    f.seekg(64 * 512);
    f.read(sector.data(), 512);
    EXPECT_EQ(static_cast<std::uint8_t>(sector[0]), 0x5a);
    f.seekg(1023 * 512);
    f.read(sector.data(), 512);
    EXPECT_EQ(static_cast<std::uint8_t>(sector[511]), 0x5a);
    f.seekg(1024 * 512);
    f.read(sector.data(), 512);
    EXPECT_EQ(sector[0], 0);
    f.seekg(63 * 512);
    f.read(sector.data(), 512);
    EXPECT_EQ(sector[511], 0);
}

TEST(VirtioBlkGptTest, ReadsAnImagePartitionedBySfdisk) {
    if (std::system("command -v sfdisk >/dev/null 2>&1") != 0) GTEST_SKIP() << "sfdisk (util-linux fdisk package) not installed";
    ImageFile file;
    std::ofstream(file.path).close();
    ASSERT_EQ(::truncate(file.path.c_str(), 8 * 1024 * 1024), 0);
    const std::string script = "label: gpt\n"
                               "start=2048, size=4096, uuid=" + std::string(kUuidA) + ", name=one\n"
                               "start=8192, size=6144, uuid=" + std::string(kUuidB) + ", name=two\n";
    const std::string cmd = "printf '%s' '" + script + "' | sfdisk -q " + file.path + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto t = read_gpt(file.reader(), 8 * 1024 * 1024, 512, "img");
    ASSERT_EQ(t.partitions.size(), 2u);
    auto p = find_partition(t, kUuidB);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->first_lba, 8192u);
    EXPECT_EQ(p->last_lba, 8192u + 6144 - 1);
    EXPECT_EQ(p->name, "two");
    auto d = DiskImage::open({file.path, std::string(kUuidA), false});
    EXPECT_EQ(d.offset(), 2048u * 512);
    EXPECT_EQ(d.capacity_sectors(), 4096u);
}

}  // namespace
}  // namespace vmm::virtio_blk
