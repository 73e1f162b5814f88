#include "anchor/pci_devices.h"

#include "anchor/console.h"
#include "anchor/irq_line.h"
#include "anchor/kvm_msi_sink.h"
#include "anchor/socket_console.h"
#include "common/log.h"
#include "devicemodel/virtio-blk/disk_image.h"
#include "devicemodel/virtio-blk/virtio_blk.h"
#include "devicemodel/virtio-console/virtio_console.h"
#include "devicemodel/virtio-net/mac_address.h"
#include "devicemodel/virtio-net/tap.h"
#include "devicemodel/virtio-net/virtio_net.h"
#include "kvm/kvm_vm.h"

#include <algorithm>

namespace vmm::anchor {

// One virtio-pci transport and the KVM plumbing of its notify registers.
struct PciDevices::Transport {
    std::shared_ptr<virtio::VirtioPciTransport> transport;
    std::vector<Fd> queue_eventfds;  // one per queue, watched by the notify thread
    std::mutex mutex;
    std::vector<virtio::NotifyAddress> registered;  // ioeventfds currently in KVM
};

PciDevices::PciDevices(KvmVm& vm, IoBus& pio, IoBus& mmio, const GuestMemory& memory, const x86::RamLayout& ram,
                       ThreadStartHook on_thread_start)
    : vm_(vm), memory_(memory), on_thread_start_(std::move(on_thread_start)) {
    bus_ = std::make_unique<pci::PciRootBus>(pio, mmio, pci::pc_pci_windows(ram), [&vm](std::uint32_t gsi) {
        return std::make_shared<KvmIrqLine>(vm, gsi);
    });
    bus_->install_config_access();
}

PciDevices::~PciDevices() {
    for (auto& s : socket_consoles_) s->close();
    notify_.stop();
    for (auto& t : transports_) {
        // With ioeventfds on every notify address a guest's kick never traps (tests check this).
        logger("anchor")->debug("{}: {} queue notifications trapped", t->transport->name(),
                                t->transport->trapped_notifies());
        std::lock_guard lock(t->mutex);
        for (const auto& a : t->registered) {
            try {
                vm_.remove_ioeventfd(t->queue_eventfds[a.queue].get(), a.gpa, a.len, false);
            } catch (const std::exception&) {
            }
        }
    }
}

std::function<void()> PciDevices::thread_start(jail::IoThreadKind kind) const {
    if (!on_thread_start_) return {};
    return [hook = on_thread_start_, kind] { hook(kind); };
}

void PciDevices::add_transport(const std::string& name, std::shared_ptr<virtio::VirtioDevice> device) {
    const unsigned queues = device->num_queues();
    auto msi = std::make_shared<KvmMsiSink>(vm_, queues + 1);
    auto t = std::make_unique<Transport>();
    // A queue whose device waits on an eventfd of its own gets KVM's ioeventfd on that: the
    // guest's notify wakes the device thread directly. The others are relayed by the notify
    // thread to queue_notify().
    std::vector<int> own_kick_fds;
    for (unsigned q = 0; q < queues; ++q) own_kick_fds.push_back(device->queue_kick_fd(static_cast<std::uint16_t>(q)));
    t->transport = virtio::VirtioPciTransport::create(name, std::move(device), memory_, msi);
    for (unsigned q = 0; q < queues; ++q) {
        if (own_kick_fds[q] >= 0) {
            t->queue_eventfds.push_back(dup_fd(own_kick_fds[q]));
            logger("anchor")->debug("{}: queue {} notifications go straight to the device's eventfd", name, q);
            continue;
        }
        t->queue_eventfds.push_back(make_eventfd());
        std::weak_ptr<virtio::VirtioPciTransport> weak = t->transport;
        notify_.watch(t->queue_eventfds.back().get(), [weak, q] {
            if (auto tr = weak.lock()) tr->handle_notify(static_cast<std::uint16_t>(q));
        });
    }
    // Keep KVM's ioeventfds on the notify registers wherever the guest puts BAR0: a guest
    // notify then signals the eventfd inside KVM, with no exit to the vCPU thread.
    Transport* raw = t.get();
    t->transport->set_notify_listener([this, raw, name](const std::vector<virtio::NotifyAddress>& now) {
        std::lock_guard lock(raw->mutex);
        for (const auto& a : raw->registered) {
            try {
                vm_.remove_ioeventfd(raw->queue_eventfds[a.queue].get(), a.gpa, a.len, false);
            } catch (const std::exception& e) {
                logger("anchor")->warn("{}: removing ioeventfd at {:#x}: {}", name, a.gpa, e.what());
            }
        }
        raw->registered.clear();
        for (const auto& a : now) {
            if (a.queue >= raw->queue_eventfds.size()) continue;
            try {
                vm_.add_ioeventfd(raw->queue_eventfds[a.queue].get(), a.gpa, a.len, false);
                raw->registered.push_back(a);
            } catch (const std::exception& e) {
                // The trapped path (the transport's own notify register) still works.
                logger("anchor")->warn("{}: ioeventfd at {:#x}: {}; notifications trap instead", name, a.gpa, e.what());
            }
        }
    });
    const unsigned slot = bus_->add_device(t->transport);
    logger("anchor")->info("pci 00:{:02x}.0: {}", slot, name);
    transports_.push_back(std::move(t));
}

void PciDevices::add_disks(const std::vector<DiskSpec>& disks) {
    for (std::size_t i = 0; i < disks.size(); ++i) {
        const DiskSpec& d = disks[i];
        virtio_blk::DiskSpec spec;
        spec.path = d.path;
        spec.read_only = d.readonly;
        if (!d.partuuid.empty()) spec.partuuid = d.partuuid;
        virtio_blk::VirtioBlkOptions options;
        options.name = "blk" + std::to_string(i);
        options.serial = d.serial.empty() ? options.name : d.serial;
        // Adaptive polling after each served batch, up to 32 µs (QEMU's iothread poll-max-ns):
        // a guest that submits again within that window needs no kick (no VM exit) and the
        // dispatcher no wake-up; an idle guest or a busy host shrinks the window to 0 (see
        // devicemodel/virtio/adaptive_poll.h). No manifest field yet; 0 would turn it off.
        options.poll_max = std::chrono::nanoseconds{32768};
        options.on_thread_start = thread_start(jail::IoThreadKind::Block);
        auto device = std::make_shared<virtio_blk::VirtioBlk>(virtio_blk::DiskImage::open(spec), options);
        add_transport("virtio-" + options.name, std::move(device));
    }
}

void PciDevices::add_nics(const std::vector<NicSpec>& nics, const std::string& domain_name) {
    for (std::size_t i = 0; i < nics.size(); ++i) {
        const std::string field = "nics[" + std::to_string(i) + "]";
        virtio_net::VirtioNetOptions options;
        options.name = "net" + std::to_string(i);
        options.on_thread_start = thread_start(jail::IoThreadKind::Net);
        std::unique_ptr<virtio_net::Tap> tap;
        try {
            options.mac = virtio_net::mac_for_nic(nics[i].mac, domain_name, static_cast<unsigned>(i));
            tap = std::make_unique<virtio_net::Tap>(nics[i].tap);
        } catch (const std::exception& e) {
            throw Error("manifest field \"" + field + "\": " + e.what());
        }
        logger("anchor")->info("{}: {} mac {}", options.name, tap->description(), virtio_net::format_mac(options.mac));
        auto device = std::make_shared<virtio_net::VirtioNet>(std::move(tap), options);
        add_transport("virtio-" + options.name, std::move(device));
    }
}

std::vector<std::string> PciDevices::add_consoles(const std::vector<ConsoleSpec>& specs) {
    using virtio_console::VirtioConsole;
    std::vector<std::string> paths(specs.size());
    NotifyLoop* loop = &notify_;
    const VirtioConsole::Executor executor = [loop](std::function<void()> work) { loop->post(std::move(work)); };
    // The device a backend feeds: set once the device exists (it needs the backends' outputs).
    using Slot = std::shared_ptr<std::weak_ptr<VirtioConsole>>;
    struct Backend {
        VirtioConsole::Output output;
        bool host_connected = true;
        std::unique_ptr<Console> pty;  // kind "pty": the main loop reads its input (console_inputs())
    };
    std::vector<std::shared_ptr<SocketConsole>> sockets;  // started once every device exists
    // Console i's backend, for port `port` of the device in `slot`.
    auto backend = [&](std::size_t i, const Slot& slot, std::size_t port) {
        Backend b;
        if (specs[i].kind == "socket") {
            std::shared_ptr<SocketConsole> sock;
            try {
                sock = SocketConsole::create(notify_.io(), specs[i].path, [slot, port](std::span<const std::uint8_t> bytes) {
                    if (auto d = slot->lock()) d->feed_input(port, bytes);
                });
            } catch (const std::exception& e) {
                throw Error("manifest field \"consoles[" + std::to_string(i) + "].path\": " + e.what());
            }
            sock->on_connection([slot, port](bool connected) {
                if (auto d = slot->lock()) d->set_host_connected(port, connected);
            });
            b.output = [sock](std::span<const std::uint8_t> bytes) { sock->write(bytes); };
            b.host_connected = false;  // until a client connects (a named port tells the guest)
            paths[i] = sock->chardev_filename();
            socket_consoles_.push_back(sock);
            sockets.push_back(std::move(sock));
        } else {
            b.pty = Console::make_pty();
            Console* out = b.pty.get();
            b.output = [out](std::span<const std::uint8_t> bytes) { out->write(bytes); };
            paths[i] = "pty:" + b.pty->pty_path();
        }
        return b;
    };
    auto keep_pty = [&](Backend& b, const std::shared_ptr<VirtioConsole>& device, std::size_t port) {
        if (b.pty) pty_ports_.push_back({std::move(b.pty), device, port});
    };
    // Every named console is a port of one device (QEMU's virtserialports on one virtio-serial),
    // and the first unnamed console, if any, is that device's port 0, its console port (QEMU's
    // virtconsole beside them: the guest's hvc). The device sits at the first of them's place
    // on the bus; every other unnamed console is a device of its own.
    std::vector<std::size_t> shared;  // the consoles on the shared device, in port order
    auto named = [&](std::size_t i) { return !specs[i].name.empty(); };
    for (std::size_t i = 0; i < specs.size(); ++i)
        if (named(i)) shared.push_back(i);
    if (!shared.empty())
        for (std::size_t u = 0; u < specs.size(); ++u)
            if (!named(u)) {
                shared.insert(shared.begin(), u);
                break;
            }
    const std::size_t shared_at = shared.empty() ? specs.size() : *std::min_element(shared.begin(), shared.end());
    for (std::size_t i = 0; i < specs.size(); ++i) {
        virtio_console::VirtioConsoleOptions options;
        options.name = "console" + std::to_string(i);
        auto slot = std::make_shared<std::weak_ptr<VirtioConsole>>();
        std::vector<Backend> backends;  // the device's ports', in port order
        const bool on_shared = std::find(shared.begin(), shared.end(), i) != shared.end();
        if (!on_shared) {
            backends.push_back(backend(i, slot, 0));
            options.host_connected = backends[0].host_connected;
        } else if (i == shared_at) {
            for (std::size_t port = 0; port < shared.size(); ++port) {
                const std::size_t c = shared[port];
                Backend& b = backends.emplace_back(backend(c, slot, port));
                if (port == 0) {
                    options.port_name = specs[c].name;  // empty: the console port
                    options.on_guest_open = port_event_for(c);
                    options.host_connected = b.host_connected;
                } else {
                    options.more_ports.push_back({specs[c].name, std::move(b.output), port_event_for(c), b.host_connected});
                }
            }
        } else {
            continue;  // a port of the shared device
        }
        auto device = std::make_shared<VirtioConsole>(std::move(backends[0].output), std::move(options), executor);
        *slot = device;
        for (std::size_t port = 0; port < backends.size(); ++port) keep_pty(backends[port], device, port);
        if (device->ports() > 1)
            logger("anchor")->info("console{}: ports {}", i, device->ports());
        add_transport("virtio-console" + std::to_string(i), device);
    }
    for (auto& sock : sockets) sock->start();
    return paths;
}

std::vector<PciDevices::ConsoleInput> PciDevices::console_inputs() {
    std::vector<ConsoleInput> inputs;
    for (const PtyPort& p : pty_ports_) {
        inputs.push_back({p.pty->input_fd(), [device = p.device, port = p.port](std::span<const std::uint8_t> b) {
                              device->feed_input(port, b);
                          }});
    }
    return inputs;
}

void PciDevices::flush_consoles() {
    for (auto& p : pty_ports_) p.pty->flush();
    for (auto& s : socket_consoles_) s->flush();
}

std::function<void(bool)> PciDevices::port_event_for(std::size_t i) {
    return [this, id = "virtcon" + std::to_string(i)](bool open) {
        std::lock_guard lock(port_event_mutex_);
        if (port_event_) port_event_(id, open);
    };
}

void PciDevices::set_port_event_sink(PortEvent sink) {
    std::lock_guard lock(port_event_mutex_);
    port_event_ = std::move(sink);
}

void PciDevices::start() { notify_.start(thread_start(jail::IoThreadKind::Notify)); }

}  // namespace vmm::anchor
