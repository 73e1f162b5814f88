// The guest-memory ELF core (dump/): layout and bytes as QEMU's dump-guest-memory (paging=false,
// x86_64) writes them, read back with a small ELF reader of the test's own; streaming into a
// FIFO; the detached job's status, progress, failure and cancellation.
#include "dump/dump_target.h"
#include "dump/elf_core_notes.h"
#include "dump/guest_core_layout.h"
#include "dump/guest_core_writer.h"
#include "dump/guest_dump_job.h"
#include "dump/vcpu_dump_state.h"

#include "common/error.h"
#include "common/fd.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <elf.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace vmm::dump {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kLowGpa = 0;
constexpr std::uint64_t kLowSize = 1 << 20;
constexpr std::uint64_t kHighGpa = 0x1'0000'0000;
constexpr std::uint64_t kHighSize = 256 << 10;

std::uint8_t pattern(std::uint64_t gpa) {
    const std::uint64_t x = gpa * 0x9e3779b97f4a7c15ull;
    return static_cast<std::uint8_t>(x >> 56);
}

// Two regions of host memory filled with pattern(gpa), as the anchor's low and high RAM slots.
struct TestGuest {
    std::vector<std::uint8_t> low = std::vector<std::uint8_t>(kLowSize);
    std::vector<std::uint8_t> high = std::vector<std::uint8_t>(kHighSize);
    GuestMemory memory;
    std::vector<VcpuDumpState> vcpus;

    TestGuest() {
        for (std::uint64_t i = 0; i < kLowSize; ++i) low[i] = pattern(kLowGpa + i);
        for (std::uint64_t i = 0; i < kHighSize; ++i) high[i] = pattern(kHighGpa + i);
        memory = GuestMemory({{kLowGpa, kLowSize, low.data()}, {kHighGpa, kHighSize, high.data()}});
        for (std::uint32_t i = 0; i < 2; ++i) vcpus.push_back(make_vcpu(i));
    }

    static VcpuDumpState make_vcpu(std::uint32_t i) {
        VcpuDumpState v;
        v.index = i;
        const std::uint64_t k = std::uint64_t{i} << 8;
        v.rax = 0x1000 + k, v.rbx = 0x1001 + k, v.rcx = 0x1002 + k, v.rdx = 0x1003 + k;
        v.rsi = 0x1004 + k, v.rdi = 0x1005 + k, v.rsp = 0xffffc90000001000 + k, v.rbp = 0x1007 + k;
        v.r8 = 0x1008 + k, v.r9 = 0x1009 + k, v.r10 = 0x100a + k, v.r11 = 0x100b + k;
        v.r12 = 0x100c + k, v.r13 = 0x100d + k, v.r14 = 0x100e + k, v.r15 = 0x100f + k;
        v.rip = 0xffffffff81000000 + 0x10 * i;
        v.rflags = 0x246;
        // A 64-bit kernel code segment and flat data segments.
        v.cs = DumpSegment{.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0xb, .present = 1,
                           .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1};
        const DumpSegment data{.base = 0, .limit = 0xffffffff, .selector = 0x18, .type = 0x3, .present = 1,
                               .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
        v.ds = v.es = v.ss = data;
        v.fs = data;
        v.fs.selector = 0;
        v.fs.base = 0x7f0000001000 + k;
        v.gs = data;
        v.gs.selector = 0;
        v.gs.base = 0xffff888000000000 + k;
        v.tr = DumpSegment{.base = 0xfffffe0000003000, .limit = 0x4087, .selector = 0x40, .type = 0xb,
                           .present = 1};
        v.ldt = DumpSegment{.unusable = 1};
        v.gdt = DumpDtable{0xfffffe0000001000, 0x7f};
        v.idt = DumpDtable{0xfffffe0000000000, 0xfff};
        v.cr0 = 0x80050033, v.cr2 = 0x7f00dead0000 + k, v.cr3 = 0x1c0e000 + k, v.cr4 = 0x3706f0;
        v.efer = 0xd01;
        v.kernel_gs_base = 0x7f0000002000 + k;
        return v;
    }
};

// --- a small ELF64 core reader, independent of dump/ ---

template <typename T>
T get(const std::vector<std::uint8_t>& b, std::uint64_t off) {
    EXPECT_LE(off + sizeof(T), b.size());
    T v{};
    if (off + sizeof(T) <= b.size()) std::memcpy(&v, b.data() + off, sizeof v);
    return v;
}

struct Note {
    std::string name;  // without the NUL
    std::uint32_t namesz = 0;
    std::uint32_t type = 0;
    std::vector<std::uint8_t> desc;
};

struct Core {
    Elf64_Ehdr eh{};
    std::vector<Elf64_Phdr> ph;
    std::vector<Note> notes;
};

Core parse_core(const std::vector<std::uint8_t>& b) {
    Core c;
    c.eh = get<Elf64_Ehdr>(b, 0);
    for (unsigned i = 0; i < c.eh.e_phnum; ++i) c.ph.push_back(get<Elf64_Phdr>(b, c.eh.e_phoff + i * c.eh.e_phentsize));
    for (const Elf64_Phdr& p : c.ph) {
        if (p.p_type != PT_NOTE) continue;
        std::uint64_t off = p.p_offset;
        const std::uint64_t end = p.p_offset + p.p_filesz;
        while (off + sizeof(Elf64_Nhdr) <= end) {
            const auto nh = get<Elf64_Nhdr>(b, off);
            off += sizeof nh;
            Note n;
            n.namesz = nh.n_namesz;
            n.type = nh.n_type;
            n.name.assign(reinterpret_cast<const char*>(b.data() + off), nh.n_namesz ? nh.n_namesz - 1 : 0);
            off += (nh.n_namesz + 3) & ~3u;
            n.desc.assign(b.begin() + static_cast<std::ptrdiff_t>(off),
                          b.begin() + static_cast<std::ptrdiff_t>(off + nh.n_descsz));
            off += (nh.n_descsz + 3) & ~3u;
            c.notes.push_back(std::move(n));
        }
        EXPECT_EQ(off, end) << "notes must fill PT_NOTE exactly";
    }
    return c;
}

std::vector<std::uint8_t> slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// x86_64 elf_prstatus: pr_pid at 32, pr_reg (user_regs_struct) at 112.
std::uint64_t pr_reg(const Note& n, unsigned index) { return get<std::uint64_t>(n.desc, 112 + 8 * index); }
enum PrReg : unsigned {
    kR15 = 0, kRbp = 4, kRbx = 5, kR8 = 9, kRax = 10, kRcx = 11, kRdi = 14, kOrigRax = 15, kRip = 16, kCs = 17,
    kEflags = 18, kRsp = 19, kSs = 20, kFsBase = 21, kGsBase = 22, kDs = 23, kEs = 24, kFs = 25, kGs = 26
};

// QEMUCPUState offsets.
constexpr std::uint64_t kQemuRip = 8 + 16 * 8;
constexpr std::uint64_t kQemuSegs = kQemuRip + 16;  // cs ds es fs gs ss ldt tr gdt idt, 24 bytes each
constexpr std::uint64_t kQemuCr = kQemuSegs + 10 * 24;
constexpr std::uint64_t kQemuKernelGsBase = kQemuCr + 5 * 8;

class GuestDump : public ::testing::Test {
protected:
    void SetUp() override { dir_ = test::make_temp_dir("guest_dump_"); }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string path(const std::string& leaf) const { return dir_ + "/" + leaf; }

    std::vector<std::uint8_t> dump_to_file(const std::string& file, const DumpProgress& progress = {}) {
        Fd fd = open_fd(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        const std::uint64_t n = write_guest_core(fd.get(), guest_.memory, guest_.vcpus, progress);
        fd.reset();
        auto bytes = slurp(file);
        EXPECT_EQ(n, bytes.size());
        return bytes;
    }

    TestGuest guest_;
    std::string dir_;
};

TEST_F(GuestDump, LayoutIsQemus) {
    const GuestCoreLayout l = compute_guest_core_layout(guest_.memory, 2);
    EXPECT_EQ(l.notes_offset, sizeof(Elf64_Ehdr) + 3 * sizeof(Elf64_Phdr));
    // Per vCPU: a 12-byte header, "CORE\0" padded to 8, 336 bytes; "QEMU\0" likewise, 440 bytes.
    EXPECT_EQ(l.notes_size, 2u * ((12 + 8 + 336) + (12 + 8 + 440)));
    EXPECT_EQ(l.memory_offset, l.notes_offset + l.notes_size);
    ASSERT_EQ(l.loads.size(), 2u);
    EXPECT_EQ(l.loads[0].gpa, kLowGpa);
    EXPECT_EQ(l.loads[0].file_offset, l.memory_offset);
    EXPECT_EQ(l.loads[1].gpa, kHighGpa);
    EXPECT_EQ(l.loads[1].file_offset, l.memory_offset + kLowSize);
    EXPECT_EQ(l.memory_size, kLowSize + kHighSize);
    EXPECT_EQ(l.file_size, l.memory_offset + kLowSize + kHighSize);
    EXPECT_EQ(x86_64_core_notes_size(2), l.notes_size);
    EXPECT_THROW(build_guest_core_headers(l, std::span(guest_.vcpus).first(1)), Error);
}

TEST_F(GuestDump, FileIsAnX86_64CoreWithOneLoadPerRegion) {
    const auto bytes = dump_to_file(path("core"));
    const Core c = parse_core(bytes);

    EXPECT_EQ(std::memcmp(c.eh.e_ident, ELFMAG, SELFMAG), 0);
    EXPECT_EQ(c.eh.e_ident[EI_CLASS], ELFCLASS64);
    EXPECT_EQ(c.eh.e_ident[EI_DATA], ELFDATA2LSB);
    EXPECT_EQ(c.eh.e_ident[EI_VERSION], EV_CURRENT);
    EXPECT_EQ(c.eh.e_type, ET_CORE);
    EXPECT_EQ(c.eh.e_machine, EM_X86_64);
    EXPECT_EQ(c.eh.e_version, unsigned{EV_CURRENT});
    EXPECT_EQ(c.eh.e_entry, 0u);
    EXPECT_EQ(c.eh.e_ehsize, sizeof(Elf64_Ehdr));
    EXPECT_EQ(c.eh.e_phentsize, sizeof(Elf64_Phdr));
    EXPECT_EQ(c.eh.e_shoff, 0u);
    EXPECT_EQ(c.eh.e_shnum, 0u);

    ASSERT_EQ(c.ph.size(), 3u);
    const Elf64_Phdr& note = c.ph[0];
    EXPECT_EQ(note.p_type, unsigned{PT_NOTE});
    EXPECT_EQ(note.p_offset, sizeof(Elf64_Ehdr) + 3 * sizeof(Elf64_Phdr));
    EXPECT_EQ(note.p_filesz, note.p_memsz);
    EXPECT_EQ(note.p_vaddr, 0u);
    EXPECT_EQ(note.p_paddr, 0u);

    const std::vector<std::uint8_t>* host[] = {&guest_.low, &guest_.high};
    const std::uint64_t gpas[] = {kLowGpa, kHighGpa};
    std::uint64_t expected_offset = note.p_offset + note.p_filesz;
    for (int i = 0; i < 2; ++i) {
        const Elf64_Phdr& p = c.ph[1 + i];
        SCOPED_TRACE(i);
        EXPECT_EQ(p.p_type, unsigned{PT_LOAD});
        EXPECT_EQ(p.p_paddr, gpas[i]);
        EXPECT_EQ(p.p_vaddr, gpas[i]);  // paging=false: QEMU's `virt_addr ?: p_paddr`
        EXPECT_EQ(p.p_filesz, host[i]->size());
        EXPECT_EQ(p.p_memsz, host[i]->size());
        EXPECT_EQ(p.p_offset, expected_offset);
        EXPECT_EQ(p.p_flags, 0u);
        ASSERT_LE(p.p_offset + p.p_filesz, bytes.size());
        EXPECT_TRUE(std::equal(host[i]->begin(), host[i]->end(), bytes.begin() + static_cast<std::ptrdiff_t>(p.p_offset)))
            << "guest bytes of region " << i;
        EXPECT_EQ(bytes[p.p_offset + 0x1234], pattern(gpas[i] + 0x1234));
        expected_offset += p.p_filesz;
    }
    EXPECT_EQ(expected_offset, bytes.size());
}

TEST_F(GuestDump, NotesArePrstatusThenQemuCpuStatePerVcpu) {
    const Core c = parse_core(dump_to_file(path("core")));
    ASSERT_EQ(c.notes.size(), 4u);
    for (std::uint32_t i = 0; i < 2; ++i) {
        SCOPED_TRACE(i);
        const VcpuDumpState& v = guest_.vcpus[i];
        const Note& pr = c.notes[i];
        EXPECT_EQ(pr.name, "CORE");
        EXPECT_EQ(pr.namesz, 5u);
        EXPECT_EQ(pr.type, unsigned{NT_PRSTATUS});
        ASSERT_EQ(pr.desc.size(), 336u);
        EXPECT_EQ(get<std::uint32_t>(pr.desc, 32), i + 1) << "pr_pid = cpu index + 1";
        EXPECT_EQ(pr_reg(pr, kR15), v.r15);
        EXPECT_EQ(pr_reg(pr, kRbp), v.rbp);
        EXPECT_EQ(pr_reg(pr, kRbx), v.rbx);
        EXPECT_EQ(pr_reg(pr, kR8), v.r8);
        EXPECT_EQ(pr_reg(pr, kRax), v.rax);
        EXPECT_EQ(pr_reg(pr, kRcx), v.rcx);
        EXPECT_EQ(pr_reg(pr, kRdi), v.rdi);
        EXPECT_EQ(pr_reg(pr, kOrigRax), 0u);
        EXPECT_EQ(pr_reg(pr, kRip), v.rip);
        EXPECT_EQ(pr_reg(pr, kCs), 0x10u);
        EXPECT_EQ(pr_reg(pr, kEflags), 0x246u);
        EXPECT_EQ(pr_reg(pr, kRsp), v.rsp);
        EXPECT_EQ(pr_reg(pr, kSs), 0x18u);
        EXPECT_EQ(pr_reg(pr, kFsBase), v.fs.base);
        EXPECT_EQ(pr_reg(pr, kGsBase), v.gs.base);
        EXPECT_EQ(pr_reg(pr, kDs), 0x18u);
        EXPECT_EQ(pr_reg(pr, kEs), 0x18u);
        EXPECT_EQ(pr_reg(pr, kFs), 0u);
        EXPECT_EQ(pr_reg(pr, kGs), 0u);

        const Note& q = c.notes[2 + i];
        EXPECT_EQ(q.name, "QEMU");
        EXPECT_EQ(q.namesz, 5u);
        EXPECT_EQ(q.type, 0u);
        ASSERT_EQ(q.desc.size(), 440u);
        EXPECT_EQ(get<std::uint32_t>(q.desc, 0), 1u) << "version";
        EXPECT_EQ(get<std::uint32_t>(q.desc, 4), 440u) << "size";
        EXPECT_EQ(get<std::uint64_t>(q.desc, 8), v.rax);
        EXPECT_EQ(get<std::uint64_t>(q.desc, 8 + 6 * 8), v.rsp);
        EXPECT_EQ(get<std::uint64_t>(q.desc, 8 + 15 * 8), v.r15);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuRip), v.rip);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuRip + 8), v.rflags);
        // cs: {selector, limit, flags, pad, base}; long-mode code flags as QEMU shows them.
        EXPECT_EQ(get<std::uint32_t>(q.desc, kQemuSegs + 0), 0x10u);
        EXPECT_EQ(get<std::uint32_t>(q.desc, kQemuSegs + 4), 0xffffffffu);
        EXPECT_EQ(get<std::uint32_t>(q.desc, kQemuSegs + 8), 0x00a09b00u);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuSegs + 16), 0u);
        // fs (index 3) base, ldt (6) unusable: not present, tr (7), gdt (8), idt (9).
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuSegs + 3 * 24 + 16), v.fs.base);
        EXPECT_EQ(get<std::uint32_t>(q.desc, kQemuSegs + 6 * 24 + 8), 0u);
        EXPECT_EQ(get<std::uint32_t>(q.desc, kQemuSegs + 7 * 24 + 0), 0x40u);
        EXPECT_EQ(get<std::uint32_t>(q.desc, kQemuSegs + 7 * 24 + 8), 0x00008b00u);
        EXPECT_EQ(get<std::uint32_t>(q.desc, kQemuSegs + 8 * 24 + 4), 0x7fu);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuSegs + 8 * 24 + 16), v.gdt.base);
        EXPECT_EQ(get<std::uint32_t>(q.desc, kQemuSegs + 9 * 24 + 4), 0xfffu);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuSegs + 9 * 24 + 16), v.idt.base);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuCr + 0), v.cr0);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuCr + 8), 0u);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuCr + 16), v.cr2);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuCr + 24), v.cr3);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuCr + 32), v.cr4);
        EXPECT_EQ(get<std::uint64_t>(q.desc, kQemuKernelGsBase), v.kernel_gs_base);
    }
}

TEST(GuestDumpSegments, FlagsAreTheDescriptorHighDword) {
    const DumpSegment code64{.type = 0xb, .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1};
    EXPECT_EQ(qemu_segment_flags(code64), 0x00a09b00u);
    const DumpSegment user_data{.type = 0x3, .present = 1, .dpl = 3, .db = 1, .s = 1, .g = 1, .avl = 1};
    EXPECT_EQ(qemu_segment_flags(user_data), 0x00d0f300u);
    const DumpSegment unusable{.type = 0x3, .present = 1, .s = 1, .unusable = 1};
    EXPECT_EQ(qemu_segment_flags(unusable), 0x00001300u);
}

TEST_F(GuestDump, ProgressCountsGuestRamAndEndsAtTotal) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> calls;
    dump_to_file(path("core"), [&](std::uint64_t done, std::uint64_t total) { calls.emplace_back(done, total); });
    ASSERT_EQ(calls.size(), 3u);  // start, the 1 MiB chunk, the 256 KiB region
    EXPECT_EQ(calls.front().first, 0u);
    for (std::size_t i = 1; i < calls.size(); ++i) EXPECT_GT(calls[i].first, calls[i - 1].first);
    for (const auto& [done, total] : calls) EXPECT_EQ(total, kLowSize + kHighSize);
    EXPECT_EQ(calls.back().first, kLowSize + kHighSize);
}

TEST_F(GuestDump, NoRamAndNoVcpusIsStillAValidCore) {
    const GuestMemory empty;
    Fd fd = open_fd(path("core").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    EXPECT_EQ(write_guest_core(fd.get(), empty, {}), sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr));
    fd.reset();
    const Core c = parse_core(slurp(path("core")));
    EXPECT_EQ(c.eh.e_type, ET_CORE);
    ASSERT_EQ(c.ph.size(), 1u);
    EXPECT_EQ(c.ph[0].p_filesz, 0u);
}

TEST(GuestDumpProtocol, ParsesFileAndFd) {
    auto p = parse_dump_protocol("file:/var/crash/dump.core");
    EXPECT_EQ(p.kind, DumpProtocol::Kind::file);
    EXPECT_EQ(p.value, "/var/crash/dump.core");
    p = parse_dump_protocol("fd:dumpfd");
    EXPECT_EQ(p.kind, DumpProtocol::Kind::fd);
    EXPECT_EQ(p.value, "dumpfd");
    for (const char* bad : {"", "file:", "fd:", "/tmp/x", "tcp:host:1", "File:/x"}) {
        SCOPED_TRACE(bad);
        try {
            parse_dump_protocol(bad);
            ADD_FAILURE() << "accepted";
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("dump-guest-memory"));
        }
    }
}

// --- the detached job ---

// Collects the completion callback's result.
struct Completion {
    std::promise<GuestDumpJob::Result> promise;
    std::future<GuestDumpJob::Result> future = promise.get_future();
    int calls = 0;
    GuestDumpJob::CompletionCallback callback() {
        return [this](const GuestDumpJob::Result& r) {
            if (++calls == 1) promise.set_value(r);
        };
    }
};

TEST_F(GuestDump, JobWritesAFileAndReportsCompleted) {
    Completion done;
    GuestDumpJob job(guest_.memory, guest_.vcpus, parse_dump_protocol("file:" + path("core")), done.callback());
    const auto r = done.future.get();
    EXPECT_EQ(r.status, GuestDumpJob::Status::completed) << r.error;
    EXPECT_EQ(r.total, kLowSize + kHighSize);
    EXPECT_EQ(r.completed, r.total);
    EXPECT_TRUE(r.error.empty());
    const auto w = job.wait();
    EXPECT_EQ(w.status, GuestDumpJob::Status::completed);
    EXPECT_EQ(w.completed, w.total);
    EXPECT_EQ(done.calls, 1);
    EXPECT_STREQ(GuestDumpJob::status_name(w.status), "completed");

    struct stat st{};
    ASSERT_EQ(::stat(path("core").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(slurp(path("core")), dump_to_file(path("reference")));
}

TEST_F(GuestDump, JobTruncatesAnExistingFile) {
    {
        std::ofstream big(path("core"), std::ios::binary);
        big << std::string(4 << 20, 'x');
    }
    GuestDumpJob job(guest_.memory, guest_.vcpus, parse_dump_protocol("file:" + path("core")));
    ASSERT_EQ(job.wait().status, GuestDumpJob::Status::completed);
    EXPECT_EQ(std::filesystem::file_size(path("core")), compute_guest_core_layout(guest_.memory, 2).file_size);
}

TEST_F(GuestDump, JobStreamsIntoAFifo) {
    ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
    std::vector<std::uint8_t> received;
    // The reader opens after the job has started; the job waits for it on its own thread.
    Completion done;
    GuestDumpJob job(guest_.memory, guest_.vcpus, parse_dump_protocol("file:" + path("fifo")), done.callback());
    EXPECT_NE(job.result().status, GuestDumpJob::Status::failed);
    std::thread reader([&] {
        Fd in = open_fd(path("fifo").c_str(), O_RDONLY);
        std::uint8_t buf[4096];
        for (;;) {
            const ssize_t n = ::read(in.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            received.insert(received.end(), buf, buf + n);
        }
    });
    const auto r = job.wait();
    reader.join();
    EXPECT_EQ(r.status, GuestDumpJob::Status::completed) << r.error;
    EXPECT_EQ(r.completed, r.total);
    EXPECT_EQ(received, dump_to_file(path("reference")));
}

TEST_F(GuestDump, JobToADirectoryFailsWithTheReason) {
    Completion done;
    GuestDumpJob job(guest_.memory, guest_.vcpus, parse_dump_protocol("file:" + dir_), done.callback());
    const auto r = done.future.get();
    EXPECT_EQ(r.status, GuestDumpJob::Status::failed);
    EXPECT_THAT(r.error, HasSubstr(dir_));
    EXPECT_THAT(r.error, HasSubstr("Is a directory"));
    EXPECT_EQ(r.completed, 0u);
    EXPECT_EQ(r.total, kLowSize + kHighSize);
    EXPECT_EQ(job.wait().status, GuestDumpJob::Status::failed);
    EXPECT_STREQ(GuestDumpJob::status_name(r.status), "failed");
}

// "fd:NAME" names a descriptor only QMP's getfd has: a job given the protocol alone refuses it.
TEST_F(GuestDump, JobWithFdProtocolButNoDescriptorIsRefusedAtOnce) {
    try {
        GuestDumpJob job(guest_.memory, guest_.vcpus, parse_dump_protocol("fd:dump"));
        ADD_FAILURE() << "fd: accepted";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("protocol 'fd:dump' needs the descriptor itself"));
    }
}

TEST_F(GuestDump, JobWritesToAnOpenFd) {
    Fd fd = open_fd(path("core").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    GuestDumpJob job(guest_.memory, guest_.vcpus, std::move(fd));
    ASSERT_EQ(job.wait().status, GuestDumpJob::Status::completed);
    EXPECT_EQ(slurp(path("core")), dump_to_file(path("reference")));
}

TEST_F(GuestDump, DestroyingAJobWaitingForAFifoReaderCancelsIt) {
    ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
    Completion done;
    {
        GuestDumpJob job(guest_.memory, guest_.vcpus, parse_dump_protocol("file:" + path("fifo")), done.callback());
        EXPECT_EQ(job.result().status, GuestDumpJob::Status::active);
    }
    ASSERT_EQ(done.calls, 1);
    const auto r = done.future.get();
    EXPECT_EQ(r.status, GuestDumpJob::Status::failed);
    EXPECT_THAT(r.error, HasSubstr("cancelled"));
}

TEST_F(GuestDump, CancelWakesAWriterBlockedOnAFullFifo) {
    ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
    // The reader end is opened non-blocking and never read, so the pipe fills up.
    Fd in = open_fd(path("fifo").c_str(), O_RDONLY | O_NONBLOCK);
    const int capacity = ::fcntl(in.get(), F_GETPIPE_SZ);
    ASSERT_GT(capacity, 0);
    GuestDumpJob job(guest_.memory, guest_.vcpus, parse_dump_protocol("file:" + path("fifo")));
    // Full but for at most one page: a write into a partly used pipe page need not merge.
    const int full = capacity - static_cast<int>(::sysconf(_SC_PAGESIZE));
    int queued = 0;
    while (queued < full && job.result().status == GuestDumpJob::Status::active) {
        ASSERT_EQ(::ioctl(in.get(), FIONREAD, &queued), 0);
        std::this_thread::yield();
    }
    ASSERT_GE(queued, full);
    EXPECT_EQ(job.result().status, GuestDumpJob::Status::active);
    job.cancel();
    const auto r = job.wait();
    EXPECT_EQ(r.status, GuestDumpJob::Status::failed);
    EXPECT_THAT(r.error, HasSubstr("cancelled"));
    EXPECT_LT(r.completed, r.total);
}

TEST_F(GuestDump, AReaderThatGoesAwayIsEpipeNotSigpipe) {
    ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
    GuestDumpJob job(guest_.memory, guest_.vcpus, parse_dump_protocol("file:" + path("fifo")));
    {
        Fd in = open_fd(path("fifo").c_str(), O_RDONLY);
        std::uint8_t buf[512];
        ASSERT_GT(::read(in.get(), buf, sizeof buf), 0);
    }
    const auto r = job.wait();  // this process is still alive: SIGPIPE was not delivered
    EXPECT_EQ(r.status, GuestDumpJob::Status::failed);
    EXPECT_THAT(r.error, HasSubstr("Broken pipe"));
}

}  // namespace
}  // namespace vmm::dump
