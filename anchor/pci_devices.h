// PciDevices: the domain's PCI side as the anchor wires it from the manifest: the root bus
// with its host bridge (config through 0xcf8 and ECAM), one virtio-pci transport per disk, NIC
// and console, MSI-X through KVM irqfds (KvmMsiSink), queue notifications through KVM ioeventfds
// served on the notify thread (NotifyLoop). Devices never see KVM; this is the one place that
// knows both.
//
// Threads: built on the main thread before the vCPUs start; ioeventfd (re)registration runs
// on vCPU threads when the guest maps or moves a BAR (under the root bus's lock). Every device
// I/O thread (each disk's "blkN-q" and "blkN-io...", each NIC's "netN-io", and "notify") calls
// the constructor's `on_thread_start` with its kind first thing, before it does any I/O.
#pragma once

#include "anchor/notify_loop.h"
#include "common/fd.h"
#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/bus/io_bus.h"
#include "devicemodel/pci/pci_bus.h"
#include "devicemodel/virtio/pci_transport.h"
#include "jail/seccomp_policy.h"
#include "manifest/domain_manifest.h"
#include "x86/memory_layout.h"

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace vmm {
class KvmVm;
}
namespace vmm::virtio_console {
class VirtioConsole;
}

namespace vmm::anchor {

class Console;
class SocketConsole;

class PciDevices {
public:
    // Runs first thing on each device I/O thread, with the thread's kind; it may block (the
    // threads are joined at destruction: it must let them go by then) and must not throw. The
    // Machine holds the threads at its jail gate and stacks each kind's filter there.
    using ThreadStartHook = std::function<void(jail::IoThreadKind)>;

    PciDevices(KvmVm& vm, IoBus& pio, IoBus& mmio, const GuestMemory& memory, const x86::RamLayout& ram,
               ThreadStartHook on_thread_start = {});
    ~PciDevices();

    void add_disks(const std::vector<DiskSpec>& disks);
    // Each console on a pty (kind "pty") or a unix socket the anchor listens on (kind "socket"):
    // an unnamed one is a virtio console device of its own (its port 0, the guest's hvc); the
    // named ones are the ports of one device (port 0, 1, ... in manifest order), as QEMU's
    // virtserialports on one virtio-serial. Returns the consoles' QEMU chardev filenames
    // ("pty:/dev/pts/N", "unix:P,server=on"), in manifest order.
    std::vector<std::string> add_consoles(const std::vector<ConsoleSpec>& consoles);
    // One virtio-net per NIC on its host tap; the MAC is the manifest's or derived from the
    // domain name and the NIC's index (virtio-net/mac_address.h).
    void add_nics(const std::vector<NicSpec>& nics, const std::string& domain_name);

    // Starts the notify thread; call once every device is added, before the vCPUs run.
    void start();
    // Flushes the virtio consoles' ptys (main loop timer) and feeds their input.
    void flush_consoles();
    struct ConsoleInput {
        int fd;
        std::function<void(std::span<const std::uint8_t>)> feed;
    };
    std::vector<ConsoleInput> console_inputs();
    // Where a named port's guest-side open/close goes (QMP VSERPORT_CHANGE): the console's
    // chardev label ("virtcon<i>") and whether the guest has it open. Called on the notify or a
    // vCPU thread; set and cleared from any thread (nullptr: dropped).
    using PortEvent = std::function<void(const std::string& id, bool open)>;
    void set_port_event_sink(PortEvent sink);

    pci::PciRootBus& bus() { return *bus_; }

private:
    struct Transport;
    void add_transport(const std::string& name, std::shared_ptr<virtio::VirtioDevice> device);
    // on_thread_start_ bound to `kind` (empty without a hook), for a device's options.
    std::function<void()> thread_start(jail::IoThreadKind kind) const;

    KvmVm& vm_;
    const GuestMemory& memory_;
    ThreadStartHook on_thread_start_;
    std::unique_ptr<pci::PciRootBus> bus_;
    NotifyLoop notify_;
    std::vector<std::unique_ptr<Transport>> transports_;
    // The consoles of kind "pty": each pty and the device port its input goes to.
    struct PtyPort {
        std::unique_ptr<Console> pty;
        std::shared_ptr<virtio_console::VirtioConsole> device;
        std::size_t port;
    };
    std::vector<PtyPort> pty_ports_;
    std::vector<std::shared_ptr<SocketConsole>> socket_consoles_;
    std::mutex port_event_mutex_;
    PortEvent port_event_;
    // options.on_guest_open for console i: to port_event_.
    std::function<void(bool)> port_event_for(std::size_t i);
};

}  // namespace vmm::anchor
