#include "common/bounded_queue.h"

#include <atomic>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace ds {
namespace {

using std::chrono::milliseconds;

TEST(BoundedQueueTest, PopsInPushOrderThenNulloptOnceClosedAndEmpty) {
  BoundedQueue<std::string> q(4);
  ASSERT_TRUE(q.Push("a"));
  ASSERT_TRUE(q.Push("b"));
  q.Close();
  EXPECT_FALSE(q.Push("c"));
  EXPECT_EQ(q.Pop(), "a");
  EXPECT_EQ(q.Pop(), "b");
  EXPECT_EQ(q.Pop(), std::nullopt);
}

TEST(BoundedQueueTest, PushWaitsWhileFullUntilAPopMakesRoom) {
  BoundedQueue<int> q(2);
  ASSERT_TRUE(q.Push(1));
  ASSERT_TRUE(q.Push(2));
  std::atomic<bool> pushed{false};
  std::thread producer([&] {
    EXPECT_TRUE(q.Push(3));
    pushed = true;
  });
  // The producer cannot have pushed: the queue holds two items until this pop.
  EXPECT_EQ(q.size(), 2u);
  EXPECT_FALSE(pushed.load());
  EXPECT_EQ(q.Pop(), 1);
  producer.join();
  EXPECT_TRUE(pushed.load());
  EXPECT_EQ(q.Pop(), 2);
  EXPECT_EQ(q.Pop(), 3);
}

TEST(BoundedQueueTest, WeightBoundsTheQueueButAHeavyItemGoesAlone) {
  BoundedQueue<int> q(10, /*max_weight=*/100);
  ASSERT_TRUE(q.Push(1, 500));  // heavier than the bound, into an empty queue: accepted
  std::thread producer([&] { EXPECT_TRUE(q.Push(2, 60)); });
  EXPECT_EQ(q.Pop(), 1);
  producer.join();
  ASSERT_TRUE(q.Push(3, 40));  // 60 + 40 fits exactly
  EXPECT_EQ(q.size(), 2u);
}

TEST(BoundedQueueTest, CloseReleasesAWaitingProducerWithFalse) {
  BoundedQueue<int> q(1);
  ASSERT_TRUE(q.Push(1));
  std::thread producer([&] { EXPECT_FALSE(q.Push(2)); });
  q.Close();
  producer.join();
  EXPECT_EQ(q.Pop(), 1);
  EXPECT_EQ(q.Pop(), std::nullopt);
}

TEST(BoundedQueueTest, CloseReleasesAWaitingConsumer) {
  BoundedQueue<int> q(1);
  std::thread consumer([&] { EXPECT_EQ(q.Pop(), std::nullopt); });
  q.Close();
  consumer.join();
}

TEST(BoundedQueueTest, PopBatchTakesAFullBatchAsSoonAsItIsQueued) {
  BoundedQueue<int> q(100);
  std::thread producer([&] {
    for (int i = 0; i < 7; ++i) EXPECT_TRUE(q.Push(i));
  });
  // A timeout far beyond the test's life: only the batch being complete can end the wait.
  auto batch = q.PopBatch(5, kUnboundedWeight, std::chrono::hours(1));
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(*batch, (std::vector<int>{0, 1, 2, 3, 4}));
  producer.join();
  EXPECT_EQ(q.Drain(), (std::vector<int>{5, 6}));
}

TEST(BoundedQueueTest, PopBatchEndsOnWeightOnTimeoutAndOnClose) {
  BoundedQueue<int> q(100);
  ASSERT_TRUE(q.Push(1, 30));
  ASSERT_TRUE(q.Push(2, 30));
  auto by_weight = q.PopBatch(10, /*batch_weight=*/50, std::chrono::hours(1));
  ASSERT_TRUE(by_weight.has_value());
  EXPECT_EQ(*by_weight, (std::vector<int>{1, 2}));

  auto timed_out = q.PopBatch(10, kUnboundedWeight, milliseconds(1));
  ASSERT_TRUE(timed_out.has_value());
  EXPECT_TRUE(timed_out->empty());

  ASSERT_TRUE(q.Push(3));
  q.Close();
  auto last = q.PopBatch(10, kUnboundedWeight, std::chrono::hours(1));
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(*last, std::vector<int>{3});
  EXPECT_EQ(q.PopBatch(10, kUnboundedWeight, std::chrono::hours(1)), std::nullopt);
}

TEST(BoundedQueueTest, PopBatchTakesWhatIsThereWhenAProducerWaitsForRoom) {
  BoundedQueue<int> q(10, /*max_weight=*/100);
  ASSERT_TRUE(q.Push(1, 90));
  std::thread producer([&] { EXPECT_TRUE(q.Push(2, 20)); });  // does not fit: waits
  // Neither the batch size nor its weight is reached; only the waiting producer ends the wait.
  auto batch = q.PopBatch(10, /*batch_weight=*/1000, std::chrono::hours(1));
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(*batch, std::vector<int>{1});
  producer.join();
  EXPECT_EQ(q.Drain(), std::vector<int>{2});
}

TEST(BoundedQueueTest, ManyProducersAndConsumersLoseAndDuplicateNothing) {
  BoundedQueue<int> q(8);
  constexpr int kPerProducer = 2000;
  std::atomic<long> sum{0};
  std::atomic<int> count{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < 3; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) EXPECT_TRUE(q.Push(p * kPerProducer + i));
    });
  }
  std::vector<std::thread> consumers;
  for (int c = 0; c < 2; ++c) {
    consumers.emplace_back([&] {
      while (auto v = q.Pop()) {
        sum += *v;
        ++count;
      }
    });
  }
  for (auto& t : threads) t.join();
  q.Close();
  for (auto& t : consumers) t.join();
  const long n = 3 * kPerProducer;
  EXPECT_EQ(count.load(), n);
  EXPECT_EQ(sum.load(), n * (n - 1) / 2);
}

}  // namespace
}  // namespace ds
