// QmpServer: sockets, connections and event fan-out (see qmp_server.h); the protocol rules
// are in QmpDispatcher. Everything here runs on the io_context thread except emit(), which
// only builds the event text and dispatches to that thread.
#include "qmp/qmp_server.h"

#include "common/error.h"
#include "common/log.h"
#include "common/scm_rights.h"
#include "qmp/json_writer.h"
#include "qmp/qmp_dispatcher.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <deque>
#include <filesystem>
#include <set>
#include <system_error>
#include <vector>

namespace vmm::qmp {

namespace asio = boost::asio;
using Protocol = asio::local::stream_protocol;

namespace {

// Log the 1st, 2nd, 4th, 8th... occurrence: a hostile client cannot flood the log.
bool log_now(std::uint64_t count) { return (count & (count - 1)) == 0; }

}  // namespace

class Connection;

class QmpServer::Impl : public std::enable_shared_from_this<QmpServer::Impl> {
public:
    Impl(asio::io_context& io, QmpDomain& domain, QmpServerOptions options)
        : io_(io), options_(std::move(options)), dispatcher_(domain, options_), log_(logger("qmp")) {}

    void listen(const std::string& path);
    // `origin` names where the client came from in logs: the socket's file name, or "fd".
    void add(Protocol::socket socket, const std::string& origin);
    void remove(const std::shared_ptr<Connection>& c) {
        clients_.erase(c);
        // Closing and every client gone: nothing left for the deadline to cut short, and a
        // pending timer would keep the io_context running (the anchor's exit waits on it).
        if (closed_ && clients_.empty() && close_timer_) close_timer_->cancel();
    }
    void broadcast(const std::string& line);
    void close();
    void shutdown_now();

    asio::io_context& io_;
    const QmpServerOptions options_;
    QmpDispatcher dispatcher_;
    std::shared_ptr<spdlog::logger> log_;
    std::string greeting_ = to_qmp_line(dispatcher_.greeting());

private:
    struct Listener {
        std::string path;
        std::unique_ptr<Protocol::acceptor> acceptor;
    };
    void accept(Listener& l);

    std::vector<std::unique_ptr<Listener>> listeners_;
    std::set<std::shared_ptr<Connection>> clients_;
    std::unique_ptr<asio::steady_timer> close_timer_;
    bool closed_ = false;
    std::uint64_t next_client_ = 1;

    friend class QmpServer;
};

// One client: reads requests, queues replies and events, writes them in order.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(const std::shared_ptr<QmpServer::Impl>& server, Protocol::socket socket, std::string name)
        : server_(server),
          options_(server->options_),
          log_(server->log_),
          name_(std::move(name)),
          socket_(std::move(socket)),
          stall_timer_(socket_.get_executor()),
          stream_(options_.limits) {}

    void start(const std::string& greeting) {
        queue(greeting);
        read();
    }

    bool negotiated() const { return session_.negotiated; }
    std::size_t buffered_bytes() const { return out_bytes_ + stream_.pending_bytes(); }

    void send_event(const std::string& line) {
        if (closed_ || closing_) return;
        // A client that never reads its events must not make us buffer without bound.
        if (out_bytes_ + line.size() > options_.max_output_bytes) {
            log_->warn("QMP {}: does not read its events ({} bytes queued): disconnecting it", name_, out_bytes_);
            close_now();
            return;
        }
        queue(line);
    }

    // Stops reading; closes once queued output is written. Deferred through the io_context
    // so that a reply being produced right now (quit() calling QmpServer::close()) is queued
    // and flushed first.
    void close_after_flush() {
        if (closing_) return;
        closing_ = true;
        pending_.clear();
        boost::asio::post(socket_.get_executor(), [self = shared_from_this()] {
            if (!self->writing_) self->close_now();
        });
    }

    void close_now() {
        if (closed_) return;
        closed_ = true;
        stall_timer_.cancel();
        boost::system::error_code ignored;
        socket_.shutdown(Protocol::socket::shutdown_both, ignored);
        socket_.close(ignored);
        if (auto s = server_.lock()) s->remove(shared_from_this());
    }

private:
    void queue(const std::string& line) {
        out_.push_back(line);
        out_bytes_ += line.size();
        if (!writing_) write();
    }

    void read() {
        if (closed_ || closing_ || reading_) return;
        if (paused_) {
            paused_ = false;
            stall_timer_.cancel();
            log_->debug("QMP {}: caught up with its replies, reading again", name_);
        }
        reading_ = true;
        // Not async_read_some: the bytes may come with descriptors (SCM_RIGHTS) for getfd.
        socket_.async_wait(Protocol::socket::wait_read,
                           [self = shared_from_this()](const boost::system::error_code& ec) { self->on_readable(ec); });
    }

    void on_readable(const boost::system::error_code& ec) {
        if (ec || closed_) {
            on_read(ec, 0);
            return;
        }
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
        iovec iov{buf_.data(), buf_.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n;
        do {
            n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        } while (n < 0 && errno == EINTR);
        const int err = n < 0 ? errno : 0;  // before take_passed_fds, whose logging may change errno
        if (err == EAGAIN || err == EWOULDBLOCK) {
            reading_ = false;
            read();
            return;
        }
        take_passed_fds(msg);
        if (n < 0) {
            on_read(boost::system::error_code(err, boost::system::system_category()), 0);
        } else if (n == 0) {
            on_read(asio::error::eof, 0);
        } else {
            on_read({}, static_cast<std::size_t>(n));
        }
    }

    // Every descriptor received is owned at once (so none leaks); those of this message replace
    // the ones getfd did not take.
    void take_passed_fds(const msghdr& msg) {
        std::vector<Fd> fds = take_fds(msg);
        if (msg.msg_flags & MSG_CTRUNC)
            log_->warn("QMP {}: more than {} file descriptors in one message: the rest were dropped", name_,
                       kMaxPassedFds);
        if (!fds.empty()) session_.passed = std::move(fds);
    }

    void on_read(const boost::system::error_code& ec, std::size_t n) {
        reading_ = false;
        if (closed_) return;
        if (ec) {
            // EOF or reset, possibly mid-message: only this client's partial input is lost.
            if (ec != asio::error::eof && ec != asio::error::operation_aborted) {
                log_->debug("QMP {}: read: {}", name_, ec.message());
            }
            close_now();
            return;
        }
        std::vector<JsonStream::Item> items;
        stream_.feed(std::string_view(buf_.data(), n), items);
        for (auto& item : items) pending_.push_back(std::move(item));
        process();
    }

    // Handles queued requests while the client keeps up with its replies; reads more input
    // only once they are all handled (backpressure on a client that floods without reading).
    void process() {
        auto server = server_.lock();
        if (!server) {
            close_now();
            return;
        }
        while (!pending_.empty() && !closed_ && !closing_ &&
               out_bytes_ < options_.read_pause_bytes) {
            JsonStream::Item item = std::move(pending_.front());
            pending_.pop_front();
            // Logged at the 1st, 2nd, 4th, 8th... error: a client sending garbage at full speed
            // cannot flood the log. The client itself gets QEMU's error reply for each.
            if (!item.ok() && log_now(++input_errors_))
                log_->warn("QMP {}: rejected input: {} ({} so far)", name_, item.error, input_errors_);
            queue(to_qmp_line(server->dispatcher_.handle(item, session_)));
        }
        if (closed_ || closing_) return;
        if (pending_.empty() && out_bytes_ < options_.read_pause_bytes) {
            read();
        } else if (!paused_) {
            pause_input();
        }
    }

    // The client sends faster than it reads its replies: its input waits in the socket (and
    // then in the client) until it reads. If it reads nothing for stall_timeout it goes.
    void pause_input() {
        paused_ = true;
        if (!pause_logged_) {
            pause_logged_ = true;
            log_->warn("QMP {}: {} bytes of replies unread: not reading its input until it reads them", name_,
                       out_bytes_);
        }
        arm_stall_timer();
    }

    void arm_stall_timer() {
        const std::uint64_t written = bytes_written_;
        stall_timer_.expires_after(options_.stall_timeout);
        stall_timer_.async_wait([weak = weak_from_this(), written](const boost::system::error_code& ec) {
            auto self = weak.lock();
            if (ec || !self || self->closed_ || !self->paused_) return;
            if (self->bytes_written_ != written) {
                self->arm_stall_timer();  // it reads, slowly
                return;
            }
            self->log_->warn("QMP {}: left {} bytes of replies unread for {} ms: disconnecting it", self->name_,
                             self->out_bytes_, self->options_.stall_timeout.count());
            self->close_now();
        });
    }

    void write() {
        if (closed_ || out_.empty()) return;
        writing_ = true;
        asio::async_write(socket_, asio::buffer(out_.front()),
                          [self = shared_from_this()](const boost::system::error_code& ec,
                                                      std::size_t) { self->on_write(ec); });
    }

    void on_write(const boost::system::error_code& ec) {
        writing_ = false;
        if (closed_) return;
        if (ec) {
            log_->debug("QMP {}: write: {}", name_, ec.message());
            close_now();
            return;
        }
        out_bytes_ -= out_.front().size();
        bytes_written_ += out_.front().size();
        out_.pop_front();
        if (!out_.empty()) {
            write();
        } else if (closing_) {
            close_now();
            return;
        }
        if (!closing_ && out_bytes_ < options_.read_pause_bytes) process();
    }

    std::weak_ptr<QmpServer::Impl> server_;
    const QmpServerOptions options_;
    std::shared_ptr<spdlog::logger> log_;
    const std::string name_;  // "client 3 on qmp", for logs
    Protocol::socket socket_;
    asio::steady_timer stall_timer_;
    JsonStream stream_;
    QmpDispatcher::Session session_;
    std::deque<JsonStream::Item> pending_;
    std::deque<std::string> out_;
    std::size_t out_bytes_ = 0;
    std::uint64_t bytes_written_ = 0;
    std::uint64_t input_errors_ = 0;
    bool reading_ = false;
    bool paused_ = false;        // input not read because replies are unread
    bool pause_logged_ = false;  // warned once per client
    bool writing_ = false;
    bool closing_ = false;
    bool closed_ = false;
    std::array<char, 4096> buf_{};
};

void QmpServer::Impl::listen(const std::string& path) {
    if (closed_) throw vmm::Error("QMP listen " + path + ": server is closed");
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
    auto l = std::make_unique<Listener>();
    l->path = path;
    l->acceptor = std::make_unique<Protocol::acceptor>(io_);
    boost::system::error_code ec;
    l->acceptor->open(Protocol(), ec);
    if (!ec) l->acceptor->bind(Protocol::endpoint(path), ec);
    if (ec) throw std::system_error(ec.value(), std::generic_category(), "QMP bind " + path);
    // The socket file is created with the umask's mode; the state directory (0700) keeps
    // others out until this chmod.
    if (::chmod(path.c_str(), 0600) != 0) throw_errno("QMP chmod " + path);
    l->acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::system_error(ec.value(), std::generic_category(), "QMP listen " + path);
    log_->info("QMP listening on {}", path);
    accept(*l);
    listeners_.push_back(std::move(l));
}

void QmpServer::Impl::accept(Listener& l) {
    l.acceptor->async_accept([weak = weak_from_this(), &l](const boost::system::error_code& ec,
                                                           Protocol::socket socket) {
        auto self = weak.lock();
        if (!self || ec == asio::error::operation_aborted || self->closed_) return;
        if (ec) {
            self->log_->warn("QMP accept on {}: {}", l.path, ec.message());
        } else {
            self->add(std::move(socket), std::filesystem::path(l.path).filename().string());
        }
        self->accept(l);
    });
}

void QmpServer::Impl::add(Protocol::socket socket, const std::string& origin) {
    if (closed_ || clients_.size() >= options_.max_clients) {
        log_->warn("QMP: refusing a client on {} ({} connected{})", origin, clients_.size(),
                   closed_ ? ", server closed" : "");
        return;  // the socket closes here
    }
    const std::string name = "client " + std::to_string(next_client_++) + " on " + origin;
    log_->debug("QMP {}: connected", name);
    auto c = std::make_shared<Connection>(shared_from_this(), std::move(socket), name);
    clients_.insert(c);
    c->start(greeting_);
}

void QmpServer::Impl::broadcast(const std::string& line) {
    // Copy: a client that is dropped removes itself from clients_.
    const auto clients = clients_;
    for (const auto& c : clients) {
        if (c->negotiated()) c->send_event(line);
    }
}

void QmpServer::Impl::close() {
    if (closed_) return;
    closed_ = true;
    for (auto& l : listeners_) {
        boost::system::error_code ignored;
        l->acceptor->close(ignored);
        ::unlink(l->path.c_str());
    }
    const auto clients = clients_;
    for (const auto& c : clients) c->close_after_flush();
    if (!clients_.empty()) {
        // A client that does not read must not keep the io_context alive forever.
        close_timer_ = std::make_unique<asio::steady_timer>(io_, std::chrono::seconds(1));
        close_timer_->async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
            auto self = weak.lock();
            if (!self || ec) return;
            const auto rest = self->clients_;
            for (const auto& c : rest) c->close_now();
        });
    }
}

void QmpServer::Impl::shutdown_now() {
    close();
    if (close_timer_) close_timer_->cancel();
    const auto clients = clients_;
    for (const auto& c : clients) c->close_now();
}

QmpServer::QmpServer(asio::io_context& io, QmpDomain& domain, QmpServerOptions options)
    : impl_(std::make_shared<Impl>(io, domain, std::move(options))) {}

QmpServer::~QmpServer() { impl_->shutdown_now(); }

void QmpServer::listen(const std::string& path) { impl_->listen(path); }

void QmpServer::serve(Fd connected) {
    Protocol::socket socket(impl_->io_);
    boost::system::error_code ec;
    const int fd = connected.get();
    socket.assign(Protocol(), fd, ec);
    if (ec) throw std::system_error(ec.value(), std::generic_category(), "QMP serve fd");
    connected.release();  // now owned by the socket
    impl_->add(std::move(socket), "fd");
}

void QmpServer::emit(const std::string& name, Json data) {
    // QEMU's event timestamp: wall-clock seconds and microseconds (qmp-spec, "Asynchronous
    // events").
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
    Json event = {{"timestamp", {{"seconds", us / 1000000}, {"microseconds", us % 1000000}}},
                  {"event", name}};
    if (!data.is_null()) event["data"] = std::move(data);
    asio::dispatch(impl_->io_, [weak = std::weak_ptr<Impl>(impl_), line = to_qmp_line(event)] {
        if (auto self = weak.lock()) self->broadcast(line);
    });
}

void QmpServer::close() { impl_->close(); }

std::size_t QmpServer::client_count() const { return impl_->clients_.size(); }

std::size_t QmpServer::buffered_bytes() const {
    std::size_t n = 0;
    for (const auto& c : impl_->clients_) n += c->buffered_bytes();
    return n;
}

}  // namespace vmm::qmp
