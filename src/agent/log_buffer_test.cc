#include "agent/log_buffer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "common/log.h"

namespace ds {
namespace {

std::string TempDb() {
  std::string tmpl = (std::filesystem::path(testing::TempDir()) / "logbuf.XXXXXX").string();
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return (std::filesystem::path(tmpl) / "agent.db").string();
}

TEST(LogBuffer, KeepsOrderAcrossReopenAndNeverReusesSeq) {
  std::string db = TempDb();
  {
    auto buf = OpenLogBuffer(db, 100);
    ASSERT_TRUE(buf.ok()) << buf.status();
    (*buf)->Append(1, "info", "one", "", "{}");
    (*buf)->Append(2, "warn", "two", "", "{}");
    auto peek = (*buf)->Peek(10);
    ASSERT_TRUE(peek.ok());
    ASSERT_EQ(peek->size(), 2u);
    ASSERT_TRUE((*buf)->Remove(peek->at(1).seq).ok());
    (*buf)->Append(3, "info", "three", "", "{}");
  }
  auto buf = OpenLogBuffer(db, 100);
  ASSERT_TRUE(buf.ok());
  auto peek = (*buf)->Peek(10);
  ASSERT_TRUE(peek.ok());
  ASSERT_EQ(peek->size(), 1u);
  EXPECT_EQ(peek->at(0).message, "three");
  EXPECT_EQ(peek->at(0).seq, 3);
}

TEST(LogBuffer, ATimeStampedBeforeTheRecordAheadOfItIsRaisedToThatRecordsTime) {
  auto buf = OpenLogBuffer(TempDb(), 100);
  ASSERT_TRUE(buf.ok());
  (*buf)->Append(1000, "info", "stamped later, stored first", "", "{}");
  (*buf)->Append(998, "info", "stamped earlier, stored second", "", "{}");
  (*buf)->Append(1001, "info", "third", "", "{}");
  auto peek = (*buf)->Peek(10);
  ASSERT_TRUE(peek.ok());
  ASSERT_EQ(peek->size(), 3u);
  EXPECT_EQ(peek->at(0).time_ms, 1000);
  EXPECT_EQ(peek->at(1).time_ms, 1000);
  EXPECT_EQ(peek->at(2).time_ms, 1001);
}

TEST(LogBuffer, WhenFullDropsOldestDebugFirstAndSaysSo) {
  auto buf = OpenLogBuffer(TempDb(), 10);
  ASSERT_TRUE(buf.ok());
  for (int i = 0; i < 5; ++i) (*buf)->Append(i, "debug", "dbg" + std::to_string(i), "", "{}");
  for (int i = 0; i < 5; ++i) (*buf)->Append(10 + i, "info", "inf" + std::to_string(i), "", "{}");
  (*buf)->Append(20, "error", "the new one", "", "{}");
  EXPECT_EQ((*buf)->DroppedTotal(), 1);
  auto peek = (*buf)->Peek(100);
  ASSERT_TRUE(peek.ok());
  ASSERT_EQ(peek->size(), 11u);
  EXPECT_EQ(peek->at(0).message, "dbg1");  // dbg0 went first
  EXPECT_EQ(peek->at(9).level, "warn");
  EXPECT_NE(peek->at(9).message.find("dropped 1 oldest debug lines"), std::string::npos);
  EXPECT_EQ(peek->at(10).message, "the new one");
}

TEST(LogBuffer, SinkExtractsCorrelationIdAndFields) {
  auto buf = OpenLogBuffer(TempDb(), 100);
  ASSERT_TRUE(buf.ok());
  auto sink = MakeLogBufferSink(buf->get());
  spdlog::logger logger("t", sink);
  logger.info("run=0123abcd-0000-4000-8000-00000000beef job=photos: 3 uploaded");
  auto peek = (*buf)->Peek(10);
  ASSERT_TRUE(peek.ok());
  ASSERT_EQ(peek->size(), 1u);
  EXPECT_EQ(peek->at(0).correlation_id, "0123abcd-0000-4000-8000-00000000beef");
  EXPECT_EQ(peek->at(0).fields_json, R"({"job":"photos"})");
  EXPECT_EQ(peek->at(0).level, "info");
}

TEST(LogBuffer, StaysBoundedUnderManyLines) {
  auto buf = OpenLogBuffer(TempDb(), 1000);
  ASSERT_TRUE(buf.ok());
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 5000; ++i) (*buf)->Append(i, i % 2 ? "debug" : "info", "line", "", "{}");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("5000 appends in %.3f s (%.0f lines/s)\n", secs, 5000 / secs);
  EXPECT_LE((*buf)->Size(), 1000 + 1);
  EXPECT_GT((*buf)->DroppedTotal(), 0);
  auto peek = (*buf)->Peek(2000);
  ASSERT_TRUE(peek.ok());
  EXPECT_EQ(static_cast<int64_t>(peek->size()), (*buf)->Size());
}

}  // namespace
}  // namespace ds
