// SocketConsole: a virtio-console port on a unix stream socket the anchor listens on (manifest
// consoles[i] {"kind": "socket", "path": P}; QEMU's -chardev socket,server=on,wait=off).
// One client at a time, as QEMU's socket chardev: a new connection replaces the old one.
// Guest output waits in a bounded buffer (oldest dropped past kPendingMax) while nobody is
// connected or the client is slow, and goes out when a client connects: the guest never blocks
// on a console nobody reads. Client input goes to `feed` (the device buffers what the guest
// has no receive buffers for).
//
// Threads: the accept/read/write work runs on the io_context given (the anchor's notify
// thread); write() (the device's output, any thread) and flush() (the main loop's timer) lock
// the buffer and only post work to that io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace vmm::anchor {

class SocketConsole : public std::enable_shared_from_this<SocketConsole> {
public:
    static constexpr std::size_t kPendingMax = 64 * 1024;
    using Feed = std::function<void(std::span<const std::uint8_t>)>;

    // Binds and listens on `path` (mode 0600). A stale socket left there is replaced; any other
    // file is an error (vmm::Error naming the path). Call start() to accept.
    static std::shared_ptr<SocketConsole> create(boost::asio::io_context& io, const std::string& path, Feed feed);
    ~SocketConsole();

    // Called on the io_context thread when a client connects (true) and when the connected one
    // goes away (false); a client replacing another is no change. Set before start().
    void on_connection(std::function<void(bool connected)> changed) { on_connection_ = std::move(changed); }
    void start();
    // Guest output. Never blocks.
    void write(std::span<const std::uint8_t> bytes);
    // Sends what is pending if a client is connected.
    void flush();
    // Stops accepting and closes the client (on the io_context thread); removes the socket file.
    void close();

    const std::string& path() const noexcept { return path_; }
    // QEMU's query-chardev filename for it.
    std::string chardev_filename() const { return "unix:" + path_ + ",server=on"; }

private:
    SocketConsole(boost::asio::io_context& io, std::string path, Feed feed);
    void accept();
    void read();
    void send_some();  // io_context thread
    void drop_client();  // io_context thread: closes the client, reports the disconnection

    boost::asio::io_context& io_;
    std::string path_;
    Feed feed_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    std::unique_ptr<boost::asio::local::stream_protocol::socket> client_;  // io_context thread
    std::array<std::uint8_t, 512> in_{};
    bool sending_ = false;     // io_context thread
    bool connected_ = false;   // io_context thread: what on_connection_ was last told
    std::function<void(bool)> on_connection_;
    std::uint64_t generation_ = 0;  // bumps with each client, so stale handlers stand down

    std::mutex mutex_;
    std::deque<std::uint8_t> pending_;
    std::vector<std::uint8_t> out_;  // io_context thread: the bytes of the write in flight
};

}  // namespace vmm::anchor
