#include "anchor/socket_console.h"

#include "common/error.h"
#include "common/log.h"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace vmm::anchor {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

SocketConsole::SocketConsole(asio::io_context& io, std::string path, Feed feed)
    : io_(io), path_(std::move(path)), feed_(std::move(feed)), acceptor_(io) {}

std::shared_ptr<SocketConsole> SocketConsole::create(asio::io_context& io, const std::string& path, Feed feed) {
    std::shared_ptr<SocketConsole> c(new SocketConsole(io, path, std::move(feed)));
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) throw Error("console socket " + path + ": exists and is not a socket");
        ::unlink(path.c_str());
    }
    boost::system::error_code ec;
    c->acceptor_.open(stream(), ec);
    if (!ec) c->acceptor_.bind(stream::endpoint(path), ec);
    if (!ec) ::chmod(path.c_str(), 0600);
    if (!ec) c->acceptor_.listen(4, ec);
    if (ec) throw Error("console socket " + path + ": " + ec.message());
    return c;
}

SocketConsole::~SocketConsole() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    if (client_) client_->close(ec);
}

void SocketConsole::start() {
    asio::post(io_, [self = shared_from_this()] { self->accept(); });
}

void SocketConsole::accept() {
    acceptor_.async_accept([self = shared_from_this()](const boost::system::error_code& ec, stream::socket s) {
        if (ec) return;  // closed
        boost::system::error_code ignore;
        if (self->client_) self->client_->close(ignore);  // a new client replaces the old one
        self->client_ = std::make_unique<stream::socket>(std::move(s));
        ++self->generation_;
        self->sending_ = false;
        if (!self->connected_) {
            self->connected_ = true;
            if (self->on_connection_) self->on_connection_(true);
        }
        self->read();
        self->send_some();
        self->accept();
    });
}

void SocketConsole::read() {
    const std::uint64_t gen = generation_;
    client_->async_read_some(asio::buffer(in_), [self = shared_from_this(), gen](const boost::system::error_code& ec,
                                                                                 std::size_t n) {
        if (gen != self->generation_) return;
        if (ec) {
            self->drop_client();
            return;
        }
        self->feed_(std::span<const std::uint8_t>(self->in_.data(), n));
        self->read();
    });
}

void SocketConsole::send_some() {
    if (sending_ || !client_ || !client_->is_open()) return;
    {
        std::lock_guard lock(mutex_);
        if (pending_.empty()) return;
        const std::size_t n = std::min<std::size_t>(pending_.size(), 4096);
        out_.assign(pending_.begin(), pending_.begin() + static_cast<long>(n));
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(n));
    }
    sending_ = true;
    const std::uint64_t gen = generation_;
    asio::async_write(*client_, asio::buffer(out_), [self = shared_from_this(), gen](const boost::system::error_code& ec,
                                                                                   std::size_t) {
        if (gen != self->generation_) return;
        self->sending_ = false;
        if (ec) {
            // The client went away mid-write: what it did not get is lost with it, as on a pty.
            self->drop_client();
            return;
        }
        self->send_some();
    });
}

void SocketConsole::drop_client() {
    boost::system::error_code ignore;
    client_->close(ignore);
    if (!connected_) return;
    connected_ = false;
    if (on_connection_) on_connection_(false);
}

void SocketConsole::write(std::span<const std::uint8_t> bytes) {
    {
        std::lock_guard lock(mutex_);
        pending_.insert(pending_.end(), bytes.begin(), bytes.end());
        if (pending_.size() > kPendingMax)
            pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(pending_.size() - kPendingMax));
    }
    flush();
}

void SocketConsole::flush() {
    asio::post(io_, [self = shared_from_this()] { self->send_some(); });
}

void SocketConsole::close() {
    // Queued after the sends that write() posted: a connected client gets what the guest wrote up
    // to now (the guest's last words before it exits) as far as its socket buffer takes it
    // without blocking; the rest is lost with the domain, as on a pty.
    asio::post(io_, [self = shared_from_this()] {
        boost::system::error_code ignore;
        self->acceptor_.close(ignore);
        if (self->client_ && self->client_->is_open()) {
            std::vector<std::uint8_t> rest;
            {
                std::lock_guard lock(self->mutex_);
                rest.assign(self->pending_.begin(), self->pending_.end());
                self->pending_.clear();
            }
            // An async_write in flight has written its bytes already (asio tries the write at
            // once); these come after them.
            if (!rest.empty())
                (void)::send(self->client_->native_handle(), rest.data(), rest.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            self->client_->close(ignore);
        }
        ++self->generation_;
    });
    ::unlink(path_.c_str());
}

}  // namespace vmm::anchor
