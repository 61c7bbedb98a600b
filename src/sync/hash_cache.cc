#include "sync/hash_cache.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sync/manifest_digest.h"

namespace ds {
namespace {

constexpr int kBusyTimeoutMs = 5000;
// Changes buffered before they are written (one short transaction per batch).
constexpr size_t kPersistBatch = 10'000;

// The in-memory cache; the SQLite-backed cache adds persistence through the hooks.
class MemoryHashCache : public HashCache {
 public:
  std::optional<Sha256Digest> Lookup(std::string_view path, uint64_t size,
                                     int64_t mtime_ns) override {
    // Everything before `path` was not looked up in this scan: gone from the tree.
    while (cursor_ < contents_.size() && contents_[cursor_].path < path) {
      Dropped(contents_[cursor_].path);
      ++cursor_;
    }
    std::optional<Sha256Digest> hit;
    if (cursor_ < contents_.size() && contents_[cursor_].path == path) {
      Manifest::Ref e = contents_[cursor_];
      if (e.size == size && e.mtime_ns == mtime_ns) {
        hit = *e.sha256;
      } else {
        Dropped(e.path);  // stale; a Store follows if the file hashes
      }
      ++cursor_;
    }
    contents_.ReleaseBefore(cursor_);
    return hit;
  }

  void Store(std::string_view path, uint64_t size, int64_t mtime_ns,
             const Sha256Digest& sha256) override {
    Stored(path, size, mtime_ns, sha256);
  }

  absl::Status EndScan() override {
    for (; cursor_ < contents_.size(); ++cursor_) Dropped(contents_[cursor_].path);
    contents_ = Manifest();
    cursor_ = 0;
    return Persist();
  }

  void Adopt(Manifest manifest, std::string digest) override {
    contents_ = std::move(manifest);
    digest_ = std::move(digest);
    cursor_ = 0;
  }

  const std::string& digest() const override { return digest_; }
  size_t size() const override { return contents_.size(); }

 protected:
  // Hooks for persistence: an entry left the contents; an entry was hashed; make both durable.
  virtual void Dropped(std::string_view) {}
  virtual void Stored(std::string_view, uint64_t, int64_t, const Sha256Digest&) {}
  virtual absl::Status Persist() { return absl::OkStatus(); }

  Manifest contents_;
  std::string digest_;  // ManifestDigest(contents_) as adopted or loaded
  size_t cursor_ = 0;   // entries before it are consumed by the current scan
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

  // Creates the table if needed and loads this job's rows in path order. Throws SQLite::Exception.
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
    // The primary key orders the rows byte-wise (BINARY collation): the manifest's order.
    SQLite::Statement q(*db_, R"sql(
      SELECT path, size, mtime_ns, sha256 FROM hash_cache WHERE job_key = ? ORDER BY path)sql");
    q.bind(1, job_key_);
    ManifestDigester digester;
    Sha256Digest sha;
    while (q.executeStep()) {
      const char* path = q.getColumn(0).getText();
      const std::string_view path_view(path, static_cast<size_t>(q.getColumn(0).getBytes()));
      const auto size = static_cast<uint64_t>(q.getColumn(1).getInt64());
      const int64_t mtime_ns = q.getColumn(2).getInt64();
      const std::string_view hex(q.getColumn(3).getText(),
                                 static_cast<size_t>(q.getColumn(3).getBytes()));
      // A malformed row is left out (and deleted at the end of the next scan).
      if (!ParseSha256Hex(hex, &sha) || !contents_.Add(path_view, size, mtime_ns, sha)) continue;
      digester.Add(path_view, size, mtime_ns, hex);
    }
    digest_ = contents_.empty() ? "" : digester.FinishHex();
  }

 private:
  void Dropped(std::string_view path) override {
    drops_.emplace_back(path);
    if (drops_.size() + stores_.size() >= kPersistBatch) (void)Persist();
  }
  void Stored(std::string_view path, uint64_t size, int64_t mtime_ns,
              const Sha256Digest& sha256) override {
    stores_.push_back(Row{std::string(path), size, mtime_ns, Sha256DigestHex(sha256)});
    if (drops_.size() + stores_.size() >= kPersistBatch) (void)Persist();
  }

  // Writes the buffered changes in one transaction: drops first (a stale entry dropped and then
  // stored again ends up stored). On failure the buffers are kept for the next attempt.
  absl::Status Persist() override {
    if (drops_.empty() && stores_.empty()) return last_error_;
    try {
      SQLite::Transaction tx(*db_);
      SQLite::Statement remove(*db_, "DELETE FROM hash_cache WHERE job_key = ? AND path = ?");
      for (const std::string& path : drops_) {
        remove.bind(1, job_key_);
        remove.bind(2, path);
        remove.exec();
        remove.reset();
      }
      SQLite::Statement upsert(*db_, R"sql(
        INSERT INTO hash_cache (job_key, path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (job_key, path) DO UPDATE SET
          size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256)sql");
      for (const Row& r : stores_) {
        upsert.bind(1, job_key_);
        upsert.bind(2, r.path);
        upsert.bind(3, static_cast<int64_t>(r.size));
        upsert.bind(4, r.mtime_ns);
        upsert.bind(5, r.sha256);
        upsert.exec();
        upsert.reset();
      }
      tx.commit();
      drops_.clear();
      stores_.clear();
      last_error_ = absl::OkStatus();
    } catch (const SQLite::Exception& e) {
      last_error_ = SqliteStatus(e, absl::StrCat("hash cache ", db_path_, ": write"));
    } catch (const std::exception& e) {
      last_error_ = absl::InternalError(absl::StrCat("hash cache ", db_path_, ": write: ", e.what()));
    }
    return last_error_;
  }

  struct Row {
    std::string path;
    uint64_t size;
    int64_t mtime_ns;
    std::string sha256;  // hex
  };
  std::unique_ptr<SQLite::Database> db_;
  std::string db_path_;
  std::string job_key_;
  std::vector<std::string> drops_;  // paths to delete, in order
  std::vector<Row> stores_;         // rows to write
  absl::Status last_error_;         // of the last write; a failed write is retried by the next
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
