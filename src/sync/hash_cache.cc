#include "sync/hash_cache.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <exception>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ds {
namespace {

constexpr int kBusyTimeoutMs = 5000;

// The in-memory cache; also the working set of the SQLite-backed cache, which adds persistence.
class MemoryHashCache : public HashCache {
 public:
  std::optional<std::string> Lookup(const std::string& path, uint64_t size,
                                    int64_t mtime_ns) override {
    auto it = entries_.find(path);
    if (it == entries_.end()) return std::nullopt;
    it->second.touched = true;
    if (it->second.size != size || it->second.mtime_ns != mtime_ns) return std::nullopt;
    return it->second.sha256;
  }

  void Store(const std::string& path, uint64_t size, int64_t mtime_ns,
             const std::string& sha256) override {
    auto [it, inserted] = entries_.try_emplace(path);
    Entry& e = it->second;
    e.touched = true;
    if (!inserted && e.size == size && e.mtime_ns == mtime_ns && e.sha256 == sha256) return;
    e.size = size;
    e.mtime_ns = mtime_ns;
    e.sha256 = sha256;
    e.dirty = true;
  }

  absl::Status Flush() override {
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (!it->second.touched) {
        it = entries_.erase(it);
      } else {
        it->second.touched = false;
        it->second.dirty = false;
        ++it;
      }
    }
    return absl::OkStatus();
  }

 protected:
  struct Entry {
    uint64_t size = 0;     // bytes
    int64_t mtime_ns = 0;  // Unix nanoseconds
    std::string sha256;    // lowercase hex
    bool touched = false;  // looked up or stored since the last Flush
    bool dirty = false;    // stored with new values since the last Flush; not yet persisted
  };

  std::unordered_map<std::string, Entry> entries_;
};

// Maps a SQLite error (primary result code) to a canonical status.
absl::Status SqliteStatus(const SQLite::Exception& e, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", e.what());
  switch (e.getErrorCode() & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(msg);
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::PermissionDeniedError(msg);
    case SQLITE_CANTOPEN:  // missing directory, unwritable file, ...
      return absl::FailedPreconditionError(msg);
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::ResourceExhaustedError(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(msg);
    default:
      return absl::InternalError(msg);
  }
}

class SqliteHashCache final : public MemoryHashCache {
 public:
  SqliteHashCache(std::unique_ptr<SQLite::Database> db, std::string db_path, std::string job_key)
      : db_(std::move(db)), db_path_(std::move(db_path)), job_key_(std::move(job_key)) {}

  // Creates the table if needed and loads this job's rows. Throws SQLite::Exception.
  void Load() {
    db_->exec("PRAGMA journal_mode=WAL");
    db_->exec("PRAGMA synchronous=NORMAL");
    // One row per file of a job whose hash is known; valid while size and mtime still match.
    db_->exec(R"sql(
      CREATE TABLE IF NOT EXISTS hash_cache (
        job_key  TEXT NOT NULL,     -- the job the file belongs to, e.g. its id
        path     TEXT NOT NULL,     -- relative to the job folder, '/'-separated
        size     INTEGER NOT NULL,  -- bytes
        mtime_ns INTEGER NOT NULL,  -- Unix nanoseconds
        sha256   TEXT NOT NULL,     -- lowercase hex
        PRIMARY KEY (job_key, path)
      ) WITHOUT ROWID)sql");
    SQLite::Statement q(*db_,
                        "SELECT path, size, mtime_ns, sha256 FROM hash_cache WHERE job_key = ?");
    q.bind(1, job_key_);
    while (q.executeStep()) {
      Entry& e = entries_[q.getColumn(0).getString()];
      e.size = static_cast<uint64_t>(q.getColumn(1).getInt64());
      e.mtime_ns = q.getColumn(2).getInt64();
      e.sha256 = q.getColumn(3).getString();
    }
  }

  absl::Status Flush() override {
    try {
      SQLite::Transaction tx(*db_);
      SQLite::Statement upsert(*db_, R"sql(
        INSERT INTO hash_cache (job_key, path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (job_key, path) DO UPDATE SET
          size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256)sql");
      SQLite::Statement remove(*db_, "DELETE FROM hash_cache WHERE job_key = ? AND path = ?");
      for (const auto& [path, e] : entries_) {
        if (!e.touched) {
          remove.bind(1, job_key_);
          remove.bind(2, path);
          remove.exec();
          remove.reset();
        } else if (e.dirty) {
          upsert.bind(1, job_key_);
          upsert.bind(2, path);
          upsert.bind(3, static_cast<int64_t>(e.size));
          upsert.bind(4, e.mtime_ns);
          upsert.bind(5, e.sha256);
          upsert.exec();
          upsert.reset();
        }
      }
      tx.commit();
    } catch (const SQLite::Exception& e) {
      // The transaction rolled back; memory still holds every entry and flag, so a later Flush
      // retries the same work.
      return SqliteStatus(e, absl::StrCat("hash cache ", db_path_, ": flush"));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("hash cache ", db_path_, ": flush: ", e.what()));
    }
    return MemoryHashCache::Flush();
  }

 private:
  std::unique_ptr<SQLite::Database> db_;
  std::string db_path_;
  std::string job_key_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HashCache>> OpenHashCache(const std::string& db_path,
                                                         const std::string& job_key) {
  try {
    auto db = std::make_unique<SQLite::Database>(
        db_path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, kBusyTimeoutMs);
    auto cache = std::make_unique<SqliteHashCache>(std::move(db), db_path, job_key);
    cache->Load();
    return std::unique_ptr<HashCache>(std::move(cache));
  } catch (const SQLite::Exception& e) {
    return SqliteStatus(e, absl::StrCat("hash cache ", db_path));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("hash cache ", db_path, ": ", e.what()));
  }
}

std::unique_ptr<HashCache> NewMemoryHashCache() { return std::make_unique<MemoryHashCache>(); }

}  // namespace ds
