// A small AML (ACPI Machine Language) byte-code builder: just what the DSDT needs — names,
// methods returning a constant, packages, buffers, strings, integers, Scope and Device, and
// _CRS resource templates. Encodings: ACPI 6.4 §20.2 (AML grammar) and §6.4 (resource data
// types). Each function returns the encoded term; terms are concatenated into term lists.
//
// Pure functions, no state: callable from any thread. Malformed input (a bad name, a package
// of more than 255 elements, a PkgLength over 256 MiB) is a programming error and throws
// vmm::Error.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace vmm::x86::acpi::aml {

using Bytes = std::vector<std::uint8_t>;

// A NameString (§20.2.2): "\\_SB.PCI0", "^FOO", "_S5" ("_S5_" on the wire: segments shorter
// than four characters are padded with '_'). Segments are [A-Z_][A-Z0-9_]{0,3}.
Bytes name_string(std::string_view path);

// The PkgLength encoding (§20.2.4) of a package whose body (after PkgLength) is `body` bytes.
Bytes pkg_length(std::size_t body);

// Data objects.
Bytes integer(std::uint64_t v);         // ZeroOp, OneOp, Byte/Word/DWord/QWordConst
Bytes string(std::string_view s);       // StringPrefix ... NUL (ASCII, no NUL inside)
Bytes eisa_id(std::string_view id);     // EisaId("PNP0A08") as a DWordConst (§6.1.5)
Bytes package(const std::vector<Bytes>& elements);  // PackageOp, at most 255 elements
Bytes buffer(const Bytes& data);        // BufferOp with a constant size

// Named objects and scopes. `body` is a term list (concatenated terms).
Bytes name(std::string_view path, const Bytes& value);   // Name(path, value)
Bytes scope(std::string_view path, const Bytes& body);   // Scope(path) { body }
Bytes device(std::string_view path, const Bytes& body);  // Device(path) { body }
// Method(path, argc, NotSerialized) { body }
Bytes method(std::string_view path, unsigned argc, const Bytes& body);
Bytes return_value(const Bytes& value);                   // Return(value)

// Concatenates terms.
Bytes concat(std::initializer_list<Bytes> parts);
void append(Bytes& to, const Bytes& what);

// A resource template (§6.4): descriptors in order, ended by an End Tag; to_aml() is the
// Buffer a _CRS name holds (ResourceTemplate() in ASL).
class ResourceTemplate {
public:
    // IO(Decode16, min, max, alignment, length) — §6.4.2.5.
    ResourceTemplate& io(std::uint16_t min, std::uint16_t max, std::uint8_t alignment, std::uint8_t length);
    // IRQNoFlags() {irqs...} — §6.4.2.1, edge-triggered, active-high ISA IRQs 0..15.
    ResourceTemplate& irq_no_flags(std::initializer_list<unsigned> irqs);
    // Interrupt(ResourceConsumer, level|edge, active-high|low, Exclusive) {gsi} — §6.4.3.6.
    ResourceTemplate& interrupt(std::uint32_t gsi, bool level, bool active_low);
    // Memory32Fixed(ReadWrite, base, length) — §6.4.3.4.
    ResourceTemplate& memory32_fixed(std::uint32_t base, std::uint32_t length);
    // WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, n) — §6.4.3.5.3.
    ResourceTemplate& word_bus_number(std::uint16_t min, std::uint16_t max);
    // WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, n).
    ResourceTemplate& word_io(std::uint16_t min, std::uint16_t max);
    // DWordMemory(ResourceProducer|Consumer, PosDecode, MinFixed, MaxFixed, NonCacheable|Cacheable,
    // ReadWrite, 0, min, max, 0, n) — §6.4.3.5.2.
    ResourceTemplate& dword_memory(std::uint32_t min, std::uint32_t max, bool cacheable, bool producer = true);
    // QWordMemory(..., same flags) — §6.4.3.5.1.
    ResourceTemplate& qword_memory(std::uint64_t min, std::uint64_t max, bool cacheable, bool producer = true);

    // The descriptors followed by the End Tag (checksum byte 0: "treated as correct").
    Bytes descriptors() const;
    Bytes to_aml() const { return buffer(descriptors()); }

private:
    Bytes bytes_;
};

}  // namespace vmm::x86::acpi::aml
