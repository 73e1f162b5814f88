#include "jail/systemd_scope.h"

#include "common/error.h"
#include "common/fd.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace vmm::jail {

namespace {

// D-Bus marshalling, little-endian; offsets count from the start of the message (header and
// body are both 8-aligned there, so alignment within the body is the same).
class Writer {
public:
    std::vector<std::uint8_t> bytes;

    void align(std::size_t n) {
        while (bytes.size() % n) bytes.push_back(0);
    }
    void u8(std::uint8_t v) { bytes.push_back(v); }
    void u32(std::uint32_t v) {
        align(4);
        for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    void u64(std::uint64_t v) {
        align(8);
        for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    void put_u32_at(std::size_t at, std::uint32_t v) {
        for (int i = 0; i < 4; ++i) bytes[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
    }
    void str(const std::string& s) {  // STRING and OBJECT_PATH
        u32(static_cast<std::uint32_t>(s.size()));
        bytes.insert(bytes.end(), s.begin(), s.end());
        bytes.push_back(0);
    }
    void sig(const std::string& s) {  // SIGNATURE
        u8(static_cast<std::uint8_t>(s.size()));
        bytes.insert(bytes.end(), s.begin(), s.end());
        bytes.push_back(0);
    }
    // An array: its length is patched by end_array; the padding to the first element (8 for
    // structs) is there even when the array is empty and is not counted in the length.
    std::size_t begin_array(std::size_t element_alignment) {
        u32(0);
        const std::size_t length_at = bytes.size() - 4;
        align(element_alignment);
        start_.push_back(bytes.size());
        return length_at;
    }
    void end_array(std::size_t length_at) {
        put_u32_at(length_at, static_cast<std::uint32_t>(bytes.size() - start_.back()));
        start_.pop_back();
    }

private:
    std::vector<std::size_t> start_;
};

constexpr std::uint8_t kMethodCall = 1, kMethodReturn = 2, kError = 3;
constexpr std::uint8_t kFieldPath = 1, kFieldInterface = 2, kFieldMember = 3, kFieldErrorName = 4,
                       kFieldReplySerial = 5, kFieldDestination = 6, kFieldSignature = 8;
constexpr std::size_t kMaxMessage = 1 << 20;  // a reply to this call is a few hundred bytes

void header_field(Writer& w, std::uint8_t code, const char* type, const std::string& value) {
    w.align(8);
    w.u8(code);
    w.sig(type);
    if (std::strcmp(type, "g") == 0)
        w.sig(value);
    else
        w.str(value);
}

// property (sv) helpers: the variant's signature, then its value.
void property_string(Writer& w, const std::string& name, const std::string& value) {
    w.align(8);
    w.str(name);
    w.sig("s");
    w.str(value);
}
void property_u64(Writer& w, const std::string& name, std::uint64_t value) {
    w.align(8);
    w.str(name);
    w.sig("t");
    w.u64(value);
}

void send_all(int fd, const void* data, std::size_t size) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (size > 0) {
        const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("systemd bus: send");
        }
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

class Reader {
public:
    Reader(int fd, std::chrono::steady_clock::time_point deadline) : fd_(fd), deadline_(deadline) {}

    // Reads exactly n more bytes into buf_.
    void fill(std::size_t n) {
        const std::size_t want = buf_.size() + n;
        while (buf_.size() < want) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
            if (left.count() <= 0) throw Error("systemd bus: no answer in time");
            pollfd p{fd_, POLLIN, 0};
            const int r = ::poll(&p, 1, static_cast<int>(left.count()));
            if (r < 0 && errno != EINTR) throw_errno("systemd bus: poll");
            if (r <= 0) continue;
            std::uint8_t chunk[512];
            const ssize_t got = ::recv(fd_, chunk, std::min(sizeof chunk, want - buf_.size()), 0);
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) throw_errno("systemd bus: recv");
            if (got == 0) throw Error("systemd bus: the connection was closed");
            buf_.insert(buf_.end(), chunk, chunk + got);
        }
    }
    // One line of the authentication exchange, without its "\r\n".
    std::string line() {
        buf_.clear();
        while (buf_.size() < 2 || buf_[buf_.size() - 2] != '\r' || buf_.back() != '\n') {
            if (buf_.size() > 512) throw Error("systemd bus: authentication line too long");
            fill(1);
        }
        return std::string(buf_.begin(), buf_.end() - 2);
    }
    std::vector<std::uint8_t>& buffer() { return buf_; }

private:
    int fd_;
    std::chrono::steady_clock::time_point deadline_;
    std::vector<std::uint8_t> buf_;
};

std::uint32_t le32(const std::vector<std::uint8_t>& b, std::size_t at) {
    if (at + 4 > b.size()) throw Error("systemd bus: truncated message");
    return static_cast<std::uint32_t>(b[at]) | static_cast<std::uint32_t>(b[at + 1]) << 8 |
           static_cast<std::uint32_t>(b[at + 2]) << 16 | static_cast<std::uint32_t>(b[at + 3]) << 24;
}

std::size_t aligned(std::size_t at, std::size_t n) { return (at + n - 1) / n * n; }

// A STRING/OBJECT_PATH at `at` (aligned to 4 first), bounded by `end`.
std::string read_string(const std::vector<std::uint8_t>& b, std::size_t& at, std::size_t end) {
    at = aligned(at, 4);
    const std::uint32_t len = le32(b, at);
    if (at + 4 + len + 1 > end) throw Error("systemd bus: string runs past its message");
    std::string s(b.begin() + static_cast<std::ptrdiff_t>(at + 4), b.begin() + static_cast<std::ptrdiff_t>(at + 4 + len));
    at += 4 + len + 1;
    return s;
}

struct Message {
    std::uint8_t type = 0;
    std::optional<std::uint32_t> reply_serial;
    std::string error_name;
    std::string signature;
    std::vector<std::uint8_t> body;
};

// Reads one message; only its fixed header, the fields this call needs and the body are kept.
Message read_message(Reader& r) {
    auto& b = r.buffer();
    b.clear();
    r.fill(16);
    if (b[0] != 'l') throw Error("systemd bus: a big-endian or garbled message (first byte " + std::to_string(b[0]) + ")");
    Message m;
    m.type = b[1];
    const std::uint32_t body_len = le32(b, 4), fields_len = le32(b, 12);
    if (body_len > kMaxMessage || fields_len > kMaxMessage) throw Error("systemd bus: message too large");
    const std::size_t fields_end = 16 + fields_len, body_start = aligned(fields_end, 8);
    r.fill(body_start + body_len - 16);
    for (std::size_t at = 16; at < fields_end;) {
        at = aligned(at, 8);
        if (at + 4 > fields_end) throw Error("systemd bus: truncated header field");
        const std::uint8_t code = b[at], sig_len = b[at + 1];
        if (sig_len != 1) throw Error("systemd bus: unexpected header field signature");
        const char type = static_cast<char>(b[at + 2]);
        at += 4;  // code, signature length, type, NUL
        if (type == 'u') {
            at = aligned(at, 4);
            if (code == kFieldReplySerial) m.reply_serial = le32(b, at);
            at += 4;
        } else if (type == 's' || type == 'o') {
            std::string s = read_string(b, at, fields_end);
            if (code == kFieldErrorName) m.error_name = std::move(s);
        } else if (type == 'g') {
            if (at >= fields_end || at + 1 + b[at] + 1 > fields_end) throw Error("systemd bus: truncated signature");
            if (code == kFieldSignature)
                m.signature.assign(b.begin() + static_cast<std::ptrdiff_t>(at + 1),
                                   b.begin() + static_cast<std::ptrdiff_t>(at + 1 + b[at]));
            at += 1 + b[at] + 1;
        } else if (type == 'h') {
            at = aligned(at, 4) + 4;  // UNIX_FDS: none are expected, skip
        } else {
            throw Error(std::string("systemd bus: unexpected header field type '") + type + "'");
        }
    }
    m.body.assign(b.begin() + static_cast<std::ptrdiff_t>(body_start), b.end());
    return m;
}

}  // namespace

std::string scope_cgroup_path(const ScopeRequest& request) {
    const std::string suffix = ".slice";
    const std::string& slice = request.slice;
    if (slice.size() <= suffix.size() || slice.compare(slice.size() - suffix.size(), suffix.size(), suffix) != 0)
        throw Error("systemd: \"" + slice + "\" is not a slice's name");
    if (slice == "-.slice") return "/" + request.unit;
    const std::string stem = slice.substr(0, slice.size() - suffix.size());
    std::string path;
    for (std::size_t dash = stem.find('-'); dash != std::string::npos; dash = stem.find('-', dash + 1))
        path += "/" + stem.substr(0, dash) + suffix;
    return path + "/" + slice + "/" + request.unit;
}

std::vector<std::uint8_t> start_transient_unit_message(const ScopeRequest& q, std::uint32_t serial) {
    Writer body;
    body.str(q.unit);
    body.str("fail");
    const std::size_t props = body.begin_array(8);
    property_string(body, "Description", q.description);
    property_string(body, "Slice", q.slice);
    property_string(body, "CollectMode", "inactive-or-failed");
    if (q.memory_max) property_u64(body, "MemoryMax", *q.memory_max);
    if (q.cpu_quota_per_sec_us) property_u64(body, "CPUQuotaPerSecUSec", *q.cpu_quota_per_sec_us);
    body.align(8);
    body.str("PIDs");
    body.sig("au");
    const std::size_t pids = body.begin_array(4);
    body.u32(static_cast<std::uint32_t>(q.pid));
    body.end_array(pids);
    body.end_array(props);
    const std::size_t aux = body.begin_array(8);  // no auxiliary units
    body.end_array(aux);

    Writer m;
    m.u8('l');
    m.u8(kMethodCall);
    m.u8(0);  // flags: a reply is wanted
    m.u8(1);  // protocol version
    m.u32(static_cast<std::uint32_t>(body.bytes.size()));
    m.u32(serial);
    const std::size_t fields = m.begin_array(8);
    header_field(m, kFieldPath, "o", "/org/freedesktop/systemd1");
    header_field(m, kFieldInterface, "s", "org.freedesktop.systemd1.Manager");
    header_field(m, kFieldMember, "s", "StartTransientUnit");
    header_field(m, kFieldDestination, "s", "org.freedesktop.systemd1");
    header_field(m, kFieldSignature, "g", "ssa(sv)a(sa(sv))");
    m.end_array(fields);
    m.align(8);
    m.bytes.insert(m.bytes.end(), body.bytes.begin(), body.bytes.end());
    return m.bytes;
}

std::string start_transient_scope(const std::string& socket_path, const ScopeRequest& request,
                                  std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw_errno("systemd bus: socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) throw Error("systemd bus: socket path too long: " + socket_path);
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
        throw_errno("systemd bus: connect " + socket_path);

    // SASL EXTERNAL: the kernel vouches for our uid (SO_PEERCRED); hex of its decimal digits.
    std::string uid_hex;
    for (char c : std::to_string(::geteuid())) {
        static const char* digits = "0123456789abcdef";
        uid_hex += digits[static_cast<unsigned char>(c) >> 4];
        uid_hex += digits[static_cast<unsigned char>(c) & 15];
    }
    const std::string auth = std::string(1, '\0') + "AUTH EXTERNAL " + uid_hex + "\r\n";
    send_all(fd.get(), auth.data(), auth.size());
    Reader r(fd.get(), deadline);
    const std::string answer = r.line();
    if (answer.rfind("OK ", 0) != 0) throw Error("systemd bus: " + socket_path + " refused authentication: " + answer);

    constexpr std::uint32_t kSerial = 1;
    std::vector<std::uint8_t> msg = {'B', 'E', 'G', 'I', 'N', '\r', '\n'};
    const auto call = start_transient_unit_message(request, kSerial);
    msg.insert(msg.end(), call.begin(), call.end());
    send_all(fd.get(), msg.data(), msg.size());

    for (;;) {
        Message m = read_message(r);
        if (m.reply_serial != kSerial) continue;  // not ours (a signal, say)
        if (m.type == kError) {
            std::string text;
            if (m.signature.rfind("s", 0) == 0) {
                std::size_t at = 0;
                text = ": " + read_string(m.body, at, m.body.size());
            }
            throw Error("systemd: " + m.error_name + text);
        }
        if (m.type != kMethodReturn) continue;
        if (m.signature != "o") throw Error("systemd bus: StartTransientUnit answered with signature '" + m.signature + "'");
        std::size_t at = 0;
        return read_string(m.body, at, m.body.size());
    }
}

}  // namespace vmm::jail
