#include "agent/log_buffer.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <mutex>  // spdlog's sink lock
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/mutex.h"
#include "spdlog/sinks/base_sink.h"

namespace ds {
namespace {

class SqliteLogBuffer final : public LogBuffer {
 public:
  SqliteLogBuffer(SQLite::Database db, int64_t max_records)
      : db_(std::move(db)), max_(max_records) {}

  void Append(int64_t time_ms, const std::string& level, const std::string& message,
              const std::string& correlation_id, const std::string& fields_json) override {
    MutexLock lock(&mu_);
    // spdlog stamps a line before the sink's lock: two threads can reach here out of stamp order.
    // Records are read by seq, so a record's time never goes before the one stored ahead of it.
    time_ms = std::max(time_ms, last_time_ms_);
    last_time_ms_ = time_ms;
    try {
      if (count_ < 0) count_ = CountLocked();
      if (count_ >= max_) {
        const int64_t room = std::max<int64_t>(1, max_ / 10);
        SQLite::Statement debug(db_, R"sql(
          DELETE FROM log_buffer WHERE seq IN (
            SELECT seq FROM log_buffer WHERE level = 'debug' ORDER BY seq LIMIT ?))sql");
        debug.bind(1, room);
        int n = debug.exec();
        std::string what = "debug lines";
        if (n == 0) {
          SQLite::Statement any(db_, R"sql(
            DELETE FROM log_buffer WHERE seq IN (SELECT seq FROM log_buffer ORDER BY seq LIMIT ?))sql");
          any.bind(1, room);
          n = any.exec();
          what = "lines (no debug lines were left)";
        }
        dropped_ += n;
        count_ -= n;
        Insert(time_ms, "warn",
               absl::StrCat("log ship buffer full (", max_, " records): dropped ", n, " oldest ",
                            what),
               "", "{}");
      }
      Insert(time_ms, level, message, correlation_id, fields_json);
    } catch (const std::exception&) {
      ++errors_;
      count_ = -1;  // recounted next time
    }
  }

  absl::StatusOr<std::vector<protocol::LogRecord>> Peek(size_t limit) override {
    MutexLock lock(&mu_);
    try {
      SQLite::Statement q(db_, R"sql(
        SELECT seq, time_ms, level, message, correlation_id, fields FROM log_buffer
        ORDER BY seq LIMIT ?)sql");
      q.bind(1, static_cast<int64_t>(limit));
      std::vector<protocol::LogRecord> out;
      while (q.executeStep()) {
        protocol::LogRecord r;
        r.seq = q.getColumn(0).getInt64();
        r.time_ms = q.getColumn(1).getInt64();
        r.level = q.getColumn(2).getString();
        r.message = q.getColumn(3).getString();
        r.correlation_id = q.getColumn(4).getString();
        r.fields_json = q.getColumn(5).getString();
        out.push_back(std::move(r));
      }
      return out;
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("log buffer: ", e.what()));
    }
  }

  absl::Status Remove(int64_t up_to_seq) override {
    MutexLock lock(&mu_);
    try {
      SQLite::Statement q(db_, "DELETE FROM log_buffer WHERE seq <= ?");
      q.bind(1, up_to_seq);
      if (count_ < 0) count_ = CountLocked();
      count_ -= q.exec();
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("log buffer: ", e.what()));
    }
  }

  int64_t Size() override {
    MutexLock lock(&mu_);
    try {
      if (count_ < 0) count_ = CountLocked();
      return count_;
    } catch (const std::exception&) {
      return -1;
    }
  }
  int64_t DroppedTotal() override {
    MutexLock lock(&mu_);
    return dropped_;
  }

 private:
  int64_t CountLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SQLite::Statement q(db_, "SELECT COUNT(*) FROM log_buffer");
    q.executeStep();
    return q.getColumn(0).getInt64();
  }
  void Insert(int64_t time_ms, const std::string& level, const std::string& message,
              const std::string& correlation_id, const std::string& fields_json)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SQLite::Statement q(db_, R"sql(
      INSERT INTO log_buffer (time_ms, level, message, correlation_id, fields) VALUES (?, ?, ?, ?, ?))sql");
    q.bind(1, time_ms);
    q.bind(2, level);
    q.bind(3, message.substr(0, protocol::kMaxLogMessageBytes));
    q.bind(4, correlation_id);
    q.bind(5, fields_json);
    q.exec();
    ++count_;
  }

  Mutex mu_;
  SQLite::Database db_ ABSL_GUARDED_BY(mu_);
  const int64_t max_;
  int64_t count_ ABSL_GUARDED_BY(mu_) = -1;  // rows in the table, -1 until counted once
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_time_ms_ ABSL_GUARDED_BY(mu_) = 0;  // time of the last record appended
};

bool IsUuidAt(const std::string& s, size_t at) {
  if (s.size() < at + 36) return false;
  for (size_t i = 0; i < 36; ++i) {
    char c = s[at + i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

class BufferSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit BufferSink(LogBuffer* buffer) : buffer_(buffer) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string level;
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        level = "debug";
        break;
      case spdlog::level::info:
        level = "info";
        break;
      case spdlog::level::warn:
        level = "warn";
        break;
      default:
        level = "error";
        break;
    }
    std::string text(msg.payload.data(), msg.payload.size());
    std::string correlation;
    nlohmann::json fields = nlohmann::json::object();
    // key=value words: run= is the correlation id; a few others become fields.
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find(' ', pos);
      if (end == std::string::npos) end = text.size();
      std::string word = text.substr(pos, end - pos);
      size_t eq = word.find('=');
      if (eq != std::string::npos && eq > 0 && eq < 32 && word.size() - eq - 1 < 256) {
        std::string key = word.substr(0, eq), value = word.substr(eq + 1);
        while (!value.empty() &&
               (value.back() == ':' || value.back() == ',' || value.back() == ';'))
          value.pop_back();
        if (key == "run" && IsUuidAt(value, 0)) {
          correlation = value.substr(0, 36);
        } else if (key.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos &&
                   fields.size() < 16) {
          fields[key] = value;
        }
      }
      pos = end + 1;
    }
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    buffer_->Append(ms, level, text, correlation,
                    fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  void flush_() override {}

 private:
  LogBuffer* const buffer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LogBuffer>> OpenLogBuffer(const std::string& db_path,
                                                         int64_t max_records) {
  if (max_records < 10) return absl::InvalidArgumentError("log buffer: at least 10 records");
  try {
    SQLite::Database db(db_path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, 5000);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    // AUTOINCREMENT: a sequence number is never reused, even after the table was emptied.
    db.exec(R"sql(
      CREATE TABLE IF NOT EXISTS log_buffer (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms         INTEGER NOT NULL,       -- Unix ms
        level           TEXT NOT NULL,          -- debug | info | warn | error
        message         TEXT NOT NULL,
        correlation_id  TEXT NOT NULL DEFAULT '',
        fields          TEXT NOT NULL DEFAULT '{}'  -- JSON object
      ))sql");
    return std::make_unique<SqliteLogBuffer>(std::move(db), max_records);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("opening the log buffer in ", db_path, ": ", e.what()));
  }
}

std::shared_ptr<spdlog::sinks::sink> MakeLogBufferSink(LogBuffer* buffer) {
  return std::make_shared<BufferSink>(buffer);
}

}  // namespace ds
