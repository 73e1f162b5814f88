// Split virtqueue (devicemodel/virtio/virtqueue.h) driven by tests/support/virtqueue_driver.h:
// well-formed chains, indirect tables, notification suppression, and every hostile ring; and
// the ChainRing (devicemodel/virtio/chain_ring.h) a device holds popped chains in.
#include "devicemodel/virtio/chain_ring.h"
#include "devicemodel/virtio/virtqueue.h"

#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <gtest/gtest.h>

#include <numeric>

namespace vmm::virtio {
namespace {

using test::FakeGuestMemory;
using test::VirtqueueDriver;
using Drv = VirtqueueDriver;

constexpr std::uint64_t kAll = feature_bit(kFeatureIndirectDesc) | feature_bit(kFeatureEventIdx) | feature_bit(kFeatureVersion1);

struct Fixture {
    // RAM: [0, 64 KiB) and [1 MiB, 1 MiB + 64 KiB); a hole in between.
    FakeGuestMemory fake{{{0, 0x10000}, {0x100000, 0x10000}}};
    const GuestMemory& mem = fake;
    Drv drv{mem, 0x1000, 16};
    Drv::Arena arena{0x4000, 0x10000};
    VirtQueue q(std::uint64_t features = kAll) { return VirtQueue(mem, drv.config(), 256, features); }
};

TEST(VirtioQueueTest, PopsAChainWithReadableThenWritableBuffers) {
    Fixture f;
    auto vq = f.q();
    ASSERT_FALSE(vq.broken());
    const auto a = f.arena.alloc(16), b = f.arena.alloc(100), c = f.arena.alloc(1);
    const std::uint16_t head = f.drv.add_chain({Drv::rd(a, 16), Drv::wr(b, 100), Drv::wr(c, 1)});
    ASSERT_TRUE(vq.has_available());
    auto chain = vq.pop();
    ASSERT_TRUE(chain);
    EXPECT_TRUE(chain->ok());
    EXPECT_EQ(chain->head(), head);
    ASSERT_EQ(chain->readable().size(), 1u);
    ASSERT_EQ(chain->writable().size(), 2u);
    EXPECT_EQ(chain->readable()[0].gpa, a);
    EXPECT_EQ(chain->readable_bytes(), 16u);
    EXPECT_EQ(chain->writable_bytes(), 101u);
    EXPECT_FALSE(vq.pop()) << "only one chain was made available";
    EXPECT_FALSE(vq.has_available());
}

// A device that pops into the chain it keeps (VirtioBlk, virtio-net TX) sees each chain alone:
// nothing of the previous chain's buffers, lengths or error is left over.
TEST(VirtioQueueTest, PoppingIntoAKeptChainReplacesItsContents) {
    Fixture f;
    auto vq = f.q();
    const auto a = f.arena.alloc(16), b = f.arena.alloc(100), c = f.arena.alloc(1), d = f.arena.alloc(8);
    const std::uint16_t first = f.drv.add_chain({Drv::rd(a, 16), Drv::wr(b, 100), Drv::wr(c, 1)});
    DescriptorChain chain;
    ASSERT_TRUE(vq.pop(chain));
    EXPECT_EQ(chain.head(), first);
    EXPECT_EQ(chain.writable().size(), 2u);
    f.drv.set_desc(9, 0x20000, 4, kDescFWrite, 0);  // a buffer in the hole: a bad chain
    f.drv.publish(9);
    ASSERT_TRUE(vq.pop(chain)) << "a bad chain is still popped, to be given back";
    EXPECT_EQ(chain.head(), 9);
    EXPECT_EQ(chain.error(), ChainError::BufferOutsideRam);
    EXPECT_TRUE(chain.readable().empty() && chain.writable().empty());
    EXPECT_EQ(chain.readable_bytes() + chain.writable_bytes(), 0u);
    const std::uint16_t third = f.drv.add_chain({Drv::rd(d, 8)});
    ASSERT_TRUE(vq.pop(chain));
    EXPECT_TRUE(chain.ok()) << "the previous chain's error is not carried over";
    EXPECT_EQ(chain.head(), third);
    ASSERT_EQ(chain.readable().size(), 1u);
    EXPECT_EQ(chain.readable()[0].gpa, d);
    EXPECT_EQ(chain.readable_bytes(), 8u);
    EXPECT_TRUE(chain.writable().empty());
    EXPECT_EQ(chain.writable_bytes(), 0u);
    EXPECT_FALSE(vq.pop(chain)) << "nothing more is available";
}

TEST(VirtioQueueTest, ReadAndWriteGatherAcrossBuffersAndStopAtTheEnd) {
    Fixture f;
    auto vq = f.q();
    const auto r1 = f.arena.alloc(3), r2 = f.arena.alloc(5);
    const auto w1 = f.arena.alloc(4, 64), w2 = f.arena.alloc(4, 64), guard = f.arena.alloc(8, 64);
    const std::uint8_t src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    f.mem.write(r1, src, 3);
    f.mem.write(r2, src + 3, 5);
    const std::uint8_t pattern[8] = {0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa};
    f.mem.write(guard, pattern, 8);
    f.mem.write(w2 + 4, pattern, 8);
    f.drv.add_chain({Drv::rd(r1, 3), Drv::rd(r2, 5), Drv::wr(w1, 4), Drv::wr(w2, 4)});
    auto chain = vq.pop();
    ASSERT_TRUE(chain && chain->ok());
    std::uint8_t got[8] = {};
    EXPECT_EQ(chain->read(0, got), 8u);
    EXPECT_EQ(0, std::memcmp(got, src, 8));
    std::uint8_t tail[4] = {};
    EXPECT_EQ(chain->read(6, tail), 2u) << "short at the end of the readable part";
    EXPECT_EQ(tail[0], 7);
    std::uint8_t two[2] = {};
    EXPECT_EQ(chain->read(1, two), 2u) << "inside the first buffer";
    EXPECT_EQ(two[0], 2);
    EXPECT_EQ(two[1], 3);
    EXPECT_EQ(chain->read(2, two), 2u) << "the first buffer's last byte and the second's first";
    EXPECT_EQ(two[0], 3);
    EXPECT_EQ(two[1], 4);

    const std::uint8_t big[12] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    EXPECT_EQ(chain->write(2, big), 6u) << "writes stop at the end of the writable buffers";
    std::uint8_t after[8];
    f.mem.read(w2 + 4, after, 8);
    EXPECT_EQ(0, std::memcmp(after, pattern, 8)) << "nothing written past the guest's buffer";
    f.mem.read(guard, after, 8);
    EXPECT_EQ(0, std::memcmp(after, pattern, 8));

    auto iov = chain->writable_iov(2, 6);
    ASSERT_TRUE(iov);
    ASSERT_EQ(iov->size(), 2u);
    EXPECT_EQ((*iov)[0].iov_len, 2u);
    EXPECT_EQ((*iov)[1].iov_len, 4u);
    EXPECT_FALSE(chain->writable_iov(2, 7)) << "past the end";
    iov = chain->writable_iov(1, 3);
    ASSERT_TRUE(iov);
    ASSERT_EQ(iov->size(), 1u) << "inside the first buffer";
    EXPECT_EQ((*iov)[0].iov_base, f.mem.span(w1 + 1, 1)->data());
    EXPECT_EQ((*iov)[0].iov_len, 3u);
    iov = chain->writable_iov(4, 4);
    ASSERT_TRUE(iov);
    ASSERT_EQ(iov->size(), 1u) << "the whole second buffer";
    EXPECT_EQ((*iov)[0].iov_base, f.mem.span(w2, 1)->data());
    EXPECT_FALSE(chain->readable_iov(9, 0)) << "offset past the end";
    EXPECT_TRUE(chain->readable_iov(8, 0));

    // One writable byte by offset (a virtio-blk status byte): in the buffer that holds it.
    EXPECT_EQ(chain->writable_byte(0), f.mem.span(w1, 1)->data());
    EXPECT_EQ(chain->writable_byte(3), f.mem.span(w1 + 3, 1)->data());
    EXPECT_EQ(chain->writable_byte(4), f.mem.span(w2, 1)->data());
    EXPECT_EQ(chain->writable_byte(5), f.mem.span(w2 + 1, 1)->data());
    EXPECT_EQ(chain->writable_byte(7), f.mem.span(w2 + 3, 1)->data());
    EXPECT_EQ(chain->writable_byte(8), nullptr) << "past the writable part";
}

// More buffers than a chain keeps inline (4): they spill to the heap and stay in order.
TEST(VirtioQueueTest, LongChainsKeepEveryBufferInOrder) {
    Fixture f;
    auto vq = f.q();
    std::vector<Drv::Buf> bufs;
    std::vector<std::uint64_t> gpas;
    for (int i = 0; i < 9; ++i) {
        gpas.push_back(f.arena.alloc(16 + i));
        bufs.push_back(i < 5 ? Drv::rd(gpas.back(), 16 + i) : Drv::wr(gpas.back(), 16 + i));
    }
    f.drv.add_chain(bufs);
    auto chain = vq.pop();
    ASSERT_TRUE(chain && chain->ok());
    ASSERT_EQ(chain->readable().size(), 5u);
    ASSERT_EQ(chain->writable().size(), 4u);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(chain->readable()[i].gpa, gpas[i]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(chain->writable()[i].host.size(), 21u + i);
    auto iov = chain->readable_iov(0, chain->readable_bytes());
    ASSERT_TRUE(iov);
    EXPECT_EQ(iov->size(), 5u);
    EXPECT_EQ((*iov)[4].iov_len, 20u);
}

TEST(VirtioQueueTest, AddUsedPublishesElementAndIndex) {
    Fixture f;
    auto vq = f.q();
    const auto a = f.arena.alloc(8);
    const auto h1 = f.drv.add_chain({Drv::wr(a, 8)});
    const auto h2 = f.drv.add_chain({Drv::wr(a, 8)});
    auto c1 = vq.pop();
    auto c2 = vq.pop();
    ASSERT_TRUE(c1 && c2);
    EXPECT_TRUE(vq.add_used(c2->head(), 5));
    EXPECT_TRUE(vq.add_used(c1->head(), 8));
    EXPECT_EQ(f.drv.used_idx(), 2);
    EXPECT_EQ(f.drv.used(0).id, h2);
    EXPECT_EQ(f.drv.used(0).len, 5u);
    EXPECT_EQ(f.drv.used(1).id, h1);
    EXPECT_EQ(f.drv.used(1).len, 8u);
}

TEST(VirtioQueueTest, UnpublishedUsedEntriesAppearWithOneIndexStore) {
    Fixture f;
    auto vq = f.q(feature_bit(kFeatureVersion1));
    const auto a = f.arena.alloc(8);
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < 3; ++i) heads.push_back(f.drv.add_chain({Drv::wr(a, 8)}));
    std::vector<DescriptorChain> chains;
    while (auto c = vq.pop()) chains.push_back(std::move(*c));
    ASSERT_EQ(chains.size(), 3u);
    EXPECT_TRUE(vq.add_used_unpublished(chains[0].head(), 1));
    EXPECT_TRUE(vq.add_used_unpublished(chains[1].head(), 2));
    EXPECT_EQ(f.drv.used_idx(), 0) << "the driver sees no entry before the index is published";
    EXPECT_EQ(f.drv.used(0).id, heads[0]) << "the elements themselves are written";
    vq.publish_used();
    EXPECT_EQ(f.drv.used_idx(), 2);
    vq.publish_used();
    EXPECT_EQ(f.drv.used_idx(), 2) << "publishing again changes nothing";
    // needs_notification() publishes first: the driver is never told of an entry it cannot see.
    EXPECT_TRUE(vq.needs_notification());
    EXPECT_TRUE(vq.add_used_unpublished(chains[2].head(), 3));
    EXPECT_EQ(f.drv.used_idx(), 2);
    EXPECT_TRUE(vq.needs_notification());
    EXPECT_EQ(f.drv.used_idx(), 3);
    EXPECT_EQ(f.drv.used(2).id, heads[2]);
    EXPECT_EQ(f.drv.used(2).len, 3u);
    // A bad head breaks the queue as add_used does, and a broken queue publishes nothing more.
    EXPECT_FALSE(vq.add_used_unpublished(999, 0));
    EXPECT_TRUE(vq.broken());
    vq.publish_used();
    EXPECT_EQ(f.drv.used_idx(), 3);
}

TEST(VirtioQueueTest, IndicesWrapAround16Bits) {
    FakeGuestMemory fake({{0, 0x10000}});
    Drv drv(fake, 0x1000, 4);
    VirtQueue vq(fake, drv.config(), 256, kAll);
    for (int i = 0; i < 70000; ++i) {
        drv.add_chain({Drv::wr(0x8000, 4)});
        auto c = vq.pop();
        ASSERT_TRUE(c && c->ok()) << i;
        ASSERT_TRUE(vq.add_used(c->head(), 4));
        ASSERT_EQ(drv.reclaim().size(), 1u);
    }
    EXPECT_EQ(drv.used_idx(), static_cast<std::uint16_t>(70000));
    EXPECT_FALSE(vq.broken());
}

TEST(VirtioQueueTest, IndirectTable) {
    Fixture f;
    auto vq = f.q();
    const auto table = f.arena.alloc(48, 16);
    const auto a = f.arena.alloc(16), b = f.arena.alloc(512), c = f.arena.alloc(1);
    const auto head = f.drv.add_indirect_chain({Drv::rd(a, 16), Drv::wr(b, 512), Drv::wr(c, 1)}, table);
    auto chain = vq.pop();
    ASSERT_TRUE(chain);
    EXPECT_TRUE(chain->ok()) << to_string(chain->error());
    EXPECT_EQ(chain->head(), head);
    EXPECT_EQ(chain->readable_bytes(), 16u);
    EXPECT_EQ(chain->writable_bytes(), 513u);
}

TEST(VirtioQueueTest, DirectDescriptorsThenIndirectTable) {
    Fixture f;
    auto vq = f.q();
    const auto table = f.arena.alloc(16, 16);
    const auto a = f.arena.alloc(16), c = f.arena.alloc(1);
    f.drv.set_desc(0, c, 1, kDescFWrite, 0, table);
    f.drv.set_desc(3, a, 16, kDescFNext, 4);
    f.drv.set_desc(4, table, 16, kDescFIndirect, 0);
    f.drv.publish(3);
    auto chain = vq.pop();
    ASSERT_TRUE(chain && chain->ok()) << to_string(chain->error());
    EXPECT_EQ(chain->readable_bytes(), 16u);
    EXPECT_EQ(chain->writable_bytes(), 1u);
}

// Each hostile chain is popped with its head and an error; the queue keeps working.
struct BadChainCase {
    const char* name;
    ChainError expected;
    std::uint64_t features;
    void (*build)(Fixture&);
};

void expect_bad_chain(const BadChainCase& tc) {
    SCOPED_TRACE(tc.name);
    Fixture f;
    auto vq = f.q(tc.features);
    tc.build(f);
    auto chain = vq.pop();
    ASSERT_TRUE(chain);
    EXPECT_EQ(chain->error(), tc.expected) << to_string(chain->error());
    EXPECT_EQ(chain->head(), 5);
    EXPECT_TRUE(chain->readable().empty());
    EXPECT_TRUE(chain->writable().empty());
    EXPECT_FALSE(vq.broken());
    EXPECT_TRUE(vq.add_used(chain->head(), 0));
    // A good chain after the bad one still works.
    f.drv.set_desc(9, 0x8000, 4, kDescFWrite, 0);
    f.drv.publish(9);
    auto good = vq.pop();
    ASSERT_TRUE(good);
    EXPECT_TRUE(good->ok());
    EXPECT_EQ(good->head(), 9);
}

TEST(VirtioQueueTest, HostileChainsFailCleanly) {
    const BadChainCase cases[] = {
        {"loop 5->6->5", ChainError::TooLong, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x8000, 4, kDescFNext, 6);
             f.drv.set_desc(6, 0x8000, 4, kDescFNext, 5);
             f.drv.publish(5);
         }},
        {"self loop", ChainError::TooLong, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x8000, 4, kDescFNext, 5);
             f.drv.publish(5);
         }},
        {"next out of range", ChainError::NextOutOfRange, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x8000, 4, kDescFNext, 16);
             f.drv.publish(5);
         }},
        {"buffer in the hole", ChainError::BufferOutsideRam, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x20000, 4, kDescFWrite, 0);
             f.drv.publish(5);
         }},
        {"buffer crossing the end of RAM", ChainError::BufferOutsideRam, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x10000 - 8, 16, kDescFWrite, 0);
             f.drv.publish(5);
         }},
        {"buffer length wraps the address", ChainError::BufferOutsideRam, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, ~0ull - 2, 16, 0, 0);
             f.drv.publish(5);
         }},
        {"readable after writable", ChainError::ReadableAfterWritable, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x8000, 4, kDescFWrite | kDescFNext, 6);
             f.drv.set_desc(6, 0x8100, 16, 0, 0);
             f.drv.publish(5);
         }},
        {"indirect not negotiated", ChainError::IndirectNotNegotiated, feature_bit(kFeatureVersion1),
         [](Fixture& f) {
             f.drv.set_desc(0, 0x8000, 4, kDescFWrite, 0, 0x9000);
             f.drv.set_desc(5, 0x9000, 16, kDescFIndirect, 0);
             f.drv.publish(5);
         }},
        {"indirect length not a multiple of 16", ChainError::IndirectBadLength, kAll,
         [](Fixture& f) {
             f.drv.set_desc(0, 0x8000, 4, kDescFWrite, 0, 0x9000);
             f.drv.set_desc(5, 0x9000, 17, kDescFIndirect, 0);
             f.drv.publish(5);
         }},
        {"indirect length zero", ChainError::IndirectBadLength, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x9000, 0, kDescFIndirect, 0);
             f.drv.publish(5);
         }},
        {"indirect table too big", ChainError::IndirectBadLength, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x0, 16 * (kMaxIndirectDescriptors + 1), kDescFIndirect, 0);
             f.drv.publish(5);
         }},
        {"indirect table outside RAM", ChainError::BufferOutsideRam, kAll,
         [](Fixture& f) {
             f.drv.set_desc(5, 0x10000 - 16, 32, kDescFIndirect, 0);
             f.drv.publish(5);
         }},
        {"nested indirect", ChainError::IndirectNested, kAll,
         [](Fixture& f) {
             f.drv.set_desc(0, 0x9100, 16, kDescFIndirect, 0, 0x9000);
             f.drv.set_desc(0, 0x8000, 4, kDescFWrite, 0, 0x9100);
             f.drv.set_desc(5, 0x9000, 16, kDescFIndirect, 0);
             f.drv.publish(5);
         }},
        {"indirect with next", ChainError::IndirectWithNext, kAll,
         [](Fixture& f) {
             f.drv.set_desc(0, 0x8000, 4, kDescFWrite, 0, 0x9000);
             f.drv.set_desc(5, 0x9000, 16, kDescFIndirect | kDescFNext, 6);
             f.drv.set_desc(6, 0x8000, 4, kDescFWrite, 0);
             f.drv.publish(5);
         }},
        {"loop inside an indirect table", ChainError::TooLong, kAll,
         [](Fixture& f) {
             f.drv.set_desc(0, 0x8000, 4, kDescFNext, 1, 0x9000);
             f.drv.set_desc(1, 0x8000, 4, kDescFNext, 0, 0x9000);
             f.drv.set_desc(5, 0x9000, 32, kDescFIndirect, 0);
             f.drv.publish(5);
         }},
        {"next past the indirect table", ChainError::NextOutOfRange, kAll,
         [](Fixture& f) {
             f.drv.set_desc(0, 0x8000, 4, kDescFNext, 2, 0x9000);
             f.drv.set_desc(1, 0x8000, 4, 0, 0, 0x9000);
             f.drv.set_desc(5, 0x9000, 32, kDescFIndirect, 0);
             f.drv.publish(5);
         }},
    };
    for (const auto& tc : cases) expect_bad_chain(tc);
}

TEST(VirtioQueueTest, ChainLongerThanTheQueueWithoutALoop) {
    // Queue of 4; a chain that visits all 4 and then points back at the first is 5 hops.
    FakeGuestMemory fake({{0, 0x10000}});
    Drv drv(fake, 0x1000, 4);
    VirtQueue vq(fake, drv.config(), 256, kAll);
    for (std::uint16_t i = 0; i < 4; ++i) drv.set_desc(i, 0x8000, 4, kDescFNext, static_cast<std::uint16_t>((i + 1) % 4));
    drv.publish(0);
    auto c = vq.pop();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->error(), ChainError::TooLong);
    // A chain of exactly the queue size is fine.
    drv.set_desc(3, 0x8000, 4, 0, 0);
    drv.publish(0);
    c = vq.pop();
    ASSERT_TRUE(c);
    EXPECT_TRUE(c->ok());
    EXPECT_EQ(c->readable().size(), 4u);
}

TEST(VirtioQueueTest, HeadIndexOutOfRangeBreaksTheQueue) {
    Fixture f;
    auto vq = f.q();
    f.drv.publish(16);
    EXPECT_FALSE(vq.pop());
    EXPECT_TRUE(vq.broken());
    EXPECT_FALSE(vq.add_used(0, 0)) << "a broken queue never writes the used ring";
    EXPECT_EQ(f.drv.used_idx(), 0);
}

TEST(VirtioQueueTest, AvailIndexTooFarAheadBreaksTheQueue) {
    Fixture f;
    auto vq = f.q();
    f.drv.set_avail_idx(17);
    EXPECT_FALSE(vq.has_available());
    EXPECT_TRUE(vq.broken());
    EXPECT_FALSE(vq.pop());
}

TEST(VirtioQueueTest, AddUsedWithABadHeadBreaksTheQueue) {
    Fixture f;
    auto vq = f.q();
    EXPECT_FALSE(vq.add_used(16, 0));
    EXPECT_TRUE(vq.broken());
}

TEST(VirtioQueueTest, BadLayoutsBreakTheQueue) {
    FakeGuestMemory fake({{0, 0x10000}});
    const GuestMemory& mem = fake;
    auto broken = [&](QueueConfig c, std::uint16_t max = 256) { return VirtQueue(mem, c, max, kAll).broken(); };
    const QueueConfig good{16, 0x1000, 0x1100, 0x1200, true};
    EXPECT_FALSE(broken(good));
    auto with = [&](auto fn) {
        QueueConfig c = good;
        fn(c);
        return c;
    };
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.size = 0; })));
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.size = 12; }))) << "not a power of two";
    EXPECT_TRUE(broken(good, 8)) << "bigger than the device's maximum";
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.desc = 0x1008; }))) << "desc not 16-aligned";
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.avail = 0x1101; }))) << "avail not 2-aligned";
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.used = 0x1202; }))) << "used not 4-aligned";
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.desc = 0x10000 - 0x80; }))) << "desc table past RAM";
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.avail = 0x10000 - 36; }))) << "avail ring past RAM";
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.used = 0x10000 - 132; }))) << "used ring past RAM";
    EXPECT_FALSE(broken(with([](QueueConfig& c) { c.used = 0x10000 - 136; }))) << "used ring fits";
    EXPECT_TRUE(broken(with([](QueueConfig& c) { c.used = 0x40000; })));
    // The queue keeps host views of its rings: a region whose host memory is less aligned than
    // the guest addresses in it (never the anchor's: mmap gives pages) is refused, not accessed
    // with a misaligned atomic.
    std::vector<std::uint8_t> odd(0x10000 + 8);
    const GuestMemory shifted({{0, 0x10000, odd.data() + 1}});
    VirtQueue misaligned(shifted, good, 256, kAll);
    EXPECT_TRUE(misaligned.broken());
    EXPECT_NE(misaligned.broken_reason().find("misaligned in host memory"), std::string::npos) << misaligned.broken_reason();
    EXPECT_FALSE(misaligned.pop());
    // A disabled queue is neither broken nor serving.
    VirtQueue off(mem, with([](QueueConfig& c) { c.enabled = false; c.size = 3; }), 256, kAll);
    EXPECT_FALSE(off.broken());
    EXPECT_FALSE(off.pop());
    VirtQueue unconfigured;
    EXPECT_FALSE(unconfigured.pop());
    EXPECT_FALSE(unconfigured.add_used(0, 0));
}

TEST(VirtioQueueTest, NotificationWithoutEventIdxHonoursNoInterrupt) {
    Fixture f;
    auto vq = f.q(feature_bit(kFeatureVersion1));
    EXPECT_FALSE(vq.needs_notification()) << "nothing used yet";
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    auto c = vq.pop();
    vq.add_used(c->head(), 0);
    EXPECT_TRUE(vq.needs_notification());
    EXPECT_FALSE(vq.needs_notification()) << "already notified for that buffer";
    f.drv.set_avail_flags(kAvailFNoInterrupt);
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    c = vq.pop();
    vq.add_used(c->head(), 0);
    EXPECT_FALSE(vq.needs_notification());
}

TEST(VirtioQueueTest, EventIdxNotifiesOnlyWhenUsedEventIsCrossed) {
    Fixture f;
    auto vq = f.q();
    f.drv.set_used_event(2);  // "interrupt me when used idx moves past 2"
    for (int i = 0; i < 5; ++i) f.drv.add_chain({Drv::wr(0x8000, 4)});
    auto use_one = [&] {
        auto c = vq.pop();
        ASSERT_TRUE(c);
        vq.add_used(c->head(), 0);
    };
    use_one();  // used idx 1
    EXPECT_FALSE(vq.needs_notification());
    use_one();  // used idx 2
    EXPECT_FALSE(vq.needs_notification());
    use_one();  // used idx 3: crossed used_event 2
    EXPECT_TRUE(vq.needs_notification());
    use_one();
    EXPECT_FALSE(vq.needs_notification()) << "used_event not moved by the driver";
    f.drv.set_used_event(4);
    use_one();  // used idx 5
    EXPECT_TRUE(vq.needs_notification());
    // NO_INTERRUPT is ignored once EVENT_IDX is negotiated (§2.7.10).
    f.drv.set_avail_flags(kAvailFNoInterrupt);
    f.drv.set_used_event(5);
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    use_one();
    EXPECT_TRUE(vq.needs_notification());
}

// The question in two steps (a device asks after its unlock, common/full_fence_mutex.h):
// prepare_notification() publishes the used idx and takes the count; ask() reads the driver's
// answer when it is asked, so a driver that turns interrupts on or off in between is heard.
TEST(VirtioQueueTest, APreparedQuestionPublishesAndReadsTheAnswerWhenAsked) {
    Fixture f;
    auto vq = f.q(feature_bit(kFeatureVersion1));
    EXPECT_FALSE(vq.prepare_notification().pending()) << "nothing used yet";
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    auto c = vq.pop();
    vq.add_used_unpublished(c->head(), 0);
    EXPECT_EQ(f.drv.used_idx(), 0) << "not published yet";
    f.drv.set_avail_flags(kAvailFNoInterrupt);
    const NotificationQuestion q = vq.prepare_notification();
    EXPECT_EQ(f.drv.used_idx(), 1) << "preparing publishes the entry";
    EXPECT_TRUE(q.pending());
    EXPECT_FALSE(vq.prepare_notification().pending()) << "the count went with the first question";
    f.drv.set_avail_flags(0);  // the driver wants interrupts again before the device asks
    EXPECT_TRUE(q.ask());
    f.drv.set_avail_flags(kAvailFNoInterrupt);
    EXPECT_FALSE(q.ask());
    // With EVENT_IDX: used_event, as read when asked.
    Fixture g;
    auto ev = g.q();
    g.drv.set_used_event(5);
    g.drv.add_chain({Drv::wr(0x8000, 4)});
    c = ev.pop();
    ev.add_used(c->head(), 0);  // used idx 1
    const NotificationQuestion e = ev.prepare_notification();
    EXPECT_FALSE(e.ask()) << "used_event 5 not crossed";
    g.drv.set_used_event(0);
    EXPECT_TRUE(e.ask()) << "used_event 0: crossed by the step to 1";
    EXPECT_FALSE(VirtQueue{}.prepare_notification().pending()) << "an unconfigured queue asks nothing";
}

TEST(VirtioQueueTest, EventIdxPublishesAvailEvent) {
    Fixture f;
    auto vq = f.q();
    EXPECT_FALSE(vq.pop());
    EXPECT_EQ(f.drv.avail_event(), 0) << "wants a kick for entry 0";
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    ASSERT_TRUE(vq.pop());
    ASSERT_TRUE(vq.pop());
    EXPECT_FALSE(vq.pop());
    EXPECT_EQ(f.drv.avail_event(), 2) << "wants a kick for entry 2";
    // Without EVENT_IDX the field is left alone.
    Fixture g;
    auto plain = g.q(feature_bit(kFeatureVersion1));
    g.drv.add_chain({Drv::wr(0x8000, 4)});
    ASSERT_TRUE(plain.pop());
    EXPECT_FALSE(plain.pop());
    EXPECT_EQ(g.drv.avail_event(), 0);
}

TEST(VirtioQueueTest, EventIdxAvailEventIsPublishedWhenTheRingIsFoundEmpty) {
    Fixture f;
    auto vq = f.q();
    for (int i = 0; i < 3; ++i) f.drv.add_chain({Drv::wr(0x8000, 4)});
    ASSERT_TRUE(vq.pop());
    ASSERT_TRUE(vq.pop());
    EXPECT_EQ(f.drv.avail_event(), 0) << "no store (and no fence) while entries are left to pop";
    ASSERT_TRUE(vq.pop());
    EXPECT_FALSE(vq.pop());
    EXPECT_EQ(f.drv.avail_event(), 3) << "found empty: kick me for entry 3";
    // A buffer published after that look is found by the next pop, and the driver kicks for it.
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    EXPECT_TRUE(f.drv.needs_kick(true));
    ASSERT_TRUE(vq.pop());
    EXPECT_EQ(f.drv.avail_event(), 3);
}

TEST(VirtioQueueTest, PopReadsTheAvailIdxAgainOnlyWhenItsEntriesAreConsumed) {
    Fixture f;
    auto vq = f.q();
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    ASSERT_TRUE(vq.pop());
    // The driver now claims far more than the ring holds: the entry announced before is still
    // served, the next look at the idx finds the lie and breaks the queue.
    f.drv.set_avail_idx(static_cast<std::uint16_t>(2 + 300));
    ASSERT_TRUE(vq.pop()) << "entry 1 was announced with the idx read before";
    EXPECT_FALSE(vq.broken());
    EXPECT_FALSE(vq.pop());
    EXPECT_TRUE(vq.broken()) << "avail idx more than the queue size ahead";
}

TEST(VirtioQueueTest, DisabledNotificationsSetNoNotifyWithoutEventIdx) {
    Fixture f;
    auto vq = f.q(feature_bit(kFeatureVersion1));
    EXPECT_TRUE(vq.notifications_enabled());
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    EXPECT_TRUE(f.drv.needs_kick(false)) << "kicks are on by default";
    ASSERT_TRUE(vq.pop());
    vq.disable_notifications();
    EXPECT_FALSE(vq.notifications_enabled());
    EXPECT_EQ(f.drv.used_flags(), kUsedFNoNotify);
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    EXPECT_FALSE(f.drv.needs_kick(false));
    ASSERT_TRUE(vq.pop()) << "a device that polls still sees the buffer";
    EXPECT_FALSE(vq.enable_notifications()) << "nothing new since the pop";
    EXPECT_EQ(f.drv.used_flags(), 0);
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    EXPECT_TRUE(f.drv.needs_kick(false));
    EXPECT_EQ(f.drv.avail_event(), 0) << "avail_event is not used without EVENT_IDX";
}

TEST(VirtioQueueTest, DisabledNotificationsMoveAvailEventBehindWithEventIdx) {
    Fixture f;
    auto vq = f.q();
    EXPECT_FALSE(vq.pop());
    EXPECT_EQ(f.drv.avail_event(), 0);
    vq.disable_notifications();
    EXPECT_EQ(f.drv.used_flags(), 0) << "with EVENT_IDX the flag is not the mechanism";
    EXPECT_EQ(f.drv.avail_event(), 0xffff) << "an index the driver has already passed";
    for (int i = 0; i < 3; ++i) {
        f.drv.add_chain({Drv::wr(0x8000, 4)});
        EXPECT_FALSE(f.drv.needs_kick(true)) << i;
        ASSERT_TRUE(vq.pop());
        EXPECT_EQ(f.drv.avail_event(), 0xffff) << "pop does not re-arm kicks while they are off";
    }
    EXPECT_FALSE(vq.enable_notifications());
    EXPECT_EQ(f.drv.avail_event(), 3) << "kick me for entry 3";
    f.drv.add_chain({Drv::wr(0x8000, 4)});
    EXPECT_TRUE(f.drv.needs_kick(true));
}

TEST(VirtioQueueTest, EnableNotificationsReportsBuffersPublishedWhileKicksWereOff) {
    for (const std::uint64_t features : {feature_bit(kFeatureVersion1), kAll}) {
        Fixture f;
        auto vq = f.q(features);
        const bool event_idx = features & feature_bit(kFeatureEventIdx);
        vq.disable_notifications();
        // The driver publishes after the device's last look and sees kicks off: no kick.
        f.drv.add_chain({Drv::wr(0x8000, 4)});
        EXPECT_FALSE(f.drv.needs_kick(event_idx));
        EXPECT_TRUE(vq.enable_notifications()) << "the re-check must find it: nobody will kick";
        EXPECT_TRUE(vq.pop());
        EXPECT_FALSE(vq.enable_notifications()) << "idempotent, and now nothing is pending";
    }
}

TEST(VirtioQueueTest, SuppressionOnABrokenOrDisabledQueueTouchesNothing) {
    Fixture f;
    VirtQueue off;
    off.disable_notifications();
    EXPECT_FALSE(off.enable_notifications());
    auto vq = f.q(feature_bit(kFeatureVersion1));
    f.drv.set_avail_idx(100);  // more than the queue size ahead
    EXPECT_FALSE(vq.pop());
    ASSERT_TRUE(vq.broken());
    vq.disable_notifications();
    EXPECT_EQ(f.drv.used_flags(), 0);
    EXPECT_FALSE(vq.enable_notifications());
    // Broken while kicks are off: the re-check says nothing is available.
    Fixture g;
    auto vq2 = g.q(feature_bit(kFeatureVersion1));
    vq2.disable_notifications();
    g.drv.set_avail_idx(100);
    EXPECT_FALSE(vq2.enable_notifications());
    EXPECT_TRUE(vq2.broken());
}

TEST(VirtioQueueTest, ZeroLengthDescriptorsAreSkippedWherever) {
    Fixture f;
    auto vq = f.q();
    f.drv.add_chain({Drv::rd(0xdead0000, 0), Drv::wr(0x8000, 4)});
    auto c = vq.pop();
    ASSERT_TRUE(c && c->ok());
    EXPECT_TRUE(c->readable().empty());
    EXPECT_EQ(c->writable_bytes(), 4u);
}

// ChainRing (devicemodel/virtio/chain_ring.h): the held chains of a device, popped into in place.
TEST(ChainRingTest, HoldsChainsInOrderAcrossWrapAndGrowth) {
    Fixture f;
    auto vq = f.q();
    ChainRing ring(2);
    EXPECT_EQ(ring.capacity(), 2u);
    std::vector<std::uint16_t> heads;
    auto pop_one = [&](std::uint32_t len) {
        heads.push_back(f.drv.add_chain({Drv::wr(0x8000, len)}));
        ASSERT_TRUE(vq.pop(ring.next_slot()));
        ring.commit_back();
    };
    pop_one(10);
    pop_one(20);
    ring.drop_front(1);  // the first slot is free again: the next pop wraps into it
    pop_one(30);
    ASSERT_EQ(ring.size(), 2u);
    EXPECT_EQ(ring.capacity(), 2u) << "no growth while a slot is free";
    EXPECT_EQ(ring.front().writable_bytes(), 20u);
    EXPECT_EQ(ring[1].writable_bytes(), 30u) << "popped into the reused slot, its old chain replaced";
    EXPECT_EQ(ring[1].head(), heads[2]);
    pop_one(40);  // full: grows, the held chains keep their order
    EXPECT_EQ(ring.capacity(), 4u);
    ASSERT_EQ(ring.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(ring[i].writable_bytes(), 20u + 10 * i) << i;
        EXPECT_EQ(ring[i].head(), heads[i + 1]) << i;
    }
    ring.drop_front(3);
    EXPECT_TRUE(ring.empty());
}

TEST(ChainRingTest, AnUncommittedSlotIsNotHeld) {
    Fixture f;
    auto vq = f.q();
    ChainRing ring(4);
    f.drv.add_chain({Drv::wr(0x8000, 8)});
    DescriptorChain& slot = ring.next_slot();
    ASSERT_TRUE(vq.pop(slot));
    EXPECT_TRUE(ring.empty()) << "popped, not committed (a chain the device handed back)";
    EXPECT_EQ(&ring.next_slot(), &slot) << "the same slot again";
    f.drv.add_chain({Drv::wr(0x8000, 16)});
    ASSERT_TRUE(vq.pop(ring.next_slot()));
    ring.commit_back();
    ASSERT_EQ(ring.size(), 1u);
    EXPECT_EQ(ring.front().writable_bytes(), 16u);
    ring.clear();
    EXPECT_TRUE(ring.empty());
}

}  // namespace
}  // namespace vmm::virtio
