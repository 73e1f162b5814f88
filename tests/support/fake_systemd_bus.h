// FakeSystemdBus: a stand-in for PID 1's private D-Bus socket that answers StartTransientUnit,
// for tests of jail/systemd_scope.h and of vmmd's --systemd-slice without systemd. It takes one
// connection per call: checks the SASL EXTERNAL exchange (the uid in hex), keeps the method
// call's bytes and answers with the job's path, or with the error it was told to give. The
// replies are built here byte by byte (not with the code under test).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <chrono>
#include <condition_variable>
#include <string>
#include <thread>
#include <vector>

namespace vmm::test {

class FakeSystemdBus {
public:
    explicit FakeSystemdBus(std::string path) : path_(std::move(path)) {
        listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
        ::unlink(path_.c_str());
        ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        ::listen(listener_, 8);
        thread_ = std::thread([this] { serve(); });
    }
    ~FakeSystemdBus() {
        {
            std::lock_guard lock(mu_);
            closing_ = true;
        }
        wake_.notify_all();
        ::shutdown(listener_, SHUT_RDWR);
        thread_.join();
        ::close(listener_);
        ::unlink(path_.c_str());
    }
    // The next calls are answered with this D-Bus error instead of a job ("" again: success).
    void fail_with(const std::string& name, const std::string& message) {
        std::lock_guard lock(mu_);
        error_name_ = name;
        error_message_ = message;
    }
    // The next answers come this late (a busy or hung PID 1); 0 again: at once.
    void delay_answers(std::chrono::milliseconds delay) {
        std::lock_guard lock(mu_);
        delay_ = delay;
    }
    // The method calls received so far, each as its bytes; and what went wrong, if anything.
    std::vector<std::vector<std::uint8_t>> calls() const {
        std::lock_guard lock(mu_);
        return calls_;
    }
    // When each answer was sent (or, for a client that gave up, would have been).
    std::vector<std::chrono::steady_clock::time_point> answered() const {
        std::lock_guard lock(mu_);
        return answered_;
    }
    std::string problem() const {
        std::lock_guard lock(mu_);
        return problem_;
    }

private:
    static void put32(std::vector<std::uint8_t>& b, std::uint32_t v) {
        while (b.size() % 4) b.push_back(0);
        for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    static void put_string(std::vector<std::uint8_t>& b, const std::string& s) {
        put32(b, static_cast<std::uint32_t>(s.size()));
        b.insert(b.end(), s.begin(), s.end());
        b.push_back(0);
    }
    // A reply: METHOD_RETURN (2) with body "o" or ERROR (3) with ERROR_NAME and body "s".
    static std::vector<std::uint8_t> reply(std::uint32_t reply_serial, const std::string& error_name,
                                           const std::string& text) {
        const bool error = !error_name.empty();
        std::vector<std::uint8_t> body;
        put_string(body, text);
        std::vector<std::uint8_t> fields;
        auto field_start = [&](std::uint8_t code, char type) {
            while (fields.size() % 8) fields.push_back(0);
            fields.insert(fields.end(), {code, 1, static_cast<std::uint8_t>(type), 0});
        };
        // Offsets in `fields` equal offsets in the message minus 16, so 4/8-alignment holds.
        field_start(5, 'u');
        put32(fields, reply_serial);
        if (error) {
            field_start(4, 's');
            put_string(fields, error_name);
        }
        field_start(8, 'g');
        fields.insert(fields.end(), {1, static_cast<std::uint8_t>(error ? 's' : 'o'), 0});
        std::vector<std::uint8_t> m = {'l', static_cast<std::uint8_t>(error ? 3 : 2), 0, 1};
        put32(m, static_cast<std::uint32_t>(body.size()));
        put32(m, 7);  // this reply's own serial
        put32(m, static_cast<std::uint32_t>(fields.size()));
        m.insert(m.end(), fields.begin(), fields.end());
        while (m.size() % 8) m.push_back(0);
        m.insert(m.end(), body.begin(), body.end());
        return m;
    }
    static bool read_n(int fd, std::vector<std::uint8_t>& into, std::size_t n) {
        const std::size_t want = into.size() + n;
        while (into.size() < want) {
            std::uint8_t c[256];
            const ssize_t got = ::recv(fd, c, std::min(sizeof c, want - into.size()), 0);
            if (got <= 0) return false;
            into.insert(into.end(), c, c + got);
        }
        return true;
    }
    static std::string read_line(int fd) {
        std::vector<std::uint8_t> b;
        while (b.size() < 2 || b[b.size() - 2] != '\r' || b.back() != '\n')
            if (b.size() > 256 || !read_n(fd, b, 1)) return "<eof>";
        return std::string(b.begin(), b.end() - 2);
    }
    void note(const std::string& p) {
        std::lock_guard lock(mu_);
        if (problem_.empty()) problem_ = p;
    }
    void serve() {
        for (;;) {
            const int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) return;
            std::string uid_hex;
            for (char d : std::to_string(::geteuid())) {
                const char* hex = "0123456789abcdef";
                uid_hex += hex[static_cast<unsigned char>(d) >> 4];
                uid_hex += hex[static_cast<unsigned char>(d) & 15];
            }
            const std::string auth = read_line(c);
            if (auth != std::string(1, '\0') + "AUTH EXTERNAL " + uid_hex) note("auth line: " + auth);
            const std::string ok = "OK 0123456789abcdef0123456789abcdef\r\n";
            ::send(c, ok.data(), ok.size(), MSG_NOSIGNAL);
            if (read_line(c) != "BEGIN") note("no BEGIN");
            std::vector<std::uint8_t> m;
            if (read_n(c, m, 16)) {
                auto le32 = [&](std::size_t at) {
                    return static_cast<std::uint32_t>(m[at]) | m[at + 1] << 8 | m[at + 2] << 16 |
                           static_cast<std::uint32_t>(m[at + 3]) << 24;
                };
                const std::uint32_t body = le32(4), serial = le32(8), fields = le32(12);
                const std::size_t header = (16 + fields + 7) / 8 * 8;
                if (read_n(c, m, header + body - 16)) {
                    std::string name, text;
                    {
                        std::unique_lock lock(mu_);
                        calls_.push_back(m);
                        name = error_name_;
                        text = error_message_;
                        wake_.wait_for(lock, delay_, [this] { return closing_; });
                        answered_.push_back(std::chrono::steady_clock::now());
                    }
                    const auto r = reply(serial, name, name.empty() ? "/org/freedesktop/systemd1/job/42" : text);
                    ::send(c, r.data(), r.size(), MSG_NOSIGNAL);
                } else {
                    note("truncated method call");
                }
            }
            ::close(c);
        }
    }

    std::string path_;
    int listener_ = -1;
    std::thread thread_;
    mutable std::mutex mu_;
    std::condition_variable wake_;
    bool closing_ = false;
    std::chrono::milliseconds delay_{0};
    std::vector<std::chrono::steady_clock::time_point> answered_;
    std::vector<std::vector<std::uint8_t>> calls_;
    std::string error_name_, error_message_, problem_;
};

}  // namespace vmm::test
