// The anchor's exit path without KVM: scripted vCPUs replay what a guest driver does, through
// the real exit handler, port bus and PC devices (anchor/pc_devices.h).
#include "anchor/exit_handler.h"
#include "anchor/pc_devices.h"
#include "anchor/stop_reason.h"
#include "anchor/vm_control.h"
#include "devicemodel/legacy/serial_16550.h"
#include "tests/support/fakes.h"
#include "tests/support/scripted_vcpu.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

namespace vmm::anchor {
namespace {

using test::ScriptedVcpu;
using test::Step;
using ::testing::HasSubstr;

constexpr std::uint16_t kCom1 = 0x3f8, kLsr = 0x3fd;

// Waits (bounded) for a state another thread sets.
template <typename Pred>
bool eventually(Pred pred) {
    for (int i = 0; i < 5000; ++i) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return pred();
}

class AnchorExitTest : public ::testing::Test {
protected:
    AnchorExitTest() {
        devices_ = install_pc_devices(pio_, {128ull << 20, 0, 2}, irq_,
                                      [this](std::span<const std::uint8_t> b) {
                                          std::lock_guard lock(out_mutex_);
                                          console_.append(b.begin(), b.end());
                                      },
                                      control_);
        control_.set_kicker([this] {
            for (auto* v : vcpus_) v->kick();
        });
    }

    StopReason run_one(ScriptedVcpu& vcpu) {
        vcpus_ = {&vcpu};
        run_vcpu_loop(vcpu, handler_, control_);
        EXPECT_TRUE(control_.stopping());
        return control_.reason().value_or(StopReason{});
    }

    std::string console() {
        std::lock_guard lock(out_mutex_);
        return console_;
    }

    // What a polled driver does per character: wait for THRE, then write THR.
    static void put(std::vector<Step>& s, char c) {
        s.push_back(Step::in(kLsr));
        s.push_back(Step::out(kCom1, static_cast<std::uint8_t>(c)));
    }

    IoBus pio_{"pio"};
    IoBus mmio_{"mmio"};
    VmControl control_;
    ExitHandler handler_{pio_, mmio_, control_};
    std::shared_ptr<test::FakeInterruptLine> irq_ = std::make_shared<test::FakeInterruptLine>();
    PcDevices devices_;
    std::vector<Vcpu*> vcpus_;
    std::mutex out_mutex_;
    std::string console_;
};

TEST_F(AnchorExitTest, PolledSerialOutputThenDebugExit) {
    std::vector<Step> s;
    for (char c : std::string("hi\n")) put(s, c);
    s.push_back(Step::out(0xf4, 0x21, 4));
    ScriptedVcpu vcpu(0, s);
    const auto reason = run_one(vcpu);
    EXPECT_EQ(reason.kind, StopKind::GuestExitPort);
    EXPECT_EQ(reason.guest_code, 0x21);
    EXPECT_EQ(exit_status(reason), (0x21 << 1) | 1);
    EXPECT_EQ(console(), "hi\n");
    ASSERT_EQ(vcpu.reads().size(), 3u);
    for (auto lsr : vcpu.reads()) EXPECT_TRUE(lsr & 0x20) << "THRE must be set for a polled driver";
    EXPECT_EQ(vcpu.steps_run(), s.size());
}

TEST_F(AnchorExitTest, RepOutsbDeliversEveryByte) {
    ScriptedVcpu vcpu(0, {Step::outs(kCom1, "abc"), Step::out(0xf4, 0)});
    const auto reason = run_one(vcpu);
    EXPECT_EQ(console(), "abc");
    EXPECT_EQ(exit_status(reason), 1);
}

TEST_F(AnchorExitTest, I8042ResetStopsWithResetStatus) {
    ScriptedVcpu vcpu(0, {Step::out(0x64, 0xfe), Step::spin()});
    const auto reason = run_one(vcpu);
    EXPECT_EQ(reason.kind, StopKind::Reset);
    EXPECT_EQ(exit_status(reason), kExitReset);
}

TEST_F(AnchorExitTest, TripleFaultIsReportedWithVcpuState) {
    ScriptedVcpu vcpu(0, {Step::out(0x80, 0x42), Step::exit(VcpuExit::Kind::Shutdown)});
    const auto reason = run_one(vcpu);
    EXPECT_EQ(reason.kind, StopKind::TripleFault);
    EXPECT_EQ(exit_status(reason), kExitTripleFault);
    EXPECT_THAT(reason.detail, HasSubstr("scripted vcpu0"));
}

TEST_F(AnchorExitTest, KvmInternalErrorAndUnknownExitsStopCleanly) {
    ScriptedVcpu a(0, {Step::exit(VcpuExit::Kind::InternalError, 1)});
    auto reason = run_one(a);
    EXPECT_EQ(reason.kind, StopKind::InternalError);
    EXPECT_THAT(reason.detail, HasSubstr("suberror 1"));
    EXPECT_EQ(exit_status(reason), kExitInternalError);
}

TEST_F(AnchorExitTest, UnknownExitReasonStops) {
    ScriptedVcpu a(0, {Step::exit(VcpuExit::Kind::Unknown, 999)});
    auto reason = run_one(a);
    EXPECT_EQ(reason.kind, StopKind::InternalError);
    EXPECT_THAT(reason.detail, HasSubstr("999"));
}

TEST_F(AnchorExitTest, SystemEventsMapToPowerOffAndReset) {
    ScriptedVcpu a(0, {Step::exit(VcpuExit::Kind::SystemEvent, std::uint64_t(SystemEvent::Shutdown))});
    EXPECT_EQ(run_one(a).kind, StopKind::PowerOff);
    VmControl other;
    ExitHandler h(pio_, mmio_, other);
    ScriptedVcpu b(0, {Step::exit(VcpuExit::Kind::SystemEvent, std::uint64_t(SystemEvent::Reset))});
    run_vcpu_loop(b, h, other);
    EXPECT_EQ(other.reason()->kind, StopKind::Reset);
}

TEST_F(AnchorExitTest, UnhandledAccessesReadAllOnesAndDoNotStop) {
    ScriptedVcpu vcpu(0, {Step::in(0x2f8, 1), Step::in(0x1234, 4), Step::mmio_read(0xd0000000, 4),
                          Step::out(0x1234, 7), Step::out(0xf4, 3)});
    const auto reason = run_one(vcpu);
    EXPECT_EQ(reason.guest_code, 3);
    EXPECT_EQ(vcpu.reads(), (std::vector<std::uint64_t>{0xff, 0xffffffff, 0xffffffff}));
    EXPECT_EQ(handler_.unhandled_accesses(), 4u);
}

TEST_F(AnchorExitTest, PciConfigSpaceAnswersNoDevice) {
    ScriptedVcpu vcpu(0, {Step::out(0xcf8, 0x80000000, 4), Step::in(0xcf8, 4), Step::in(0xcfc, 4), Step::in(0xcfe, 2),
                          Step::out(0xf4, 0)});
    run_one(vcpu);
    EXPECT_EQ(vcpu.reads(), (std::vector<std::uint64_t>{0x80000000, 0xffffffff, 0xffff}));
}

TEST_F(AnchorExitTest, CmosReportsMemorySizeAndCpus) {
    // 128 MiB: 127 MiB above 1 MiB is 0x1fc00 KiB, capped at 0xffff in 0x17/0x18;
    // (128-16) MiB in 64 KiB units at 0x34/0x35.
    ScriptedVcpu vcpu(0, {Step::out(0x70, 0x17), Step::in(0x71), Step::out(0x70, 0x18), Step::in(0x71),
                          Step::out(0x70, 0x34), Step::in(0x71), Step::out(0x70, 0x35), Step::in(0x71),
                          Step::out(0x70, 0x5f), Step::in(0x71), Step::out(0xf4, 0)});
    run_one(vcpu);
    const auto& r = vcpu.reads();
    ASSERT_EQ(r.size(), 5u);
    EXPECT_EQ(r[0] | (r[1] << 8), 0xffffu);
    EXPECT_EQ(r[2] | (r[3] << 8), (112u << 20) >> 16);
    EXPECT_EQ(r[4], 1u);  // vcpus - 1
}

TEST_F(AnchorExitTest, PvpanicStopsAsACrash) {
    ScriptedVcpu vcpu(0, {Step::in(0x505), Step::out(0x505, 1), Step::spin()});
    const auto reason = run_one(vcpu);
    EXPECT_EQ(reason.kind, StopKind::GuestPanicked);
    EXPECT_EQ(exit_status(reason), kExitInternalError);
    EXPECT_THAT(describe(reason), HasSubstr("panicked"));
    EXPECT_EQ(vcpu.reads().at(0) & 1, 1u);
}

TEST_F(AnchorExitTest, HostFailureInRunStopsWithHostError) {
    ScriptedVcpu vcpu(0, {Step::host_failure()});
    const auto reason = run_one(vcpu);
    EXPECT_EQ(reason.kind, StopKind::HostError);
    EXPECT_THAT(reason.detail, HasSubstr("KVM_RUN"));
}

TEST_F(AnchorExitTest, OneVcpuExitingStopsTheOthers) {
    // vcpu1 spins in the guest until kicked; vcpu0 prints and leaves through the exit port.
    std::vector<Step> s0;
    for (char c : std::string("bye")) put(s0, c);
    s0.push_back(Step::out(0xf4, 5, 1));
    ScriptedVcpu v0(0, s0);
    ScriptedVcpu v1(1, {Step::out(0x80, 1), Step::spin()});
    vcpus_ = {&v0, &v1};
    std::thread t1([&] { run_vcpu_loop(v1, handler_, control_); });
    std::thread t0([&] { run_vcpu_loop(v0, handler_, control_); });
    t0.join();
    t1.join();  // returns only because the stop kicked vcpu1
    EXPECT_EQ(control_.reason()->guest_code, 5);
    EXPECT_EQ(console(), "bye");
}

TEST_F(AnchorExitTest, PauseParksEveryVcpuOutsideRunAndResumeContinues) {
    // Both vCPUs spin in the guest; pause() must return only when both are parked, and after
    // resume() they run their next steps (a write each, then vcpu0 leaves).
    ScriptedVcpu v0(0, {Step::spin(), Step::out(0x80, 1), Step::spin(), Step::out(0xf4, 9)});
    ScriptedVcpu v1(1, {Step::spin(), Step::out(0x80, 2), Step::spin()});
    vcpus_ = {&v0, &v1};
    control_.set_vcpu_count(2);
    std::thread t0([&] { run_vcpu_loop(v0, handler_, control_); });
    std::thread t1([&] { run_vcpu_loop(v1, handler_, control_); });
    v0.wait_spinning_after(1);
    v1.wait_spinning_after(1);
    control_.pause();
    EXPECT_TRUE(control_.paused());
    EXPECT_EQ(v0.steps_run(), 1u) << "parked after the kick, before its next step";
    EXPECT_EQ(v1.steps_run(), 1u);
    control_.resume();
    // Each runs its write, then spins again; kick vcpu0 so it reaches the exit port.
    v0.wait_spinning_after(3);
    v1.wait_spinning_after(3);
    v0.kick();
    t0.join();
    t1.join();
    EXPECT_EQ(control_.reason()->guest_code, 9);
}

TEST_F(AnchorExitTest, StartPausedRunsNothingUntilResumed) {
    ScriptedVcpu v0(0, {Step::out(0xf4, 4)});
    vcpus_ = {&v0};
    control_.set_vcpu_count(1);
    control_.start_paused();
    std::thread t0([&] { run_vcpu_loop(v0, handler_, control_); });
    control_.pause();  // already paused: returns once the vCPU has parked by itself
    EXPECT_TRUE(control_.paused());
    EXPECT_EQ(v0.steps_run(), 0u) << "a prelaunch domain runs no guest code";
    control_.resume();
    t0.join();
    EXPECT_EQ(control_.reason()->guest_code, 4);
}

TEST_F(AnchorExitTest, StopWhilePausedReleasesParkedVcpus) {
    ScriptedVcpu v0(0, {Step::spin(), Step::spin()});
    vcpus_ = {&v0};
    control_.set_vcpu_count(1);
    std::thread t0([&] { run_vcpu_loop(v0, handler_, control_); });
    v0.wait_spinning_after(1);
    control_.pause();
    control_.request_stop({StopKind::HostRequest, 0, "quit"});
    t0.join();
    EXPECT_EQ(control_.reason()->kind, StopKind::HostRequest);
}

// With the "stay" policy (QEMU -no-shutdown, as pillar runs), a guest power-off parks the
// domain in run-state shutdown and reports SHUTDOWN + STOP instead of ending it; only a host
// request (quit) ends it, and `cont` is refused as QEMU refuses it.
TEST_F(AnchorExitTest, StayPolicyParksPowerOffInShutdownUntilQuit) {
    std::vector<std::pair<std::string, nlohmann::json>> events;
    std::mutex m;
    control_.set_event_sink([&](const std::string& e, const nlohmann::json& d) {
        std::lock_guard lock(m);
        events.emplace_back(e, d);
    });
    control_.set_policy({true, true});
    ScriptedVcpu v0(0, {Step::exit(VcpuExit::Kind::SystemEvent, static_cast<std::uint64_t>(SystemEvent::Shutdown)),
                        Step::spin()});
    vcpus_ = {&v0};
    control_.set_vcpu_count(1);
    std::thread t0([&] { run_vcpu_loop(v0, handler_, control_); });
    ASSERT_TRUE(eventually([&] { return control_.run_state() == RunState::Shutdown; }));
    control_.pause();  // returns once the vCPU has parked itself after the power-off
    EXPECT_EQ(control_.run_state(), RunState::Shutdown);
    EXPECT_FALSE(control_.stopping());
    EXPECT_EQ(v0.steps_run(), 1u) << "no guest code runs after the power-off";
    EXPECT_FALSE(control_.resume()) << "cont needs a reset first";
    EXPECT_EQ(control_.run_state(), RunState::Shutdown);
    control_.request_stop({StopKind::HostRequest, 0, "quit"});
    t0.join();
    EXPECT_EQ(control_.reason()->kind, StopKind::HostRequest);
    std::lock_guard lock(m);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].first, "SHUTDOWN");
    EXPECT_EQ(events[0].second, (nlohmann::json{{"guest", true}, {"reason", "guest-shutdown"}}));
    EXPECT_EQ(events[1].first, "STOP");
}

TEST_F(AnchorExitTest, StayPolicyTurnsPanicAndInternalErrorIntoRunStates) {
    std::vector<std::string> events;
    control_.set_event_sink([&](const std::string& e, const nlohmann::json&) { events.push_back(e); });
    control_.set_policy({false, true});
    ScriptedVcpu v0(0, {Step::out(0x505, 1), Step::spin()});
    vcpus_ = {&v0};
    control_.set_vcpu_count(1);
    std::thread t0([&] { run_vcpu_loop(v0, handler_, control_); });
    ASSERT_TRUE(eventually([&] { return control_.run_state() == RunState::GuestPanicked; }));
    control_.pause();
    EXPECT_EQ(v0.steps_run(), 1u) << "parked right after the panic write";
    EXPECT_STREQ(qmp_name(control_.run_state()), "guest-panicked");
    control_.request_stop({StopKind::HostRequest, 0, "quit"});
    t0.join();
    EXPECT_EQ(events, (std::vector<std::string>{"GUEST_PANICKED", "STOP"}));

    VmControl other;
    other.set_policy({false, true});
    other.set_vcpu_count(1);
    ScriptedVcpu v1(0, {Step::exit(VcpuExit::Kind::InternalError, 1), Step::spin()});
    ExitHandler handler(pio_, mmio_, other);
    other.set_kicker([&] { v1.kick(); });
    std::thread t1([&] { run_vcpu_loop(v1, handler, other); });
    ASSERT_TRUE(eventually([&] { return other.run_state() == RunState::InternalError; }));
    other.pause();
    EXPECT_EQ(other.run_state(), RunState::InternalError);
    other.request_stop({StopKind::HostRequest, 0, "quit"});
    t1.join();
    // Power-off under this policy still ends the anchor (stay_on_poweroff is false).
    VmControl third;
    third.set_policy({false, true});
    third.guest_stop({StopKind::PowerOff, 0, ""});
    EXPECT_TRUE(third.stopping());
}

TEST(VmControlTest, RunStatesFollowStopAndCont) {
    VmControl c;
    c.set_vcpu_count(0);
    EXPECT_EQ(c.run_state(), RunState::Running);
    c.pause();
    EXPECT_EQ(c.run_state(), RunState::Paused);
    EXPECT_TRUE(c.resume());
    EXPECT_EQ(c.run_state(), RunState::Running);
    VmControl p;
    p.start_paused();
    EXPECT_STREQ(qmp_name(p.run_state()), "prelaunch");
    EXPECT_TRUE(p.resume());
    EXPECT_STREQ(qmp_name(p.run_state()), "running");
}

TEST_F(AnchorExitTest, FirstStopReasonWins) {
    EXPECT_TRUE(control_.request_stop({StopKind::GuestExitPort, 1, ""}));
    EXPECT_FALSE(control_.request_stop({StopKind::Reset, 0, ""}));
    EXPECT_EQ(control_.reason()->kind, StopKind::GuestExitPort);
}

TEST_F(AnchorExitTest, SerialInterruptFollowsOut2AndIer) {
    // Enable THRE interrupts with OUT2 set: the line rises; reading IIR clears it.
    ScriptedVcpu vcpu(0, {Step::out(0x3fc, 0x08), Step::out(0x3f9, 0x02), Step::in(0x3fa), Step::out(0xf4, 0)});
    run_one(vcpu);
    EXPECT_GE(irq_->triggers.load(), 1);
    EXPECT_EQ(vcpu.reads().at(0) & 0x0f, 0x02u) << "IIR must say THR empty";
    EXPECT_FALSE(irq_->level.load());
}

TEST(StopReasonTest, ExitStatusesAreDistinct) {
    EXPECT_EQ(exit_status({StopKind::PowerOff, 0, ""}), 0);
    EXPECT_EQ(exit_status({StopKind::GuestExitPort, 0, ""}), 1);
    EXPECT_EQ(exit_status({StopKind::GuestExitPort, 0x7f, ""}), 0xff);
    EXPECT_EQ(exit_status({StopKind::Reset, 0, ""}), 2);
    EXPECT_EQ(exit_status({StopKind::TripleFault, 0, ""}), 4);
    EXPECT_EQ(exit_status({StopKind::InternalError, 0, ""}), 6);
    EXPECT_EQ(exit_status({StopKind::HostRequest, 0, ""}), 8);
    EXPECT_THAT(describe({StopKind::GuestExitPort, 3, ""}), HasSubstr("value 3"));
}

}  // namespace
}  // namespace vmm::anchor
