#include "x86/acpi/aml.h"

#include "common/error.h"

#include <string>

namespace vmm::x86::acpi::aml {

namespace {

// AML opcodes (ACPI 6.4 §20.3, §20.2.5).
constexpr std::uint8_t kZeroOp = 0x00;
constexpr std::uint8_t kOneOp = 0x01;
constexpr std::uint8_t kNameOp = 0x08;
constexpr std::uint8_t kBytePrefix = 0x0a;
constexpr std::uint8_t kWordPrefix = 0x0b;
constexpr std::uint8_t kDWordPrefix = 0x0c;
constexpr std::uint8_t kStringPrefix = 0x0d;
constexpr std::uint8_t kQWordPrefix = 0x0e;
constexpr std::uint8_t kScopeOp = 0x10;
constexpr std::uint8_t kBufferOp = 0x11;
constexpr std::uint8_t kPackageOp = 0x12;
constexpr std::uint8_t kMethodOp = 0x14;
constexpr std::uint8_t kDualNamePrefix = 0x2e;
constexpr std::uint8_t kMultiNamePrefix = 0x2f;
constexpr std::uint8_t kExtOpPrefix = 0x5b;
constexpr std::uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr std::uint8_t kRootChar = '\\';
constexpr std::uint8_t kParentPrefixChar = '^';
constexpr std::uint8_t kReturnOp = 0xa4;

// Resource descriptor tags (§6.4.2 small, §6.4.3 large).
constexpr std::uint8_t kSmallIrqNoFlags = 0x22;  // IRQ, length 2
constexpr std::uint8_t kSmallIo = 0x47;          // I/O port, length 7
constexpr std::uint8_t kSmallEndTag = 0x79;      // End Tag, length 1
constexpr std::uint8_t kLargeMemory32Fixed = 0x86;
constexpr std::uint8_t kLargeDWordAddress = 0x87;
constexpr std::uint8_t kLargeWordAddress = 0x88;
constexpr std::uint8_t kLargeExtendedIrq = 0x89;
constexpr std::uint8_t kLargeQWordAddress = 0x8a;

// Address space descriptors: resource type and general flags (§6.4.3.5, Table 6.45).
constexpr std::uint8_t kResourceMemory = 0, kResourceIo = 1, kResourceBus = 2;
constexpr std::uint8_t kGeneralConsumer = 1 << 0;  // else ResourceProducer
constexpr std::uint8_t kGeneralMinFixed = 1 << 2;
constexpr std::uint8_t kGeneralMaxFixed = 1 << 3;
constexpr std::uint8_t kMemReadWrite = 1 << 0;
constexpr std::uint8_t kMemCacheable = 1 << 1;  // _MEM = 1
constexpr std::uint8_t kIoEntireRange = 3;      // _RNG = 3

template <typename T>
void put_le(Bytes& b, T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) b.push_back(static_cast<std::uint8_t>(std::uint64_t(v) >> (8 * i)));
}

bool lead_char(char c) { return (c >= 'A' && c <= 'Z') || c == '_'; }
bool name_char(char c) { return lead_char(c) || (c >= '0' && c <= '9'); }

// A term with a PkgLength: opcode bytes, PkgLength, body.
Bytes with_pkg_length(std::initializer_list<std::uint8_t> op, const Bytes& body) {
    Bytes out(op);
    append(out, pkg_length(body.size()));
    append(out, body);
    return out;
}

}  // namespace

void append(Bytes& to, const Bytes& what) { to.insert(to.end(), what.begin(), what.end()); }

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) append(out, p);
    return out;
}

Bytes name_string(std::string_view path) {
    Bytes out;
    std::size_t i = 0;
    if (!path.empty() && path[0] == '\\') {
        out.push_back(kRootChar);
        i = 1;
    } else {
        while (i < path.size() && path[i] == '^') {
            out.push_back(kParentPrefixChar);
            ++i;
        }
    }
    std::vector<std::string> segs;
    std::string_view rest = path.substr(i);
    while (!rest.empty()) {
        const auto dot = rest.find('.');
        const std::string_view seg = rest.substr(0, dot);
        if (seg.empty() || seg.size() > 4 || !lead_char(seg[0])) throw Error("AML: bad name segment in '" + std::string(path) + "'");
        for (char c : seg) {
            if (!name_char(c)) throw Error("AML: bad character in name '" + std::string(path) + "'");
        }
        std::string s(seg);
        s.resize(4, '_');
        segs.push_back(s);
        if (dot == std::string_view::npos) break;
        rest = rest.substr(dot + 1);
        if (rest.empty()) throw Error("AML: name ends with '.': '" + std::string(path) + "'");
    }
    if (segs.empty()) {
        out.push_back(0x00);  // NullName: only valid after a prefix ("\\" is the root)
        return out;
    }
    if (segs.size() == 2) out.push_back(kDualNamePrefix);
    if (segs.size() > 2) {
        if (segs.size() > 255) throw Error("AML: name too long");
        out.push_back(kMultiNamePrefix);
        out.push_back(static_cast<std::uint8_t>(segs.size()));
    }
    for (const auto& s : segs) out.insert(out.end(), s.begin(), s.end());
    return out;
}

Bytes pkg_length(std::size_t body) {
    // The encoded length counts the PkgLength bytes themselves (§20.2.4): one byte holds up
    // to 63; with n following bytes the lead byte holds 4 bits and each follower 8 more.
    if (body + 1 <= 0x3f) return {static_cast<std::uint8_t>(body + 1)};
    for (std::size_t extra = 1; extra <= 3; ++extra) {
        const std::size_t total = body + 1 + extra;
        if (total < (std::size_t(1) << (4 + 8 * extra))) {
            Bytes out;
            out.push_back(static_cast<std::uint8_t>((extra << 6) | (total & 0x0f)));
            for (std::size_t k = 0; k < extra; ++k) out.push_back(static_cast<std::uint8_t>(total >> (4 + 8 * k)));
            return out;
        }
    }
    throw Error("AML: package longer than 256 MiB");
}

Bytes integer(std::uint64_t v) {
    Bytes out;
    if (v == 0) return {kZeroOp};
    if (v == 1) return {kOneOp};
    if (v <= 0xff) {
        out.push_back(kBytePrefix);
        put_le<std::uint8_t>(out, static_cast<std::uint8_t>(v));
    } else if (v <= 0xffff) {
        out.push_back(kWordPrefix);
        put_le<std::uint16_t>(out, static_cast<std::uint16_t>(v));
    } else if (v <= 0xffffffff) {
        out.push_back(kDWordPrefix);
        put_le<std::uint32_t>(out, static_cast<std::uint32_t>(v));
    } else {
        out.push_back(kQWordPrefix);
        put_le<std::uint64_t>(out, v);
    }
    return out;
}

Bytes string(std::string_view s) {
    Bytes out{kStringPrefix};
    for (char c : s) {
        if (c == '\0' || static_cast<unsigned char>(c) > 0x7f) throw Error("AML: string must be ASCII without NUL");
        out.push_back(static_cast<std::uint8_t>(c));
    }
    out.push_back(0);
    return out;
}

Bytes eisa_id(std::string_view id) {
    // Three upper-case letters, five bits each (A = 1), then four hex digits, stored
    // big-endian in a DWord (§6.1.5 _HID, "EISA type ID").
    auto bad = [&] { return Error("AML: bad EISA id '" + std::string(id) + "'"); };
    if (id.size() != 7) throw bad();
    std::uint32_t v = 0;
    for (int i = 0; i < 3; ++i) {
        if (id[i] < 'A' || id[i] > 'Z') throw bad();
        v = (v << 5) | std::uint32_t(id[i] - 0x40);
    }
    for (int i = 3; i < 7; ++i) {
        const char c = id[i];
        std::uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else throw bad();
        v = (v << 4) | d;
    }
    const std::uint32_t swapped = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | (v >> 24);
    Bytes out{kDWordPrefix};  // always a DWordConst, as iasl emits it
    put_le<std::uint32_t>(out, swapped);
    return out;
}

Bytes package(const std::vector<Bytes>& elements) {
    if (elements.size() > 255) throw Error("AML: package of more than 255 elements");
    Bytes body{static_cast<std::uint8_t>(elements.size())};
    for (const auto& e : elements) append(body, e);
    return with_pkg_length({kPackageOp}, body);
}

Bytes buffer(const Bytes& data) {
    Bytes body = integer(data.size());
    append(body, data);
    return with_pkg_length({kBufferOp}, body);
}

Bytes name(std::string_view path, const Bytes& value) {
    Bytes out{kNameOp};
    append(out, name_string(path));
    append(out, value);
    return out;
}

Bytes scope(std::string_view path, const Bytes& body) {
    return with_pkg_length({kScopeOp}, concat({name_string(path), body}));
}

Bytes device(std::string_view path, const Bytes& body) {
    return with_pkg_length({kExtOpPrefix, kDeviceOp}, concat({name_string(path), body}));
}

Bytes method(std::string_view path, unsigned argc, const Bytes& body) {
    if (argc > 7) throw Error("AML: a method takes at most 7 arguments");
    Bytes head = name_string(path);
    head.push_back(static_cast<std::uint8_t>(argc));  // MethodFlags: NotSerialized, SyncLevel 0
    return with_pkg_length({kMethodOp}, concat({head, body}));
}

Bytes return_value(const Bytes& value) { return concat({Bytes{kReturnOp}, value}); }

ResourceTemplate& ResourceTemplate::io(std::uint16_t min, std::uint16_t max, std::uint8_t alignment,
                                       std::uint8_t length) {
    bytes_.push_back(kSmallIo);
    bytes_.push_back(0x01);  // _DEC: decodes 16 address bits
    put_le(bytes_, min);
    put_le(bytes_, max);
    bytes_.push_back(alignment);
    bytes_.push_back(length);
    return *this;
}

ResourceTemplate& ResourceTemplate::irq_no_flags(std::initializer_list<unsigned> irqs) {
    std::uint16_t mask = 0;
    for (unsigned irq : irqs) {
        if (irq > 15) throw Error("AML: IRQ descriptor holds ISA IRQs 0..15 only");
        mask |= std::uint16_t(1u << irq);
    }
    bytes_.push_back(kSmallIrqNoFlags);
    put_le(bytes_, mask);
    return *this;
}

ResourceTemplate& ResourceTemplate::interrupt(std::uint32_t gsi, bool level, bool active_low) {
    bytes_.push_back(kLargeExtendedIrq);
    put_le<std::uint16_t>(bytes_, 6);  // flags, count, one DWord
    std::uint8_t flags = kGeneralConsumer;
    if (!level) flags |= 1 << 1;       // _HE: edge
    if (active_low) flags |= 1 << 2;   // _LL
    bytes_.push_back(flags);           // _SHR = Exclusive, not wake capable
    bytes_.push_back(1);
    put_le(bytes_, gsi);
    return *this;
}

ResourceTemplate& ResourceTemplate::memory32_fixed(std::uint32_t base, std::uint32_t length) {
    bytes_.push_back(kLargeMemory32Fixed);
    put_le<std::uint16_t>(bytes_, 9);
    bytes_.push_back(kMemReadWrite);
    put_le(bytes_, base);
    put_le(bytes_, length);
    return *this;
}

ResourceTemplate& ResourceTemplate::word_bus_number(std::uint16_t min, std::uint16_t max) {
    bytes_.push_back(kLargeWordAddress);
    put_le<std::uint16_t>(bytes_, 13);
    bytes_.push_back(kResourceBus);
    bytes_.push_back(kGeneralMinFixed | kGeneralMaxFixed);
    bytes_.push_back(0);
    for (std::uint16_t v : {std::uint16_t(0), min, max, std::uint16_t(0), std::uint16_t(max - min + 1)}) put_le(bytes_, v);
    return *this;
}

ResourceTemplate& ResourceTemplate::word_io(std::uint16_t min, std::uint16_t max) {
    bytes_.push_back(kLargeWordAddress);
    put_le<std::uint16_t>(bytes_, 13);
    bytes_.push_back(kResourceIo);
    bytes_.push_back(kGeneralMinFixed | kGeneralMaxFixed);
    bytes_.push_back(kIoEntireRange);
    for (std::uint16_t v : {std::uint16_t(0), min, max, std::uint16_t(0), std::uint16_t(max - min + 1)}) put_le(bytes_, v);
    return *this;
}

ResourceTemplate& ResourceTemplate::dword_memory(std::uint32_t min, std::uint32_t max, bool cacheable, bool producer) {
    if (max < min) throw Error("AML: memory range ends before it starts");
    bytes_.push_back(kLargeDWordAddress);
    put_le<std::uint16_t>(bytes_, 23);
    bytes_.push_back(kResourceMemory);
    bytes_.push_back(std::uint8_t((producer ? 0 : kGeneralConsumer) | kGeneralMinFixed | kGeneralMaxFixed));
    bytes_.push_back(std::uint8_t(kMemReadWrite | (cacheable ? kMemCacheable : 0)));
    for (std::uint32_t v : {std::uint32_t(0), min, max, std::uint32_t(0), std::uint32_t(max - min + 1)}) put_le(bytes_, v);
    return *this;
}

ResourceTemplate& ResourceTemplate::qword_memory(std::uint64_t min, std::uint64_t max, bool cacheable, bool producer) {
    if (max < min) throw Error("AML: memory range ends before it starts");
    bytes_.push_back(kLargeQWordAddress);
    put_le<std::uint16_t>(bytes_, 43);
    bytes_.push_back(kResourceMemory);
    bytes_.push_back(std::uint8_t((producer ? 0 : kGeneralConsumer) | kGeneralMinFixed | kGeneralMaxFixed));
    bytes_.push_back(std::uint8_t(kMemReadWrite | (cacheable ? kMemCacheable : 0)));
    for (std::uint64_t v : {std::uint64_t(0), min, max, std::uint64_t(0), max - min + 1}) put_le(bytes_, v);
    return *this;
}

Bytes ResourceTemplate::descriptors() const {
    Bytes out = bytes_;
    out.push_back(kSmallEndTag);
    out.push_back(0);  // checksum 0: "treated as if the checksum operation succeeded"
    return out;
}

}  // namespace vmm::x86::acpi::aml
